"""The trainer: determinism, resume after a kill equals an uninterrupted run, divergence policy."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

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


# ------------------------------------------------------------------ kills, bad settings, stopping rule

def _rows(path):
    return [{k: v for k, v in json.loads(line).items() if k != "images_per_s"}
            for line in path.read_text().splitlines()]


def test_kills_at_ten_random_points_lose_no_log_row(workdir):
    """A run killed at 10 random steps, with the damage a kill can leave (the checkpoint replaced but its
    rows not yet appended, a torn last line, an atomic write's temporary file), ends with the weights, the
    stats.jsonl and, in the run the last invocation records for MLflow, the metric history of an
    uninterrupted run."""
    import random

    from genbench.tracking import Tracker

    def tracker(name):  # the run record a stage's tracker keeps (and later sends to MLflow)
        (workdir / "trackers" / name).mkdir(parents=True)
        return Tracker(workdir / "trackers" / name, {"metrics": [], "tags": {}, "artifacts": []})

    job = _job(workdir, steps=30, checkpoint_every=2, log_every=1)  # 30 steps: >= 10 kills of 1-3 steps
    full_run = tracker("full")
    full = train(job, workdir / "full", tracker=full_run)
    full_run.log_history(workdir / "full" / "stats.jsonl")  # as the train stage does (genbench.cli)
    work = workdir / "killed" / ".in_progress"
    rng = random.Random(0)
    kills = 0
    while True:
        last_run = tracker(f"killed-{kills}")
        out = train(job, workdir / "killed", tracker=last_run, stop_after=rng.randint(1, 3))
        if out["status"] != "interrupted":  # (a killed invocation never gets this far)
            last_run.log_history(workdir / "killed" / "stats.jsonl")
            break
        kills += 1
        log = work / "stats.jsonl"
        damage = kills % 3
        if damage == 0:  # killed between replacing checkpoint.pt and appending its rows
            blob = torch.load(work / "checkpoint.pt", weights_only=True)
            lines = log.read_text().splitlines(keepends=True)
            log.write_text("".join(lines[:len(lines) - len(blob["last_rows"])]))
        elif damage == 1:  # killed in the middle of writing a row
            log.write_text(log.read_text() + '{"step": 99, "lo')
        else:  # killed inside an atomic write
            (work / ".checkpoint.pt.123.tmp").write_bytes(b"partial")
    assert kills >= 10
    assert out == {**full, "train_time_s": out["train_time_s"], "train_images_per_s": out["train_images_per_s"]}
    assert _rows(workdir / "full" / "stats.jsonl") == _rows(workdir / "killed" / "stats.jsonl")

    def history(run):  # MLflow's metric history: (key, step) -> value, timing columns aside
        return {(k, step): v for k, v, _, step in run.record["metrics"] if k != "images_per_s"}
    assert history(last_run) == history(full_run) and len(history(full_run)) >= 30
    a, b = _weights(workdir / "full"), _weights(workdir / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not work.exists() and not list((workdir / "killed").glob(".*.tmp"))


def test_a_refused_or_killed_new_run_leaves_the_finished_run_untouched(workdir):
    """Refused before any file is touched (a batch larger than the data), or killed while it trains: the
    finished run's files stay byte-identical, outcome.json included."""
    from genbench import GenbenchError

    train(_job(workdir), workdir / "run")
    before = {p.name: p.read_bytes() for p in (workdir / "run").iterdir() if p.is_file()}
    with pytest.raises(GenbenchError, match="batch_size 100000 exceeds"):
        train(_job(workdir, batch_size=100_000), workdir / "run")
    assert train(_job(workdir, lr=5e-4), workdir / "run", stop_after=3)["status"] == "interrupted"
    after = {p.name: p.read_bytes() for p in (workdir / "run").iterdir() if p.is_file()}
    assert after == before
    # finishing the new config replaces the run as a whole
    done = train(_job(workdir, lr=5e-4), workdir / "run")
    assert read_outcome(workdir / "run") == done and not (workdir / "run" / ".in_progress").exists()
    assert json.loads((workdir / "run" / "config.json").read_text())["spec"]["train"]["lr"] == 5e-4


def test_a_kill_while_replacing_the_run_is_finished_on_the_next_call(workdir, monkeypatch):
    import genbench.train as trainer

    real_replace = trainer.os.replace
    calls = []

    def dies_on_third(src, dst):
        if Path(src).parent.name == ".in_progress" != Path(dst).parent.name:  # moving the run into place
            calls.append(src)
            if len(calls) == 3:
                raise KeyboardInterrupt  # the process is killed mid-way through moving the files
        return real_replace(src, dst)

    train(_job(workdir), workdir / "run")
    monkeypatch.setattr(trainer.os, "replace", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        train(_job(workdir, lr=5e-4), workdir / "run")
    assert not (workdir / "run" / "outcome.json").exists()  # incomplete, so never read as finished
    monkeypatch.setattr(trainer.os, "replace", real_replace)
    done = train(_job(workdir, lr=5e-4), workdir / "run")
    assert read_outcome(workdir / "run") == done
    assert json.loads((workdir / "run" / "config.json").read_text())["spec"]["train"]["lr"] == 5e-4


def test_checkpoints_load_as_weights_only_and_a_pickled_object_is_refused(workdir):
    from genbench import GenbenchError
    from genbench.train import load_blob

    train(_job(workdir), workdir / "run", stop_after=4)
    blob = torch.load(workdir / "run" / ".in_progress" / "checkpoint.pt", weights_only=True)
    assert blob["state"]["step"] == 4
    evil = workdir / "evil.pt"
    torch.save({"model": {}, "payload": GenerativeModel}, evil)  # a class: loading it would import code
    with pytest.raises(GenbenchError, match="holds more than weights"):
        load_blob(evil, "cpu", "delete it")


def test_patience_stops_when_the_validation_figure_stops_improving(workdir, monkeypatch):
    """steps is a cap: with patience 2 the run stops at the second pass after its best one, keeps the
    best checkpoint, and resuming the stopped run changes nothing."""
    from genbench.models.vae import VAE

    figures = iter([3.0, 2.0, 2.5, 2.25, 1.0, 0.5])  # best at pass 2, then two passes without improvement

    def scripted(self, x, generator):
        return torch.full((len(x),), next(figures))

    monkeypatch.setattr(VAE, "validation_loss", scripted)
    out = train(_job(workdir, val_every=2, patience=2, steps=40, checkpoint_every=2), workdir / "run")
    assert out["stopped_early"] and out["steps"] == 8 and out["max_steps"] == 40
    assert out["selected_step"] == 4 and out["selected_val_loss"] == 2.0
    assert [r["val_loss"] for r in _rows(workdir / "run" / "stats.jsonl") if "val_loss" in r] == [3.0, 2.0, 2.5, 2.25]


def test_a_2d_gan_keeps_the_checkpoint_that_covers_most_modes(tmp_path):
    from genbench.config import HarnessConfig, RunConfig, TrainConfig
    from genbench.data import prepare

    prepare("toy_ring8", tmp_path / "data", val_size=100, toy_train_size=600, toy_test_size=100)
    spec = RunConfig(model="sgan", dataset="toy_ring8", model_config={"latent_dim": 2, "hidden": 16},
                     train=TrainConfig(steps=30, batch_size=64, lr=1e-3, checkpoint_every=10, log_every=10,
                                       val_every=10))
    out = train(Job("sgan_ring8", 0, spec, HarnessConfig(num_threads=1, progress=False), str(tmp_path / "data")),
                tmp_path / "run")
    assert out["checkpoint_selection"].startswith("best on validation: -(modes covered")
    vals = [r["val_loss"] for r in _rows(tmp_path / "run" / "stats.jsonl") if "val_loss" in r]
    assert len(vals) == 3 and out["selected_val_loss"] == min(vals)
    assert out["selected_step"] == 10 * (1 + vals.index(min(vals)))
