"""f-VAE (Su & Wu 2018): the conditional flow's Jacobian, inverse and density, and its bounds."""
from __future__ import annotations

import pytest
import torch

from genbench.models import Optimization, build_model
from genbench.models.fvae import FVAE

TINY = {"latent_dim": 5, "hidden_channels": 8, "hidden_units": 32, "flow_layers": 3, "flow_hidden": 16}
SHAPE = (1, 28, 28)


def make(seed: int = 0, **overrides) -> FVAE:
    torch.manual_seed(seed)
    return build_model("fvae", {**TINY, **overrides}, SHAPE)


def batch(n=4, seed=0):
    return torch.randint(0, 256, (n, *SHAPE), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@torch.no_grad()
def scramble_flow(model: FVAE, scale: float = 0.6, log_sigma1: float = -0.8) -> FVAE:
    """F2 starts as the identity (zero-initialised): give it random weights so the checks bite."""
    g = torch.Generator().manual_seed(123)
    for p in model.flow.parameters():
        p.copy_(torch.randn(p.shape, generator=g) * scale)
    if hasattr(model, "log_sigma1"):
        model.log_sigma1.fill_(log_sigma1)
    return model


def latent_in_float64(model: FVAE) -> FVAE:
    """F2 and sigma_1 in float64 (the conv encoder and decoder stay float32) for tight checks."""
    model.flow.double()
    if hasattr(model, "log_sigma1"):
        model.log_sigma1.data = model.log_sigma1.data.double()
    return model


@pytest.mark.parametrize("posterior_scale", ["shared", "amortized"])
def test_log_det_of_the_conditional_flow_matches_autograd_jacobian(posterior_scale):
    model = latent_in_float64(scramble_flow(make(posterior_scale=posterior_scale))).eval()
    x = batch(3)
    with torch.no_grad():
        mean, log_sigma = (t.double() for t in model.posterior_base(x))
    u = torch.randn(mean.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        z, z0, logdet = model.conditional_flow(u, mean, log_sigma)
        _, logdet_f2 = model.flow(z0)
    assert logdet_f2.abs().min() > 0.1  # the flow is not volume preserving here
    for i in range(len(x)):
        def f_x(v, i=i):  # u -> F_x(u) for example i
            return model.conditional_flow(v[None], mean[i:i + 1], log_sigma[i:i + 1])[0][0]

        jac = torch.autograd.functional.jacobian(f_x, u[i])
        sign, brute = torch.linalg.slogdet(jac)
        assert sign.item() > 0
        assert logdet[i].item() == pytest.approx(brute.item(), abs=1e-9)
        jac_f2 = torch.autograd.functional.jacobian(lambda v: model.flow(v[None])[0][0], z0[i])
        _, brute_f2 = torch.linalg.slogdet(jac_f2)
        assert logdet_f2[i].item() == pytest.approx(brute_f2.item(), abs=1e-9)


@torch.no_grad()
def test_flow_is_invertible_and_the_decoder_sees_f2_inverse_of_z():
    model = scramble_flow(make(), scale=0.4).eval()
    z0 = torch.randn(64, TINY["latent_dim"], generator=torch.Generator().manual_seed(2)) * 2
    z, logdet = model.flow(z0)
    back, logdet_inv = model.flow.inverse(z)
    assert torch.allclose(back, z0, rtol=1e-4, atol=1e-3) and torch.allclose(logdet_inv, -logdet, atol=1e-3)
    assert not torch.allclose(z, z0, atol=1e-2)
    # p(x|z) through G(z) = D(F2^{-1}(z)) equals p(x|z0) through D directly
    x = batch(64)
    assert torch.allclose(model.log_px_given_z(x, z), model.log_px_given_z0(x, z0), rtol=1e-5, atol=1e-3)
    latent_in_float64(model)
    z0 = z0.double()
    back, logdet_inv = model.flow.inverse(model.flow(z0)[0])
    assert torch.allclose(back, z0, atol=1e-12)


@torch.no_grad()
@pytest.mark.parametrize("posterior_scale", ["shared", "amortized"])
def test_the_bound_is_log_p_x_given_z_plus_log_p_z_minus_log_q_at_z(posterior_scale):
    """The sampled-u ELBO equals the paper's terms evaluated at z = F_x(u) by another route:
    p(x|z) through G(z) = D(F2^{-1}(z)) and log q(z|x) through F_x^{-1}."""
    model = scramble_flow(make(posterior_scale=posterior_scale), scale=0.4).eval()
    x = batch(6)
    elbo = model.elbo(x, torch.Generator().manual_seed(9))
    mean, log_sigma = model.posterior_base(x)
    u = torch.randn(mean.shape, generator=torch.Generator().manual_seed(9))
    z = model.conditional_flow(u, mean, log_sigma)[0]
    log_pz = -0.5 * (z**2).sum(1) - 0.5 * z.shape[1] * torch.log(torch.tensor(2 * torch.pi))
    log_q = torch.cat([model.log_q(z[i:i + 1], x[i:i + 1]) for i in range(len(x))])
    assert torch.allclose(elbo, model.log_px_given_z(x, z) + log_pz - log_q, rtol=1e-5, atol=0.05)


@torch.no_grad()
def test_without_flow_layers_the_amortized_fvae_is_the_plain_vae():
    vae = build_model("vae", {"latent_dim": 5, "hidden_channels": 8, "hidden_units": 32}, SHAPE).eval()
    fvae = make(flow_layers=0, posterior_scale="amortized").eval()
    fvae.load_state_dict(vae.state_dict())  # same encoder and decoder weights, no flow parameters
    x = batch(4)

    def same_draws(fn):
        return fn(torch.Generator().manual_seed(7))

    # one-sample bound and IWAE: identical noise, identical log-weights (up to rounding)
    assert torch.allclose(same_draws(lambda g: fvae.elbo(x, g)), same_draws(lambda g: vae.iwae(x, 1, g)), atol=1e-3)
    assert torch.allclose(same_draws(lambda g: fvae.iwae(x, 30, g)), same_draws(lambda g: vae.iwae(x, 30, g)),
                          atol=1e-3)
    assert torch.equal(same_draws(lambda g: fvae.sample(5, g)), same_draws(lambda g: vae.sample(5, g)))
    # and the Monte-Carlo KL of f-VAE averages to the VAE's closed-form one
    g = torch.Generator().manual_seed(0)
    mc_kl = torch.stack([fvae.elbo(x, g) for _ in range(300)])
    closed_kl = torch.stack([vae.elbo(x, g) for _ in range(300)])
    stderr = (mc_kl.var(0) / 300 + closed_kl.var(0) / 300).sqrt()
    assert ((mc_kl.mean(0) - closed_kl.mean(0)).abs() < 5 * stderr + 0.05).all()


@torch.no_grad()
def test_log_q_is_a_normalised_density_that_matches_samples_in_2d():
    model = latent_in_float64(scramble_flow(make(latent_dim=2, flow_layers=3), scale=0.5, log_sigma1=-0.5)).eval()
    x = batch(1)
    mean, log_sigma = (t.double() for t in model.posterior_base(x))
    n = 40_000
    u = torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    z, _, logdet = model.conditional_flow(u, mean.expand(n, 2), log_sigma.expand(n, 2))
    # log q at the samples through F_x^{-1} equals the sampled-u formula
    log_q_u = -0.5 * (u**2).sum(1) - torch.log(torch.tensor(2 * torch.pi, dtype=torch.float64)) - logdet
    assert torch.allclose(model.log_q(z, x), log_q_u, atol=1e-8)
    # integrate q(z|x) on a grid covering the samples: total mass 1, and a box's mass = sample fraction
    lo, hi = z.min(0).values, z.max(0).values
    pad = 0.25 * (hi - lo)
    m = 300
    axes = [torch.linspace(float(lo[j] - pad[j]), float(hi[j] + pad[j]), m, dtype=torch.float64) for j in range(2)]
    g0, g1 = torch.meshgrid(*axes, indexing="ij")
    grid = torch.stack([g0.flatten(), g1.flatten()], 1)
    cell = (axes[0][1] - axes[0][0]) * (axes[1][1] - axes[1][0])
    density = model.log_q(grid, x).exp()
    assert density.sum().item() * cell.item() == pytest.approx(1.0, abs=0.02)
    q_lo, q_hi = z.quantile(0.2, dim=0), z.quantile(0.7, dim=0)
    in_box = lambda pts: ((pts >= q_lo) & (pts <= q_hi)).all(1)  # noqa: E731
    mc_mass = in_box(z).double().mean().item()
    grid_mass = (density * in_box(grid)).sum().item() * cell.item()
    assert 0.05 < mc_mass < 0.9 and logdet.max() - logdet.min() > 0.5  # a non-affine F_x
    assert grid_mass == pytest.approx(mc_mass, abs=0.015)


@torch.no_grad()
def test_iwae_is_at_least_the_elbo_and_k1_is_the_elbo():
    model = scramble_flow(make(), scale=0.3, log_sigma1=0.5).eval()  # too wide a q: a gap to close
    x = batch(4)
    assert torch.equal(model.elbo(x, torch.Generator().manual_seed(5)),
                       model.iwae(x, 1, torch.Generator().manual_seed(5)))
    g = torch.Generator().manual_seed(0)
    elbos = torch.stack([model.elbo(x, g) for _ in range(200)])
    iwae50 = torch.stack([model.iwae(x, 50, g) for _ in range(8)])
    stderr = (elbos.var(0) / 200 + iwae50.var(0) / 8).sqrt()
    assert (iwae50.mean(0) > elbos.mean(0) + 4 * stderr).all()
    kinds = {k: model.log_likelihood(x, k, torch.Generator().manual_seed(0)) for k in model.likelihood_kinds}
    assert set(kinds) == {"elbo", "iwae"} and (kinds["iwae"].mean() >= kinds["elbo"].mean())


def test_training_moves_the_flow_and_sigma1_and_lowers_the_loss():
    model = make()
    opt = Optimization(model.configure_optimizers(3e-3, 0.0), None, None)
    x, g = batch(16), torch.Generator().manual_seed(0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = [float(model.training_step(x, step, opt, g)["loss"]) for step in range(30)]
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert "log_sigma1" in moved and any(n.startswith("flow.") for n in moved)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="latent_dim >= 2"):
        make(latent_dim=1)
    with pytest.raises(ValueError, match="flow_layers"):
        make(flow_layers=-1)
