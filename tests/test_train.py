"""The trainer: determinism, resume after a kill equals an uninterrupted run, divergence policy."""
from __future__ import annotations

import json

import torch

from genbench.train import Job, batch_indices, read_outcome, train
from genbench.models import GenerativeModel

from .conftest import load_tiny


def _job(workdir, run="vae_mnist", **train_overrides):
    params = load_tiny(workdir / "params.yaml")
    for key, value in train_overrides.items():
        setattr(params.runs[run].train, key, value)
    return Job.from_params(params, run, 0)


def _weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


def test_batch_order_is_a_pure_function_of_seed_and_step():
    a = [batch_indices(100, 32, s, 0) for s in range(7)]
    b = [batch_indices(100, 32, s, 0) for s in range(7)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    epoch0 = torch.cat(a[:3])
    assert len(set(epoch0.tolist())) == 96  # no repeats inside an epoch
    assert not torch.equal(batch_indices(100, 32, 0, 1), a[0])


def test_resume_after_kill_matches_uninterrupted(workdir):
    job = _job(workdir)
    full = train(job, workdir / "full")
    assert full["status"] == "completed"

    killed = train(job, workdir / "resumed", stop_after=5)  # killed after step 5 (checkpoint at 4)
    assert killed["status"] == "interrupted"
    assert not (workdir / "resumed" / "outcome.json").exists()
    resumed = train(job, workdir / "resumed")
    assert resumed["status"] == "completed"

    a, b = _weights(workdir / "full"), _weights(workdir / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full["selected_val_loss"] == resumed["selected_val_loss"]
    assert full["selected_step"] == resumed["selected_step"]
    rows_full = [json.loads(l) for l in (workdir / "full" / "stats.jsonl").read_text().splitlines()]
    rows_res = [json.loads(l) for l in (workdir / "resumed" / "stats.jsonl").read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "images_per_s"} for r in rows]  # noqa: E731
    assert strip(rows_full) == strip(rows_res)  # append-only log, no duplicated steps


def test_a_changed_config_does_not_resume_a_stale_checkpoint(workdir):
    train(_job(workdir), workdir / "run", stop_after=5)
    out = train(_job(workdir, lr=5e-4), workdir / "run")
    ref = train(_job(workdir, lr=5e-4), workdir / "fresh")
    assert out["status"] == "completed"
    a, b = _weights(workdir / "run"), _weights(workdir / "fresh")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_divergence_is_recorded_with_its_step(workdir, monkeypatch):
    from genbench.models.vae import VAE

    original = VAE.training_step

    def explode(self, x, step, opt, generator):
        losses = original(self, x, step, opt, generator)
        if step == 7:
            losses["loss"] = torch.tensor(float("nan"))
        return losses

    monkeypatch.setattr(VAE, "training_step", explode)
    outcome = train(_job(workdir), workdir / "run")
    assert outcome["status"] == "diverged" and outcome["diverged_at_step"] == 7
    assert "diverged at step 7" in outcome["message"]
    assert read_outcome(workdir / "run") == outcome


def test_ema_weights_are_selected_when_enabled(workdir):
    out = train(_job(workdir, ema_decay=0.5), workdir / "run")
    blob = torch.load(workdir / "run" / "model.pt", weights_only=False)
    assert out["ema"] and blob["meta"]["ema"]


def test_gan_keeps_its_last_checkpoint_and_resumes_exactly(workdir):
    """GANs (two optimisers, a generator update every n_critic-th step, BN buffers) resume to the same
    weights; with no validation loss the selected checkpoint is the last step."""
    job = _job(workdir, run="sgan_mnist")
    full = train(job, workdir / "full")
    assert full["status"] == "completed" and full["selected_step"] == 12
    assert full["checkpoint_selection"] == "last" and full["selected_val_loss"] is None
    train(job, workdir / "resumed", stop_after=5)
    resumed = train(job, workdir / "resumed")
    a, b = _weights(workdir / "full"), _weights(workdir / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    selected = torch.load(workdir / "full" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(selected[k], a[k]) for k in a)
    rows = [json.loads(l) for l in (workdir / "full" / "stats.jsonl").read_text().splitlines()]
    assert not any("val_loss" in r for r in rows) and all("d_loss" in r for r in rows)
    assert "g_loss" in rows[0]  # step 2 of n_critic 2: the generator has been updated once


def test_seeding_turns_deterministic_algorithms_on_without_importing_the_compiler():
    """seed_everything sets torch's deterministic-algorithms flag (warn only), as
    torch.use_deterministic_algorithms does, without importing torch._inductor (seconds per stage)."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from genbench.config import HarnessConfig\n"
            "from genbench.train import seed_everything\n"
            "seed_everything(3, HarnessConfig(num_threads=1))\n"
            "assert torch.are_deterministic_algorithms_enabled()\n"
            "assert torch.is_deterministic_algorithms_warn_only_enabled()\n"
            "assert 'torch._inductor' not in sys.modules, 'the compiler was imported'\n"
            "assert torch.initial_seed() == 3\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
