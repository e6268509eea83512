"""IGEBM: Langevin dynamics on a known Gaussian, its clip / clamp / noise scale, the contrastive-divergence
loss's sign and regulariser, spectral normalisation, the replay buffer (contents, wrap-around, restart
fraction, the sampler row), bit-identical and resumable training, and a 2-D blob learnt end to end."""
from __future__ import annotations

import copy

import pytest
import torch

from genbench.models import MODELS, Optimization, build_model
from genbench.models.ebm import IGEBM, contrastive_divergence_loss, langevin
from genbench.models.nn import from_signed_unit

TINY_IMAGE = {"hidden": 8, "langevin_steps": 2, "buffer_size": 64, "sample_steps": 2}
TINY_POINTS = {"hidden": 16, "langevin_steps": 3, "buffer_size": 12, "sample_steps": 3, "points_box": 4.0}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one CPU thread avoids oversubscription (and keeps this file fast on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(config, shape, seed=0, **overrides) -> IGEBM:
    torch.manual_seed(seed)
    return build_model("igebm", {**config, **overrides}, shape)


def image_batch(n=8, seed=0):
    return torch.randint(0, 256, (n, 1, 28, 28), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def point_batch(n=8, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) * 0.3 + torch.tensor([1.0, -1.0])


def test_igebm_is_registered_for_images_and_points():
    spec = MODELS["igebm"]
    assert spec.cls is IGEBM and spec.data_kinds == ("image", "points")
    assert IGEBM.checkpoint_selection == "last" and IGEBM.likelihood_kinds == ()


# --------------------------------------------------------------------------------------------------
# Langevin dynamics
# --------------------------------------------------------------------------------------------------
def test_textbook_langevin_samples_a_known_gaussian():
    """E(x) = 1/2 sum_i (x_i - mu_i)^2 / s_i^2 with step eps/2 on the gradient and noise sqrt(eps):
    10 000 chains from 0, 4000 steps (the slowest coordinate relaxes by exp(-5) in the mean, exp(-10)
    in the variance). Unadjusted Langevin's stationary variance is s^2 / (1 - eps / (4 s^2)), 1% high
    for s = 0.5 at eps = 0.01. Tolerances: mean 0.08 (4 standard errors for s = 2), variance 6%
    (about 3.5 standard errors plus the 1% bias); a step of eps (not eps/2) would halve the variance."""
    mu = torch.tensor([1.0, -2.0], dtype=torch.float64)
    s = torch.tensor([0.5, 2.0], dtype=torch.float64)
    eps = 0.01

    def energy(x):
        return 0.5 * (((x - mu) / s) ** 2).sum(1)

    g = torch.Generator().manual_seed(0)
    x = langevin(energy, torch.zeros(10_000, 2, dtype=torch.float64), 4000, eps / 2, eps ** 0.5, g)
    assert x.dtype == torch.float64
    torch.testing.assert_close(x.mean(0), mu, atol=0.08, rtol=0)
    torch.testing.assert_close(x.var(0), s ** 2, atol=0, rtol=0.06)


def test_langevin_clips_each_gradient_coordinate_clamps_and_detaches():
    w = torch.tensor([100.0, -100.0])

    def energy(x):  # gradient (100, -100) everywhere
        return x @ w

    x0 = torch.zeros(5, 2, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the callers (sample) run under no_grad
        x = langevin(energy, x0, 3, 0.1, 0.0, g, grad_clip=0.5)
    # every step moves by step_size * clip = 0.05 against the gradient's sign
    torch.testing.assert_close(x, torch.tensor([[-0.15, 0.15]]).expand(5, 2))
    assert not x.requires_grad and torch.equal(x0, torch.zeros(5, 2))
    x = langevin(energy, x0, 3, 0.1, 0.0, g)  # unclipped: a move of 10 per step
    torch.testing.assert_close(x, torch.tensor([[-30.0, 30.0]]).expand(5, 2))
    x = langevin(energy, x0, 3, 0.1, 0.0, g, clamp=(-1.0, 2.0))
    torch.testing.assert_close(x, torch.tensor([[-1.0, 2.0]]).expand(5, 2))


def test_langevin_noise_is_the_stated_standard_deviation():
    """A flat energy: after k steps each coordinate is N(0, k noise_std^2)."""
    g = torch.Generator().manual_seed(0)
    x = langevin(lambda v: 0.0 * v.sum(1), torch.zeros(40_000, 2), 4, 1.0, 0.3, g)
    assert float(x.std()) == pytest.approx(0.6, rel=0.02)
    assert float(x.mean()) == pytest.approx(0.0, abs=0.01)


# --------------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------------
def test_contrastive_divergence_sign_and_gradients():
    """Lower data energies and higher negative energies lower the loss, one for one per unit of mean."""
    g = torch.Generator().manual_seed(0)
    e_pos, e_neg = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    loss, cd, reg = contrastive_divergence_loss(e_pos, e_neg, 0.0)
    assert float(reg) == 0.0 and float(loss) == pytest.approx(float(e_pos.mean() - e_neg.mean()), rel=1e-12)
    shifted, _, _ = contrastive_divergence_loss(e_pos - 0.1, e_neg + 0.2, 0.0)
    assert float(shifted) == pytest.approx(float(loss) - 0.3, rel=1e-12)
    e_pos.requires_grad_(True)
    e_neg.requires_grad_(True)
    contrastive_divergence_loss(e_pos, e_neg, 0.0)[0].backward()
    torch.testing.assert_close(e_pos.grad, torch.full((6,), 1 / 6, dtype=torch.float64))
    torch.testing.assert_close(e_neg.grad, torch.full((4,), -1 / 4, dtype=torch.float64))


def test_regulariser_closed_form_on_a_toy_energy():
    """E(x) = ||x||^2 / 2: data (1, 0), (0, 2) -> energies 0.5, 2; negatives (1, 1), (3, 0) -> 1, 4.5.
    contrastive = 1.25 - 2.75 = -1.5; regulariser = alpha ((0.25 + 4) / 2 + (1 + 20.25) / 2) = 12.75 alpha."""
    def energy(x):
        return 0.5 * x.pow(2).sum(1)

    pos = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    neg = torch.tensor([[1.0, 1.0], [3.0, 0.0]], dtype=torch.float64)
    loss, cd, reg = contrastive_divergence_loss(energy(pos), energy(neg), 0.5)
    assert float(cd) == pytest.approx(-1.5, rel=1e-12)
    assert float(reg) == pytest.approx(0.5 * 12.75, rel=1e-12)
    assert float(loss) == pytest.approx(-1.5 + 0.5 * 12.75, rel=1e-12)


def test_a_training_step_lowers_the_data_energy_against_the_negatives(monkeypatch):
    """With alpha = 0 and the negatives fixed far from the data, one Adam step must lower
    E(x+) - E(x-) (the loss trains E, low energy on data)."""
    model = make(TINY_POINTS, (2,), alpha=0.0)
    pos = point_batch(16)
    neg = torch.full((16, 2), -3.0)
    monkeypatch.setattr(model, "run_chains", lambda x0, steps, generator: neg.clone())
    monkeypatch.setattr(model, "positives", lambda x, generator: x.float())

    def gap():
        with torch.no_grad():
            return float(model.energy(pos).mean() - model.energy(neg).mean())

    opt = Optimization(model.configure_optimizers(1e-2, 0.0), None, None)
    for _ in range(30):  # converge the spectral norms' power iterations (each training forward takes one)
        gap()
    before = gap()
    out = model.training_step(pos, 0, opt, torch.Generator().manual_seed(0))
    assert float(out["loss"]) == pytest.approx(before, abs=1e-5)  # alpha = 0: the loss is the gap
    assert gap() < before - 1e-3


# --------------------------------------------------------------------------------------------------
# Spectral normalisation
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,config", [((1, 28, 28), TINY_IMAGE), ((2,), TINY_POINTS)])
def test_every_layer_is_spectrally_normalised(shape, config):
    """Every conv / linear of the energy is wrapped; with its raw weight scaled up 3x, a few training
    forwards (one power iteration each) bring the used weight's largest singular value to 1."""
    model = make(config, shape)
    layers = [m for m in model.net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == (5 if len(shape) == 3 else 4)
    assert all(hasattr(m, "parametrizations") and "weight" in m.parametrizations for m in layers)
    with torch.no_grad():
        for m in layers:
            m.parametrizations.weight.original.mul_(3.0)
        x = torch.randn(4, *shape)
        for _ in range(10):
            model.energy(x)
        for m in layers:
            raw = torch.linalg.matrix_norm(m.parametrizations.weight.original.flatten(1), ord=2)
            used = torch.linalg.matrix_norm(m.weight.flatten(1), ord=2)
            assert float(raw) > 1.5 and float(used) == pytest.approx(1.0, abs=1e-2)


# --------------------------------------------------------------------------------------------------
# The replay buffer
# --------------------------------------------------------------------------------------------------
def test_the_buffer_holds_the_negatives_and_overwrites_the_oldest(monkeypatch):
    model = make(TINY_POINTS, (2,))  # a buffer of 12 slots, batches of 8
    produced = []
    run_chains = model.run_chains

    def spy(x0, steps, generator):
        out = run_chains(x0, steps, generator)
        produced.append(out.clone())
        return out

    monkeypatch.setattr(model, "run_chains", spy)
    opt = Optimization(model.configure_optimizers(1e-3, 0.0), None, None)
    g = torch.Generator().manual_seed(0)
    out = model.training_step(point_batch(8, 0), 0, opt, g)
    assert float(out["restart_fraction"]) == 1.0  # an empty buffer: every chain starts from noise
    assert int(model.replay_pushed) == 8 and model.replay_filled == 8
    assert torch.equal(model.replay[:8], produced[0]) and not model.replay[8:].any()
    model.training_step(point_batch(8, 1), 1, opt, g)
    assert int(model.replay_pushed) == 16 and model.replay_filled == 12
    assert torch.equal(model.replay[8:], produced[1][:4])    # the free slots first,
    assert torch.equal(model.replay[:4], produced[1][4:])    # then over the oldest
    assert torch.equal(model.replay[4:8], produced[0][4:])
    lo, hi = model.box
    assert float(model.replay.min()) >= lo and float(model.replay.max()) <= hi


def test_restart_fraction_is_five_percent_and_the_rest_come_from_the_buffer():
    model = make(TINY_POINTS, (2,), buffer_size=100)
    with torch.no_grad():  # rows outside the noise box, each identifiable by its value
        model.replay.copy_(10.0 + torch.arange(100.0)[:, None].expand(100, 2))
        model.replay_pushed.fill_(100)
    x0, restart = model.initial_chains(20_000, torch.Generator().manual_seed(0))
    # binomial(20 000, 0.05): standard error 0.0015
    assert float(restart.float().mean()) == pytest.approx(0.05, abs=0.006)
    assert (x0[restart].abs() <= model.config.points_box).all()
    replayed = x0[~restart]
    assert torch.equal(replayed[:, 0], replayed[:, 1]) and (replayed >= 10).all()
    counts = torch.bincount((replayed[:, 0] - 10).long(), minlength=100)
    assert int(counts.min()) > 0.7 * 190 and int(counts.max()) < 1.3 * 190  # uniform over the slots
    x0, restart = make(TINY_POINTS, (2,), buffer_size=100, restart_prob=0.0).initial_chains(
        50, torch.Generator().manual_seed(0))
    assert restart.all()  # while the buffer is empty, every chain restarts


def test_training_is_bit_identical_and_resumes_exactly_from_a_checkpoint():
    """Two runs with one seed agree bit for bit (weights, spectral-norm vectors, buffer, its counter);
    two steps, a state_dict round trip (model, optimiser, generator), then the third step equals three
    uninterrupted steps. (Half the chains restart, so the restart draws matter too.)"""
    def start():
        model = make(TINY_IMAGE, (1, 28, 28), restart_prob=0.5)
        return model, Optimization(model.configure_optimizers(1e-3, 0.0), None, None), torch.Generator().manual_seed(0)

    def steps(model, opt, g, which):
        for step in which:
            model.training_step(image_batch(8, seed=step), step, opt, g)

    def same(a, b):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    a, opt_a, g_a = start()
    steps(a, opt_a, g_a, range(3))
    b, opt_b, g_b = start()
    steps(b, opt_b, g_b, range(3))
    same(a.state_dict(), b.state_dict())
    assert "replay" in a.state_dict() and int(a.replay_pushed) == 24

    c, opt_c, g_c = start()
    steps(c, opt_c, g_c, range(2))
    blob = copy.deepcopy({"model": c.state_dict(), "opt": opt_c.optimizers["model"].state_dict(),
                          "rng": g_c.get_state()})
    d, opt_d, g_d = start()
    d.load_state_dict(blob["model"])
    opt_d.optimizers["model"].load_state_dict(blob["opt"])
    g_d.set_state(blob["rng"])
    steps(d, opt_d, g_d, [2])
    same(a.state_dict(), d.state_dict())


def test_the_buffer_sampler_draws_distinct_buffered_negatives():
    model = make(TINY_IMAGE, (1, 28, 28))
    assert model.sample_variants(None) == {}  # nothing buffered yet
    opt = Optimization(model.configure_optimizers(1e-3, 0.0), None, None)
    g = torch.Generator().manual_seed(0)
    for step in range(2):
        model.training_step(image_batch(8, seed=step), step, opt, g)
    sampler = model.eval().sample_variants(None)["buffer"]
    x, info = sampler(10, torch.Generator().manual_seed(1))
    assert x.shape == (10, 1, 28, 28) and x.dtype == torch.uint8 and info == {"buffer_filled": 16}
    buffered = from_signed_unit(model.replay[:16]).flatten(1)
    matches = (x.flatten(1)[:, None] == buffered[None]).all(-1)  # 10 x 16: which slot each sample is
    assert (matches.sum(1) >= 1).all() and len(set(matches.float().argmax(1).tolist())) == 10
    again, _ = sampler(10, torch.Generator().manual_seed(1))
    assert torch.equal(x, again)


# --------------------------------------------------------------------------------------------------
# End to end on a 2-D blob
# --------------------------------------------------------------------------------------------------
def test_training_on_a_gaussian_blob_brings_samples_to_the_data():
    """N((2, -1.5), 0.3^2 I), 300 steps, K = 20 (sampling with the training's chain length). Uniform
    noise on [-4, 4]^2 puts 5% of points within 1 of the mean; after training most samples are there,
    their mean within 0.6 of the data's, and the persistent chains (the buffer) match its mean closely."""
    mu = torch.tensor([2.0, -1.5])
    model = make({"hidden": 32, "langevin_steps": 20, "buffer_size": 1000, "sample_steps": 20, "points_box": 4.0},
                 (2,))
    opt = Optimization(model.configure_optimizers(1e-3, 0.0), None, None)
    g = torch.Generator().manual_seed(0)

    def near(samples):
        return float(((samples - mu).norm(dim=1) < 1).float().mean())

    before = model.eval().sample(1000, torch.Generator().manual_seed(1))
    model.train()
    for step in range(300):
        model.training_step(mu + 0.3 * torch.randn(64, 2, generator=g), step, opt, g)
    after = model.eval().sample(1000, torch.Generator().manual_seed(1))
    assert after.dtype == torch.float32 and after.shape == (1000, 2)
    assert near(before) < 0.2 and near(after) > 0.5
    torch.testing.assert_close(after.mean(0), mu, atol=0.6, rtol=0)
    buffered = model.replay[:model.replay_filled]
    torch.testing.assert_close(buffered.mean(0), mu, atol=0.1, rtol=0)
    assert 0.15 < float(buffered.std(0).mean()) < 0.6
