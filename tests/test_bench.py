"""`genbench bench`: the alternation / median logic on a fake clock (nothing here asserts a timing), the
harness probe, `--peers` without the peer packages, and the VAE step against an independent reference."""
from __future__ import annotations

import sys

import pytest
import torch

from genbench import bench
from genbench.cli import main
from genbench.models import Optimization, build_model
from genbench.models.nn import discretized_logistic_log_prob, gaussian_kl_to_standard, to_signed_unit


class FakeClock:
    """A clock that only moves when a fake step advances it."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def step_taking(self, seconds):
        """A step function whose k-th call lasts seconds[k] (the last value repeats)."""
        calls = iter(seconds)
        last = [seconds[0]]

        def step():
            last[0] = next(calls, last[0])
            self.now += last[0]
        return step


# --- timing primitives --------------------------------------------------------------------------
def test_warm_up_runs_until_the_time_has_passed_and_estimates_the_warm_step():
    clock = FakeClock()
    calls = []
    slow_start = clock.step_taking([1.0, 0.5] + [0.1] * 100)
    assert bench.warm_up(lambda: (calls.append(1), slow_start()), seconds=2.05, clock=clock) == pytest.approx(0.1)
    assert len(calls) == 8 and clock.now == pytest.approx(2.1)  # 1.0 + 0.5 + 6 x 0.1 >= 2.05 s
    # at least min_steps even when one step outlasts the warm-up
    clock2 = FakeClock()
    n = []
    bench.warm_up(lambda: (n.append(1), clock2.step_taking([5.0])()), seconds=1.0, clock=clock2, min_steps=3)
    assert len(n) == 3


def test_segments_are_sized_by_time_with_a_floor():
    assert bench.segment_steps(0.02, 1.0) == 50
    assert bench.segment_steps(0.3, 1.0) == 5  # never fewer than 5 steps
    clock = FakeClock()
    assert bench.time_segment(clock.step_taking([0.25]), 8, clock) == pytest.approx(0.25)


def test_alternate_interleaves_the_sides_round_by_round():
    order = []
    per_step = {"bare": iter([1.0, 9.0, 2.0]), "harness": iter([1.1, 9.9, 2.2])}

    def segment(name):
        return lambda: (order.append(name), next(per_step[name]))[1]

    out = bench.alternate({"bare": segment("bare"), "harness": segment("harness")}, repeats=3)
    assert order == ["bare", "harness"] * 3
    assert out == {"bare": [1.0, 9.0, 2.0], "harness": [1.1, 9.9, 2.2]}
    # a slow phase (round 2) hits both sides: the medians and the per-round ratios ignore it
    assert bench.spread(out["bare"]) == {"median": 2.0, "min": 1.0, "max": 9.0}
    r = bench.ratio(out["harness"], out["bare"])
    assert r["median"] == pytest.approx(1.1) and r["min"] == pytest.approx(1.1) and r["max"] == pytest.approx(1.1)
    assert bench.rate([0.5, 0.25, 1.0], batch_size=64) == {"median": 128.0, "min": 64.0, "max": 256.0}
    assert bench.fmt({"median": 1.0, "min": 0.5, "max": 2.0}, scale=100, sign=True) == "+100 [+50, +200]"


def test_harness_probe_discards_warm_up_and_each_segments_first_step_then_alternates():
    bare_calls = []

    def bare_segment():
        bare_calls.append(len(bare_calls))
        return 0.5

    probe = bench.HarnessProbe(batch_size=10, repeats=2, warmup_s=1.0, bare_segment=bare_segment)

    def rows(*seconds):  # what train() logs with log_every = 1: images/s of each step
        return [{"step": i, "loss": 0.0, "images_per_s": 10 / s} for i, s in enumerate(seconds)]

    probe.log_rows(rows(9.0, 0.4, 0.4))  # warm-up: 0.8 s counted (first row left out)
    assert probe.harness == [] and bare_calls == []
    probe.log_rows(rows(9.0, 0.4, 0.4))  # warm-up reaches 1.6 s >= 1.0: the first bare segment runs
    assert probe.harness == [] and probe.bare == [0.5]
    probe.log_rows(rows(7.0, 0.2, 0.4))  # round 1: the mean of 0.2 and 0.4 (the 7 s first row left out)
    assert probe.harness == [pytest.approx(0.3)] and probe.bare == [0.5, 0.5]
    with pytest.raises(bench._Enough):  # round 2 timed: the harness run is ended, no bare segment after it
        probe.log_rows(rows(7.0, 0.6, 0.6) + [{"step": 3, "val_loss": 1.0}])
    assert probe.harness == [pytest.approx(0.3), pytest.approx(0.6)] and len(bare_calls) == 2


def test_training_throughput_alternates_the_real_harness_and_stops_it(workdir):
    from genbench.config import load
    from genbench.data import load_split
    from genbench.layout import prepared_dir
    from genbench.train import Job

    params = load("params.yaml")
    job = Job.from_params(params, "ddpm_mnist", 0)  # EMA configured: in both loops
    job.harness.progress = False
    x, _ = load_split(prepared_dir(params.data.root, "mnist"), "train")
    out = bench.training_throughput(job, x, repeats=2, warmup_s=0.0, segment_s=0.01, steps=3)
    assert out["segment_steps"] == 3 and len(out["bare_s"]) == 2 and len(out["harness_s"]) == 2
    assert all(s > 0 for s in out["bare_s"] + out["harness_s"])
    assert not list(workdir.glob("runs/*"))  # the harness ran in a temporary folder


# --- --peers ------------------------------------------------------------------------------------
def test_peers_without_the_packages_is_one_clear_message(workdir, monkeypatch, capsys):
    for module in ("pythae", "normflows", "denoising_diffusion_pytorch"):
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(Exception, match=r"install with pip install -e \.\[peers\]"):
        bench.require_peers(["vae", "glow", "ddpm"])
    assert main(["bench", "--models", "vae", "glow", "ddpm", "--peers"]) == 2
    captured = capsys.readouterr()
    assert "pythae (the peer of vae) is not installed; install with pip install -e .[peers]" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""  # refused before anything was timed


def test_peers_need_a_model_that_has_one(workdir, capsys):
    assert main(["bench", "--models", "sgan", "--peers"]) == 2
    assert "has a peer" in capsys.readouterr().err


# --- the VAE step: unchanged against an independent reference ---------------------------------------
def _batches(n: int, shape=(1, 28, 28), batch=16):
    """MNIST-like uint8 batches: mostly 0, some 255, the rest anywhere (every branch of the likelihood)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (n * batch, *shape), generator=g, dtype=torch.uint8)
    u = torch.rand(x.shape, generator=g)
    x[u < 0.6] = 0
    x[u > 0.9] = 255
    return list(x.split(batch))


