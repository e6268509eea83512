"""GAN objectives: penalties against their closed forms, loss signs, which network each loss trains,
the hubness prior, latent MALA on a known target, O-GAN's encoder, and the 2-D mode metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genbench import GenbenchError
from genbench.models import MODELS, Optimization, build_model
from genbench.models.gans import (GAN, gradient_penalty, hubness_latents, input_gradient, interpolates,
                                  pearson_correlation, qp_distance, wasserstein_div_penalty, zero_centered_penalty)

GANS = sorted(name for name, spec in MODELS.items() if issubclass(spec.cls, GAN))
TINY = {"latent_dim": 8, "hidden": 8}


def linear_critic(w: torch.Tensor, b: float = 0.3):
    return lambda x: x.flatten(1) @ w + b


def test_every_gan_of_the_issue_is_registered():
    assert set(GANS) == {"sgan", "wgan_gp", "wgan_div", "gan_qp", "ogan", "meg"}


def test_input_gradient_of_a_linear_critic_is_its_weight():
    w = torch.randn(12, dtype=torch.float64)
    x = torch.randn(5, 3, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(input_gradient(linear_critic(w), x), w.expand(5, 12))


@pytest.mark.parametrize("norm", [0.25, 1.0, 3.0])
def test_gradient_penalty_closed_form_on_a_linear_critic(norm):
    w = torch.randn(6, dtype=torch.float64)
    w = w / w.norm() * norm
    x = torch.randn(7, 6, dtype=torch.float64)
    assert float(gradient_penalty(linear_critic(w), x, 10.0)) == pytest.approx(10.0 * (norm - 1) ** 2, rel=1e-12)


@pytest.mark.parametrize("k,p", [(2.0, 6.0), (1.0, 2.0), (0.5, 3.0)])
def test_wasserstein_div_penalty_closed_form_on_a_linear_critic(k, p):
    w = torch.randn(6, dtype=torch.float64) * 0.7
    x = torch.randn(9, 6, dtype=torch.float64)
    expected = k * float(w.norm()) ** p
    assert float(wasserstein_div_penalty(linear_critic(w), x, k, p)) == pytest.approx(expected, rel=1e-12)


def test_zero_centered_penalty_closed_form_and_quadratic_critic():
    w = torch.randn(4, dtype=torch.float64)
    x = torch.randn(5, 4, dtype=torch.float64)
    assert float(zero_centered_penalty(linear_critic(w), x, 10.0)) == pytest.approx(10 * float(w @ w), rel=1e-12)
    # E(x) = ||x||^2 / 2 has gradient x: the penalty is lambda * mean ||x||^2
    quad = zero_centered_penalty(lambda v: 0.5 * v.pow(2).sum(1), x, 2.0)
    assert float(quad.detach()) == pytest.approx(2.0 * float(x.pow(2).sum(1).mean()), rel=1e-12)


def test_penalties_train_the_critic():
    """The penalty is differentiable in the critic's weights (create_graph): its gradient in w is the
    closed form d/dw lambda (||w|| - 1)^2 = 2 lambda (||w|| - 1) w / ||w||."""
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, 5, dtype=torch.float64)
    gradient_penalty(linear_critic(w), x, 10.0).backward()
    expected = 2 * 10.0 * (w.norm() - 1) * w / w.norm()
    torch.testing.assert_close(w.grad, expected.detach())


def test_interpolates_lie_on_the_segments():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(50, 3), torch.randn(50, 3)
    mid = interpolates(real, fake, g)
    # mid - fake = eps (real - fake) with one eps in [0, 1] per example
    eps = ((mid - fake) / (real - fake))
    torch.testing.assert_close(eps, eps[:, :1].expand_as(eps), atol=1e-4, rtol=1e-4)
    assert float(eps.min()) >= 0 and float(eps.max()) <= 1


def test_pearson_correlation_and_qp_distances():
    a = torch.randn(3, 10, dtype=torch.float64)
    torch.testing.assert_close(pearson_correlation(a, 2 * a + 5), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(pearson_correlation(a, -a), -torch.ones(3, dtype=torch.float64))
    expected = torch.tensor([np.corrcoef(r1, r2)[0, 1] for r1, r2 in zip(a.numpy(), a.flip(1).numpy())])
    torch.testing.assert_close(pearson_correlation(a, a.flip(1)), expected)
    x, y = torch.zeros(2, 4), torch.tensor([[1.0, -1, 1, -1], [2.0, 0, 0, 0]])
    torch.testing.assert_close(qp_distance(x, y, "l1"), torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(qp_distance(x, y, "l2"), torch.tensor([1.0, 1.0]))


def test_gan_qp_discriminator_optimum_is_the_closed_form():
    """For one pair, -g + g^2 / (2 lambda d) is minimised at g* = lambda d (the QP's closed-form optimum)."""
    model = build_model("gan_qp", TINY, (2,))
    real, fake = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    d = float(qp_distance(real, fake, "l1"))
    gaps = torch.linspace(0, 20, 2001)
    losses = torch.stack([model.qp_discriminator_loss(g.view(1), torch.zeros(1), real, fake) for g in gaps])
    assert float(gaps[losses.argmin()]) == pytest.approx(10.0 * d, abs=0.02)


def _sign_model(name: str, real_score: float, fake_score: float) -> GAN:
    """A 2-D model whose critic scores real points (x0 > 0) and fakes (x0 < 0) by fixed values."""
    model = build_model(name, TINY, (2,))
    model.critic = lambda x: torch.where(x[:, 0] > 0, real_score, fake_score) + 0 * x.sum(1)
    model.energy = model.critic
    return model


@pytest.mark.parametrize("name", ["sgan", "wgan_gp", "wgan_div", "gan_qp"])
def test_discriminator_loss_falls_when_real_scores_rise(name):
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(16, 2) + 0.5, -torch.rand(16, 2) - 0.5
    z = torch.randn(16, 8)
    low = _sign_model(name, 0.1, 0.0).discriminator_loss(real, z, fake, g)["d_loss"]
    high = _sign_model(name, 0.5, 0.0).discriminator_loss(real, z, fake, g)["d_loss"]
    assert float(high) < float(low)
    g_low = _sign_model(name, 0.0, 0.1).generator_loss(real, z, fake, g)["g_loss"]
    g_high = _sign_model(name, 0.0, 0.5).generator_loss(real, z, fake, g)["g_loss"]
    assert float(g_high) < float(g_low)  # the generator wants its samples scored as real


def test_energy_gan_signs_are_reversed():
    """MEG's discriminator is an energy: lower on data. Its loss falls as real energies fall."""
    g = torch.Generator().manual_seed(0)
    real, fake, z = torch.rand(16, 2) + 0.5, -torch.rand(16, 2) - 0.5, torch.randn(16, 8)
    low_real = _sign_model("meg", -1.0, 0.0).discriminator_loss(real, z, fake, g)["d_loss"]
    high_real = _sign_model("meg", 1.0, 0.0).discriminator_loss(real, z, fake, g)["d_loss"]
    assert float(low_real) < float(high_real)


def _params_changed(before, model):
    after = {k: v for k, v in model.named_parameters()}
    return {k.split(".")[0] for k, v in before.items() if not torch.equal(v, after[k])}


@pytest.mark.parametrize("name", GANS)
def test_each_update_trains_only_its_network(name):
    torch.manual_seed(0)
    model = build_model(name, {**TINY, "n_critic": 2}, (1, 8, 8))
    opt = Optimization(model.configure_optimizers(1e-3, 0.0), None, None)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    out = model.training_step(x, 0, opt, g)  # step 0 of n_critic 2: discriminator only
    assert _params_changed(before, model) == {"discriminator"}
    assert "g_loss" not in out and math.isfinite(float(out["loss"]))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    out = model.training_step(x, 1, opt, g)  # step 1: discriminator, then generator
    changed = _params_changed(before, model)
    assert changed == ({"discriminator", "generator", "statistics"} if name == "meg" else {"discriminator", "generator"})
    assert math.isfinite(float(out["g_loss"]))
    assert all(p.requires_grad for p in model.discriminator.parameters())  # unfrozen after the G update


def test_generator_loss_does_not_update_the_discriminator():
    torch.manual_seed(0)
    model = build_model("sgan", TINY, (2,))
    opt = Optimization(model.configure_optimizers(1e-2, 0.0), None, None)
    z = torch.randn(8, 8)
    before = {k: v.detach().clone() for k, v in model.discriminator.named_parameters()}
    opt.step("generator", model.generator_loss(torch.randn(8, 2), z, model.generator(z), None)["g_loss"])
    assert all(torch.equal(v, dict(model.discriminator.named_parameters())[k]) for k, v in before.items())


def test_hubness_latents_are_the_hubs_of_their_pool():
    g = torch.Generator().manual_seed(0)
    z, rate = hubness_latents(50, 16, g, k=5, threshold=15, pool=2000)
    assert z.shape == (50, 16) and 0 < rate < 0.5
    # hubs sit nearer the centre of N(0, I) than typical draws (the paper's "central clustering")
    typical = torch.randn(2000, 16, generator=torch.Generator().manual_seed(1))
    assert float(z.norm(dim=1).mean()) < float(typical.norm(dim=1).mean()) - 0.2
    with pytest.raises(GenbenchError, match="threshold"):
        hubness_latents(5, 4, g, k=1, threshold=10_000, pool=100)


def test_hubness_acceptance_matches_a_brute_force_k_occurrence():
    g = torch.Generator().manual_seed(3)
    z, rate = hubness_latents(1, 3, g, k=3, threshold=6, pool=300)
    pool = torch.randn((300, 3), generator=torch.Generator().manual_seed(3))
    d = torch.cdist(pool, pool) + torch.diag(torch.full((300,), math.inf))
    counts = torch.bincount(d.argsort(1)[:, :3].flatten(), minlength=300)
    assert rate == pytest.approx(float((counts >= 6).float().mean()))
    torch.testing.assert_close(z[0], pool[counts >= 6][0])


def test_latent_mala_samples_the_prior_when_the_energy_is_flat():
    """With E constant, U(z) = ||z||^2 / 2: MALA must leave N(0, I) invariant and mix to it from afar."""
    torch.manual_seed(0)
    model = build_model("meg", {**TINY, "latent_dim": 2}, (2,))
    model.energy = lambda x: 0 * x.sum(1)
    g = torch.Generator().manual_seed(0)
    z0 = torch.full((4000, 2), 3.0)
    z, rate = model.latent_mala(z0, steps=300, step_size=0.2, generator=g)
    assert 0.5 < rate < 1.0
    torch.testing.assert_close(z.mean(0), torch.zeros(2), atol=0.08, rtol=0)
    torch.testing.assert_close(z.var(0), torch.ones(2), atol=0.1, rtol=0)


def test_ogan_encoder_is_standardised_and_score_is_the_mean():
    torch.manual_seed(0)
    model = build_model("ogan", TINY, (1, 8, 8)).eval()
    x = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    e = model.encode(x)
    torch.testing.assert_close(e.mean(1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(e.std(1), torch.ones(5), atol=1e-5, rtol=0)
    raw = model.discriminator(model.to_model_space(x))
    torch.testing.assert_close(model.critic(model.to_model_space(x)), raw.mean(1))
    assert model.reconstruct(x).shape == x.shape and model.reconstruct(x).dtype == torch.uint8


def test_mode_metrics_on_known_samples():
    from genbench.data.toy2d import mode_metrics
    from genbench.data.toy2d import mode_centers, mode_std

    centers, std = mode_centers("ring8"), mode_std("ring8")
    rng = np.random.default_rng(0)
    # 4 modes only, 10% of points far from every mode
    near = centers[rng.integers(4, size=900)] + std * rng.standard_normal((900, 2))
    far = np.zeros((100, 2))
    m = mode_metrics(torch.from_numpy(np.concatenate([near, far])), "ring8")
    assert m["modes_covered"] == 4 and m["modes_total"] == 8
    assert m["high_quality_fraction"] == pytest.approx(0.9, abs=0.01)
    perfect = mode_metrics(torch.from_numpy(centers[np.arange(8000) % 8] + std * rng.standard_normal((8000, 2))),
                           "ring8")
    assert perfect["modes_covered"] == 8 and perfect["high_quality_fraction"] > 0.98
    assert perfect["mode_kl"] < 0.01 and m["mode_kl"] > 0.5


def test_sampler_details_are_averaged_over_batches_by_size():
    from genbench.sample import draw
    from .conftest import load_tiny

    params = load_tiny()  # sample_batch_size 100: batches of 100, 100, 50
    rates = iter([0.1, 0.2, 0.4])
    x, _, info = draw(lambda m, g: (torch.zeros(m, 2), {"acceptance_rate": next(rates), "k": 5}), 250, params, 0, "t")
    assert len(x) == 250 and info["k"] == 5
    assert info["acceptance_rate"] == pytest.approx((100 * 0.1 + 100 * 0.2 + 50 * 0.4) / 250)


def test_encoder_scores_match_their_closed_form_on_a_perfect_encoder():
    """A model whose code is x itself (G = E = identity, z ~ N(0, I) in 4-D, data x ~ N(0, 4 I)):
    G(E(x)) = x has error 0, a random code has E||x - z||^2 / d = 4 + 1, and rho(z, E(G(z))) = 1."""
    from types import SimpleNamespace

    from genbench.evaluate import encoder_scores

    identity = lambda v: v  # noqa: E731
    model = SimpleNamespace(to_model_space=identity, generate=identity, encode=identity, reconstruct=identity,
                            latents=lambda n, g: torch.randn((n, 4), generator=g, dtype=torch.float64))
    x = 2 * torch.randn((20000, 4), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    scores = encoder_scores(model, x, torch.Generator().manual_seed(2))
    assert scores["n"] == 20000 and scores["reconstruction_mse"]["mean"] == 0
    random_code = scores["random_code_mse"]
    assert abs(random_code["mean"] - 5.0) < 4 * random_code["stderr"] and 0 < random_code["stderr"] < 0.1
    assert scores["latent_correlation"]["mean"] == pytest.approx(1.0)