CONFIGS = {"vae": {"latent_dim": 8, "hidden_channels": 8, "hidden_units": 32},
           "fvae": {"latent_dim": 8, "hidden_channels": 8, "hidden_units": 32, "flow_layers": 2, "flow_hidden": 16}}


def test_vae_training_is_bit_identical_to_the_reference_step():
    """The VAE's training step (its optimizer included) against the step as first committed, written out
    here from the layers up: plain single-tensor Adam, ELBO = discretized-logistic log p(x|z) - KL."""
    torch.manual_seed(0)
    model = build_model("vae", CONFIGS["vae"], (1, 28, 28))
    torch.manual_seed(0)
    ref = build_model("vae", CONFIGS["vae"], (1, 28, 28))
    opt = Optimization(model.configure_optimizers(1e-3, 0.0), None, None)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-3, foreach=False)
    g, g_ref = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    for step, x in enumerate(_batches(6)):
        loss = model.training_step(x, step, opt, g)["loss"]
        mean, log_var = ref.encoder(to_signed_unit(x)).chunk(2, dim=1)
        log_var = log_var.clamp(-12.0, 8.0)
        z = mean + torch.exp(0.5 * log_var) * torch.randn(mean.shape, generator=g_ref)
        loc, log_scale = ref.decoder(z).chunk(2, dim=1)
        log_px = discretized_logistic_log_prob(x, torch.tanh(loc), log_scale.clamp(min=-7.0)).flatten(1).sum(1)
        ref_loss = -(log_px - gaussian_kl_to_standard(mean, log_var).sum(1)).mean()
        ref_opt.zero_grad(set_to_none=True)
        ref_loss.backward()
        ref_opt.step()
        assert torch.equal(loss, ref_loss.detach())
    for key, value in ref.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize("name", ["vae", "fvae"])
def test_vae_family_optimizer_matches_plain_adam_bit_for_bit(name):
    """fvae inherits the VAE's optimizer: both train to the same bits as with torch's default Adam."""
    models, opts = [], []
    for plain in (False, True):
        torch.manual_seed(0)
        m = build_model(name, CONFIGS[name], (1, 28, 28))
        opt = ({"model": torch.optim.Adam(m.parameters(), lr=1e-3, weight_decay=1e-4, foreach=False)} if plain
               else m.configure_optimizers(1e-3, 1e-4))
        models.append(m)
        opts.append(Optimization(opt, None, 1.0))
    for step, x in enumerate(_batches(5)):
        for m, opt in zip(models, opts):
            m.training_step(x, step, opt, torch.Generator().manual_seed(step))
    for key, value in models[1].state_dict().items():
        assert torch.equal(models[0].state_dict()[key], value), key
