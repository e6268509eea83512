"""Diffusion: the forward process in closed form, DDIM's eta family, Analytic-DPM's optimal variance on
Gaussian data (where it is known exactly), the bound and the samplers under an exact network, the
adaptive ODE solver and the instantaneous change of variables on linear fields, Skip-Tuning."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genbench import GenbenchError
from genbench.models import build_model
from genbench.models.diffusion import (Schedule, analytic_variance, analytic_variance_bounds, beta_tilde,
                                       ddim_lambda2, gamma_moments, ode_log_likelihood, optimal_variance,
                                       parse_sampler, solve_ode, timestep_subsequence, x0_coefficient)
from genbench.models.nn import discretized_gaussian_log_prob, to_signed_unit

TINY = {"channels": 8, "channel_mults": [1, 2], "timesteps": 20, "sampling_steps": 5, "likelihood_steps": 20,
        "steps_table": [2, 20], "nll_table": [2, 20], "gamma_samples": 4, "ode_rtol": 1e-2, "ode_atol": 1e-2}


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_closed_form_marginal_matches_the_iterated_forward_process(kind):
    """q(x_n | x_0) = N(sqrt(ab_n) x_0, (1 - ab_n) I) against x_n = sqrt(1 - beta_n) x_{n-1} + sqrt(beta_n) eps."""
    schedule = Schedule(kind, 200)
    ab = schedule.alpha_bar
    betas = 1 - ab[1:] / ab[:-1]
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([0.7, -0.3], dtype=torch.float64).repeat(100_000, 1)
    x, var = x0.clone(), 0.0
    for n in range(1, 201):
        x = (1 - betas[n - 1]).sqrt() * x + betas[n - 1].sqrt() * torch.randn(x.shape, generator=g, dtype=torch.float64)
        var = (1 - float(betas[n - 1])) * var + float(betas[n - 1])  # exact variance recursion
        assert var == pytest.approx(1 - float(ab[n]), rel=1e-9, abs=1e-12)
        if n in (1, 50, 200):
            torch.testing.assert_close(x.mean(0), ab[n].sqrt() * x0[0], atol=5e-3 * math.sqrt(1 - float(ab[n])) * 5, rtol=0)
            torch.testing.assert_close(x.var(0), torch.full((2,), 1 - float(ab[n]), dtype=torch.float64),
                                       rtol=0.02, atol=1e-6)


def test_schedules_match_their_papers():
    lin = Schedule("linear", 1000)
    assert 1 - lin[1] == pytest.approx(1e-4) and lin[1000] == pytest.approx(4.04e-5, rel=0.02)
    cos = Schedule("cosine", 1000)
    f = lambda n: math.cos((n / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert cos[500] == pytest.approx(f(500) / f(0), rel=1e-12)
    # the continuous-time process the ODE uses agrees with the discrete steps
    for n in (100, 500, 900):
        # (linear: the integral of beta(t) vs the sum of -log(1 - beta_n): close, not equal)
        assert float(lin.log_alpha_bar_at(torch.tensor(n / 1000.0))) == pytest.approx(math.log(lin[n]), abs=0.06)
        assert math.exp(float(cos.log_alpha_bar_at(torch.tensor(n / 1000.0, dtype=torch.float64)))) == pytest.approx(cos[n], rel=1e-9)


def test_subsequences_are_even_and_end_at_T():
    assert timestep_subsequence(1000, 1000) == list(range(1, 1001))
    taus = timestep_subsequence(1000, 10)
    assert len(taus) == 10 and taus[0] == 1 and taus[-1] == 1000
    with pytest.raises(GenbenchError):
        timestep_subsequence(10, 11)


def test_ddim_with_eta_one_reproduces_the_ddpm_posterior():
    """DDIM eq. 16 with eta = 1: variance beta~_t = beta_t (1 - ab_{t-1}) / (1 - ab_t) and the mean of DDPM eq. 7."""
    schedule = Schedule("linear", 1000)
    g = torch.Generator().manual_seed(0)
    for t in (2, 10, 500, 1000):
        ab_t, ab_s = schedule[t], schedule[t - 1]
        beta_t = 1 - ab_t / ab_s
        assert ddim_lambda2(ab_t, ab_s, 1.0) == pytest.approx(beta_t * (1 - ab_s) / (1 - ab_t), rel=1e-12)
        assert ddim_lambda2(ab_t, ab_s, 0.0) == 0.0
        x0, eps = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
        xt = math.sqrt(ab_t) * x0 + math.sqrt(1 - ab_t) * eps
        lam2 = ddim_lambda2(ab_t, ab_s, 1.0)
        generalised = math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s - lam2) * eps
        ddpm = math.sqrt(ab_s) * beta_t / (1 - ab_t) * x0 + math.sqrt(1 - beta_t) * (1 - ab_s) / (1 - ab_t) * xt
        torch.testing.assert_close(generalised, ddpm, rtol=1e-9, atol=1e-12)


def test_sampler_names():
    assert parse_sampler("ddim-eta0.5") == ("ddim", 0.5)
    assert parse_sampler("analytic-ddpm") == ("analytic-ddpm", None)
    with pytest.raises(GenbenchError, match="unknown diffusion sampler"):
        parse_sampler("ddim-fast")


# --------------------------------------------------------------------------------------------------
# Analytic-DPM on Gaussian data: the optimal reverse variance is known in closed form
# --------------------------------------------------------------------------------------------------
MEAN, STD = 0.2, 0.5  # x_0 ~ N(MEAN, STD^2 I)


def gaussian_eps(schedule: Schedule):
    """The Bayes-optimal noise prediction E[eps | x_n] for x_0 ~ N(MEAN, STD^2 I)."""
    def eps(x: torch.Tensor, n) -> torch.Tensor:
        ab = schedule[int(n)]
        return math.sqrt(1 - ab) * (x - math.sqrt(ab) * MEAN) / (ab * STD**2 + 1 - ab)
    return eps


def test_analytic_variance_converges_to_the_exact_optimum_on_gaussian_data():
    schedule = Schedule("linear", 100)
    d, steps = 16, [10, 40, 100]
    errors = {}
    for m in (100, 40000):
        g = torch.Generator().manual_seed(1)
        x0 = MEAN + STD * torch.randn(m, d, generator=g)
        gamma = gamma_moments(gaussian_eps(schedule), x0, schedule, steps, g)
        worst = 0.0
        for t in steps:
            ab_t, ab_s = schedule[t], schedule[t - 1]
            posterior_var = STD**2 * (1 - ab_t) / (ab_t * STD**2 + 1 - ab_t)  # Var(x_0 | x_t), per dimension
            assert gamma[t] == pytest.approx((1 - ab_t) / (ab_t * STD**2 + 1 - ab_t), rel=0.1)
            for lam2 in (0.0, beta_tilde(ab_t, ab_s)):
                exact = lam2 + x0_coefficient(ab_t, ab_s, lam2) ** 2 * posterior_var
                estimate = analytic_variance(ab_t, ab_s, lam2, gamma[t])
                lower, upper = analytic_variance_bounds(ab_t, ab_s, lam2, data_half_range=3.0)
                assert lower <= exact <= upper
                worst = max(worst, abs(estimate - exact) / exact)
        errors[m] = worst
    assert errors[40000] < 0.05 and errors[40000] < errors[100] / 3  # error ~ 1/sqrt(M)


def test_optimal_variance_is_the_mean_squared_error_of_the_optimal_mean():
    """Theorem 1 checked by brute force: draw x_0, x_t, x_s ~ q_lambda(x_s | x_t, x_0) and measure
    E (x_s - mu*(x_t))^2 with the Bayes-optimal mean; it equals the analytic sigma*^2."""
    schedule = Schedule("linear", 100)
    eps_fn = gaussian_eps(schedule)
    g = torch.Generator().manual_seed(2)
    t, s = 60, 30
    ab_t, ab_s = schedule[t], schedule[s]
    x0 = MEAN + STD * torch.randn(400_000, generator=g, dtype=torch.float64)
    xt = math.sqrt(ab_t) * x0 + math.sqrt(1 - ab_t) * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    gamma = float(eps_fn(xt, t).pow(2).mean())
    for lam2 in (0.0, beta_tilde(ab_t, ab_s)):
        coef = math.sqrt(1 - ab_s - lam2)
        xs = (math.sqrt(ab_s) * x0 + coef * (xt - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)
              + math.sqrt(lam2) * torch.randn(x0.shape, generator=g, dtype=torch.float64))
        e = eps_fn(xt, t)
        x0_hat = (xt - math.sqrt(1 - ab_t) * e) / math.sqrt(ab_t)
        mu = math.sqrt(ab_s) * x0_hat + coef * e
        assert float((xs - mu).pow(2).mean()) == pytest.approx(analytic_variance(ab_t, ab_s, lam2, gamma), rel=0.01)


def test_sn_variance_is_the_exact_reverse_variance_on_gaussian_data():
    """SN-DPM with the exact E[eps | x_t] and E[eps^2 | x_t]: sigma*^2(x_t) is Var(x_s | x_t) of the
    forward process, which for Gaussian data follows from the joint Gaussian of (x_s, x_t) alone."""
    schedule = Schedule("linear", 100)
    eps_fn = gaussian_eps(schedule)
    xt = torch.linspace(-3, 3, 7, dtype=torch.float64)
    for t, s in ((60, 59), (60, 30), (100, 1)):
        ab_t, ab_s = schedule[t], schedule[s]
        var_t = ab_t * STD**2 + 1 - ab_t
        second_moment = (1 - (1 - ab_t) / var_t) + eps_fn(xt, t) ** 2   # E[eps^2 | x_t] = Var + mean^2
        var_s = ab_s * STD**2 + 1 - ab_s
        cov_st = math.sqrt(ab_t / ab_s) * var_s                          # Markov forward: x_t = sqrt(ab_t/ab_s) x_s + noise
        exact = var_s - cov_st**2 / var_t
        sn = optimal_variance(ab_t, ab_s, beta_tilde(ab_t, ab_s), second_moment - eps_fn(xt, t) ** 2)
        torch.testing.assert_close(sn, torch.full_like(xt, exact), rtol=1e-9, atol=1e-12)


def test_npr_variance_is_the_mean_squared_error_of_an_imperfect_mean():
    """NPR-DPM (Bao et al. 2022b): with a biased eps_hat, lambda^2 + gap^2 E[(eps - eps_hat)^2 | x_t] is the
    expected squared error of that network's own reverse mean (so the best variance for it), while SN-DPM's
    perfect-mean variance falls short of it. Checked by brute force for DDPM's and DDIM's lambda."""
    schedule = Schedule("linear", 100)
    exact_eps = gaussian_eps(schedule)
    biased = lambda x, n: 0.7 * exact_eps(x, n) + 0.1  # noqa: E731
    g = torch.Generator().manual_seed(4)
    t, s = 60, 30
    ab_t, ab_s = schedule[t], schedule[s]
    x0 = MEAN + STD * torch.randn(400_000, generator=g, dtype=torch.float64)
    xt = math.sqrt(ab_t) * x0 + math.sqrt(1 - ab_t) * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    posterior_var_eps = 1 - (1 - ab_t) / (ab_t * STD**2 + 1 - ab_t)
    npr_residual = posterior_var_eps + (exact_eps(xt, t) - biased(xt, t)) ** 2   # E[(eps - eps_hat)^2 | x_t]
    for lam2 in (0.0, beta_tilde(ab_t, ab_s)):
        coef = math.sqrt(1 - ab_s - lam2)
        xs = (math.sqrt(ab_s) * x0 + coef * (xt - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)
              + math.sqrt(lam2) * torch.randn(x0.shape, generator=g, dtype=torch.float64))
        e = biased(xt, t)
        mu = math.sqrt(ab_s) * (xt - math.sqrt(1 - ab_t) * e) / math.sqrt(ab_t) + coef * e
        mse = float((xs - mu).pow(2).mean())
        assert float(optimal_variance(ab_t, ab_s, lam2, npr_residual).mean()) == pytest.approx(mse, rel=0.01)
        # SN-DPM's variance misses exactly the mean's own error, gap^2 E[(E[eps | x_t] - eps_hat)^2]
        gap2 = (math.sqrt((1 - ab_t) * ab_s / ab_t) - coef) ** 2
        shortfall = mse - optimal_variance(ab_t, ab_s, lam2, posterior_var_eps)
        assert shortfall == pytest.approx(gap2 * float((exact_eps(xt, t) - e).pow(2).mean()), rel=0.05)
        assert shortfall > 0.05 * mse


def test_moment_heads_leave_training_unchanged_and_fit_their_targets():
    """The SN/NPR heads draw nothing from the global RNG (the trained network is bit-identical with or
    without them); fitted on a frozen network, their mean output matches E[eps^2] = 1 and the measured
    E[(eps - eps_hat)^2]. The network's output is biased by +1 first, so that E[(eps - eps_hat)^2] ~ 2 is
    far from the heads' initial output (1): only a fit to the right targets passes."""
    torch.manual_seed(0)
    plain = build_model("ddpm", TINY, (1, 8, 8))
    after_plain = torch.rand(3)
    torch.manual_seed(0)
    model = build_model("ddpm", {**TINY, "moment_head_steps": 400, "moment_head_lr": 3e-3}, (1, 8, 8))
    assert torch.equal(torch.rand(3), after_plain)
    for (name, a), b in zip(plain.net.state_dict().items(), model.net.state_dict().values()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        model.net.out[2].bias.add_(1.0)
    x = torch.randint(0, 256, (256, 1, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    model.eval().calibrate(x, torch.Generator().manual_seed(0))
    assert bool(model.moment_heads_fitted)
    assert all(float(head[2].weight.detach().abs().sum()) > 0 for head in model.moment_heads.values())  # the fit ran
    g = torch.Generator().manual_seed(5)
    x0 = to_signed_unit(x)
    with torch.no_grad():
        for t in (3, 15):
            noise = torch.randn(x0.shape, generator=g)
            xt = model.q_sample(x0, torch.full((len(x0),), t), noise)
            eps, features = model.net(xt, torch.full((len(x0),), float(t)), features=True)
            assert float(model.moment_heads["sn"](features).mean()) == pytest.approx(1.0, abs=0.1)
            target = float((noise - eps).pow(2).mean())
            assert target > 1.5  # far from the heads' initial output
            assert float(model.moment_heads["npr"](features).mean()) == pytest.approx(target, rel=0.1)
    for sampler in ("sn-ddpm", "sn-ddim", "npr-ddpm", "npr-ddim"):
        out, _ = model.sample_chain(4, torch.Generator().manual_seed(0), sampler, 5)
        assert out.shape == (4, 1, 8, 8) and out.dtype == torch.uint8


def test_sn_and_npr_need_their_fitted_heads():
    with pytest.raises(GenbenchError, match="moment_head_steps > 0"):
        build_model("ddpm", {**TINY, "steps_table_samplers": ["sn-ddim"]}, (1, 8, 8))
    model = build_model("ddpm", {**TINY, "moment_head_steps": 2}, (1, 8, 8)).eval()
    with pytest.raises(GenbenchError, match="moment head, fitted after training"):
        model.sample_chain(2, torch.Generator().manual_seed(0), "npr-ddpm", 5)


# --------------------------------------------------------------------------------------------------
# The bound and the samplers with an exact network (all data at one image x*)
# --------------------------------------------------------------------------------------------------
class PointMassEps(nn.Module):
    """eps(x_n, n) exact for data concentrated on one image x* (then x0_hat = x* at every step)."""

    def __init__(self, schedule: Schedule, x_star: torch.Tensor):
        super().__init__()
        self.schedule, self.x_star = schedule, x_star

    def forward(self, x, n):
        ab = self.schedule.alpha_bar[n.round().long()].float().view(-1, 1, 1, 1)
        return (x - ab.sqrt() * self.x_star) / (1 - ab).sqrt()


def point_mass_model(sampler="ddim-eta0"):
    model = build_model("ddpm", {**TINY, "sampler": sampler, "timesteps": 50, "sampling_steps": 7,
                                 "clip_denoised": False}, (1, 4, 4))
    x = torch.randint(0, 256, (1, 1, 4, 4), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    model.net = PointMassEps(model.schedule, to_signed_unit(x)[0])
    return model, x


@pytest.mark.parametrize("sampler", ["ddim-eta0", "ddim-eta1", "ddpm-beta", "analytic-ddim", "analytic-ddpm"])
def test_every_sampler_returns_the_point_mass_under_the_exact_network(sampler):
    model, x = point_mass_model(sampler)
    model.calibrate(x.repeat(8, 1, 1, 1), torch.Generator().manual_seed(0))
    assert model.gamma[1:].sub(1).abs().max() < 0.5  # ||eps||^2 / d ~ 1 for exact noise predictions
    out = model.sample(6, torch.Generator().manual_seed(0))
    assert torch.equal(out, x.expand(6, -1, -1, -1))  # x0_hat = x* at every step, and the last step outputs it


def test_bound_with_the_exact_network_is_prior_plus_decoder_plus_variance_mismatch():
    model, x = point_mass_model()
    model.calibrate(x.repeat(8, 1, 1, 1), torch.Generator().manual_seed(0))
    kinds = ["ddpm-beta", "ddpm-beta-tilde", "analytic-ddpm"]
    bounds = model.variational_bounds(x, 10, kinds, torch.Generator().manual_seed(0))
    d, taus = x[0].numel(), timestep_subsequence(50, 10)
    x0 = to_signed_unit(x).double()
    ab_T = model.schedule[50]
    prior = 0.5 * (ab_T * float(x0.pow(2).sum()) + d * (-ab_T - math.log(1 - ab_T)))
    log_var = math.log(model.decoder_variance(taus))
    decoder = float(discretized_gaussian_log_prob(x, x0, torch.full(x0.shape, 0.5 * log_var, dtype=torch.float64)).sum())
    for kind in kinds:  # x0_hat = x*: the KL terms keep only the variance mismatch
        mismatch = 0.0
        for k in range(1, len(taus)):
            lam2, sigma2 = model.variances(kind, None, taus[k], taus[k - 1], taus, sampling=False)
            mismatch += 0.5 * d * (math.log(sigma2 / lam2) + lam2 / sigma2 - 1)
        assert float(-bounds[kind]) == pytest.approx(prior + mismatch - decoder, rel=1e-5)
    assert float(-bounds["ddpm-beta-tilde"]) <= float(-bounds["ddpm-beta"])


BINARY = torch.tensor([0, 255])  # every pixel independently black or white, each with probability 1/2


def binary_posterior(xt: torch.Tensor, ab: float) -> tuple[torch.Tensor, torch.Tensor]:
    """E[x_0 | x_t] and Var(x_0 | x_t) per pixel for BINARY data: Bayes over the two levels."""
    v = to_signed_unit(BINARY).double()
    w = torch.softmax(-(xt.unsqueeze(-1) - math.sqrt(ab) * v) ** 2 / (2 * (1 - ab)), dim=-1)
    mean = (w * v).sum(-1)
    return mean, (w * v**2).sum(-1) - mean**2


class BinaryEps(nn.Module):
    """The exact eps(x_n, n) = E[eps | x_n] for BINARY data; records the x_n it is given."""

    def __init__(self, schedule: Schedule):
        super().__init__()
        self.schedule, self.seen = schedule, {}

    def forward(self, x, n):
        t = int(n[0].round())
        ab, xt = self.schedule[t], x.double()
        self.seen[t] = xt
        return (xt - math.sqrt(ab) * binary_posterior(xt, ab)[0]) / math.sqrt(1 - ab)


def binary_moments(ab: float) -> tuple[float, float]:
    """(Gamma_n = E ||E[eps | x_n]||^2 / d, E Var(x_0 | x_n)) for BINARY data, by quadrature over eps."""
    e = torch.linspace(-12, 12, 24001, dtype=torch.float64)
    pdf = torch.exp(-e**2 / 2) / math.sqrt(2 * math.pi)
    xt = math.sqrt(ab) * to_signed_unit(BINARY).double()[:, None] + math.sqrt(1 - ab) * e  # (level, eps)
    mean, var = binary_posterior(xt, ab)
    eps_hat = (xt - math.sqrt(ab) * mean) / math.sqrt(1 - ab)
    weight = pdf / len(BINARY)  # the levels are equally likely
    return float(torch.trapezoid(eps_hat**2 * weight, e).sum()), float(torch.trapezoid(var * weight, e).sum())


def test_bound_matches_the_closed_form_optimal_reverse_process_without_the_sampling_cap():
    """Binary pixels (the optimal reverse process in closed form): with the exact network and the exact
    Gamma_n, each K-step bound equals the one written out here (Ho et al. 2020 eq. 5 over a sub-sequence,
    Bao et al. 2022 eq. 12; Gaussian KLs with DDPM eq. 7's posterior) with sigma^2 = beta, beta~ and
    Analytic-DPM's sigma*^2 = beta~ + c^2 E Var(x_0 | x_t) (Thm 1), and none capped on the last step: the
    cap (`sigma_clip_pixels`) is Analytic-DPM's for sampling only. Bao et al. Table 1's shape then follows:
    at small K, sigma^2 = beta~ pays a huge mean-error term that sigma^2 = beta does not."""
    T, kinds, d = 1000, ["ddpm-beta", "ddpm-beta-tilde", "analytic-ddpm"], 64
    model = build_model("ddpm", {**TINY, "timesteps": T}, (1, 8, 8))  # linear schedule, clip_denoised on
    model.net = BinaryEps(model.schedule)
    ab = model.schedule
    x = BINARY[torch.randint(0, 2, (16, 1, 8, 8), generator=torch.Generator().manual_seed(0))].to(torch.uint8)
    x0 = to_signed_unit(x).double()
    expected_var = {}
    for n in sorted({t for k in (2, 5, 10, 25) for t in timestep_subsequence(T, k)}):
        model.gamma[n], expected_var[n] = binary_moments(ab[n])
    bpd = {}
    for steps in (2, 5, 10, 25):
        model.net.seen.clear()
        bounds = model.variational_bounds(x, steps, kinds, torch.Generator().manual_seed(steps))
        taus = timestep_subsequence(T, steps)
        prior = 0.5 * (ab[T] * x0**2 - ab[T] - math.log(1 - ab[T])).flatten(1).sum(1)  # KL(q(x_T | x_0) || N(0, I))
        nll = {kind: prior.clone() for kind in kinds}
        for k in range(1, steps):
            t, s = taus[k], taus[k - 1]
            xt = model.net.seen[t]  # the draw x_t ~ q(x_t | x_0) the bound used
            x0_hat = binary_posterior(xt, ab[t])[0]
            skip_beta = 1 - ab[t] / ab[s]
            tilde = skip_beta * (1 - ab[s]) / (1 - ab[t])
            c1 = math.sqrt(ab[s]) * skip_beta / (1 - ab[t])  # x_0's weight in the posterior mean (DDPM eq. 7)
            for kind, var_p in (("ddpm-beta", skip_beta), ("ddpm-beta-tilde", tilde),
                                ("analytic-ddpm", tilde + c1**2 * expected_var[t])):
                # KL(N(mu_q, tilde) || N(mu_p, var_p)) per pixel, mu_q - mu_p = c1 (x_0 - x0_hat)
                kl = 0.5 * (math.log(var_p / tilde) + (tilde + c1**2 * (x0 - x0_hat) ** 2) / var_p - 1)
                nll[kind] += kl.flatten(1).sum(1)
        t1, t2 = taus[0], taus[1]
        decoder_var = (1 - ab[t1]) / (1 - ab[t2]) * (1 - ab[t2] / ab[t1])  # beta~ of the step tau_2 -> tau_1
        x0_hat = binary_posterior(model.net.seen[t1], ab[t1])[0]
        decoder = discretized_gaussian_log_prob(x, x0_hat, torch.full_like(x0_hat, 0.5 * math.log(decoder_var)))
        for kind in kinds:
            torch.testing.assert_close(-bounds[kind], nll[kind] - decoder.flatten(1).sum(1), rtol=1e-9, atol=0)
            bpd[kind, steps] = float(-bounds[kind].mean()) / (d * math.log(2))
    for steps in (2, 5, 10):  # Bao et al. 2022 Table 1 (CIFAR-10, K = 10: 6.99 beta vs 74.95 beta~)
        assert bpd["ddpm-beta-tilde", steps] > 10 * bpd["ddpm-beta", steps]
    for steps in (2, 5, 10, 25):  # the exact mean and Gamma_n make Analytic-DPM's variance the optimal one
        assert bpd["analytic-ddpm", steps] <= min(bpd["ddpm-beta", steps], bpd["ddpm-beta-tilde", steps]) + 1e-6
    # the samplers keep the cap: sigma^2 = beta of the step into tau_1 capped at (1 level 2/255)^2 pi/2
    taus = timestep_subsequence(T, 10)
    assert model.variances("ddpm-beta", None, taus[1], taus[0], taus, sampling=True)[1] == \
        pytest.approx((2 / 255) ** 2 * math.pi / 2, rel=1e-12)
    assert model.variances("ddpm-beta", None, taus[1], taus[0], taus, sampling=False)[1] == \
        pytest.approx(1 - ab[taus[1]] / ab[taus[0]], rel=1e-12)


def test_discretized_gaussian_is_a_distribution_over_256_bins():
    values = torch.arange(256, dtype=torch.uint8)
    for mean, log_scale in ((0.0, -2.0), (0.7, -6.0), (-0.99, -4.0), (0.3, 1.0), (0.5, -9.0)):
        logp = discretized_gaussian_log_prob(values, torch.full((256,), mean, dtype=torch.float64),
                                             torch.full((256,), log_scale, dtype=torch.float64))
        assert float(torch.logsumexp(logp, 0)) == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------------------------------
# ODE solver and the instantaneous change of variables
# --------------------------------------------------------------------------------------------------
def linear_field():
    a = torch.tensor([[-0.5, 1.0, 0.0], [-1.0, -0.2, 0.3], [0.1, 0.0, 0.4]], dtype=torch.float64)
    return a, (lambda t, x: x @ a.T)


def test_dormand_prince_solves_a_linear_system_to_tolerance():
    a, f = linear_field()
    y0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for t0, t1 in ((0.0, 2.0), (1.5, 0.2)):
        y1, nfe = solve_ode(f, y0, t0, t1, rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(y1, y0 @ torch.linalg.matrix_exp(a * (t1 - t0)).T, rtol=1e-6, atol=1e-7)
        assert nfe < 2000


def test_ode_log_likelihood_of_a_linear_field_is_exact():
    """x(t1) = exp(A (t1 - t0)) x(t0): log p_t0(x) = log N(x(t1)) + tr(A) (t1 - t0) (det exp A = exp tr A)."""
    a, f = linear_field()
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    prior = lambda z: -0.5 * (z**2 + math.log(2 * math.pi)).sum(1)  # noqa: E731
    exact = prior(x @ torch.linalg.matrix_exp(a * 1.2).T) + float(torch.trace(a)) * 1.2
    log_p, _ = ode_log_likelihood(f, x, 0.0, 1.2, prior, None, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(log_p, exact, rtol=1e-6, atol=1e-6)
    # Hutchinson: unbiased for the trace, so the average over probes converges to the exact value
    g = torch.Generator().manual_seed(2)
    probes = torch.randint(0, 2, (4000, 3), generator=g, dtype=torch.float64) * 2 - 1
    many, _ = ode_log_likelihood(f, x[:1].expand(4000, 3).clone(), 0.0, 1.2, prior, probes, rtol=1e-8, atol=1e-8)
    assert float(many.mean()) == pytest.approx(float(exact[0]), abs=0.03)
    assert float(many.std()) > 0.01  # the probes do vary


# --------------------------------------------------------------------------------------------------
# The model in the harness
# --------------------------------------------------------------------------------------------------
def test_skip_tuning_scales_skips_linearly_and_restores_them():
    model = build_model("ddpm", TINY, (1, 28, 28)).eval()
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    base = model.eps(x, 5)
    with model.net.skip_scaling(0.5):
        scales = model.net.skip_scales
        assert scales[0] == 1.0 and scales[-1] == 0.5 and len(scales) == model.net.num_skips
        assert all(b < a for a, b in zip(scales, scales[1:]))
        assert not torch.allclose(model.eps(x, 5), base)
    assert model.net.skip_scales is None and torch.equal(model.eps(x, 5), base)
    with model.net.skip_scaling(1.0):
        assert torch.equal(model.eps(x, 5), base)


def test_analytic_sampler_without_calibration_is_a_clear_error():
    model = build_model("ddpm", TINY, (1, 28, 28)).eval()
    with pytest.raises(GenbenchError, match="Gamma_n"):
        model.sample(2, torch.Generator().manual_seed(0))


def test_bad_sampler_names_are_refused_at_build_time():
    with pytest.raises(GenbenchError, match="unknown diffusion sampler"):
        build_model("ddpm", {**TINY, "steps_table_samplers": ["ddim-eta0", "euler"]}, (1, 28, 28))
    with pytest.raises(GenbenchError, match="Markov forward process"):
        build_model("ddpm", {**TINY, "nll_table_variances": ["analytic-ddim"]}, (1, 28, 28))


def test_variants_and_tables_cover_the_configured_cells():
    model = build_model("ddpm", {**TINY, "skip_tuning": [0.8]}, (1, 28, 28)).eval()
    names = set(model.sample_variants(None))
    assert {"ddim-eta0_S2", "ddim-eta1_S20", "analytic-ddim_S20", "ddim-eta0_S10_skip0.8", "ode"} <= names
    x = torch.randint(0, 256, (3, 1, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    model.calibrate(x, torch.Generator().manual_seed(0))
    table = model.log_likelihood_table(x, torch.Generator().manual_seed(0))
    assert set(table) == {f"{v}_K{k}" for v in ("ddpm-beta", "ddpm-beta-tilde", "analytic-ddpm") for k in (2, 20)}
    assert all(v.shape == (3,) and torch.isfinite(v).all() and (v <= 0).all() for v in table.values())


def test_report_tables_and_claimed_orderings(tmp_path, monkeypatch):
    """The report's steps and NLL tables from a metrics file, with each claimed ordering judged."""
    from types import SimpleNamespace

    from genbench.io import write_json
    from genbench.report import diffusion_sections

    monkeypatch.chdir(tmp_path)
    fid = {("ddim-eta0", 10): 30.0, ("ddim-eta0", 100): 12.0, ("ddim-eta1", 10): 60.0, ("ddim-eta1", 100): 10.0,
           ("analytic-ddim", 10): 20.0, ("analytic-ddim", 100): 11.0, ("sn-ddim", 10): 15.0, ("sn-ddim", 100): 12.0}
    variants = {f"{s}_S{k}": {"sample": {"table": "steps", "sampler": s, "steps": k},
                              "scores": {"classifier": {"fid": v, "protocol": {"extractor": "classifier-mnist",
                                                                                "n_gen": 200}}}}
                for (s, k), v in fid.items()}
    nll = {f"{kind}_K{k}": {"bits_per_dim": v, "stderr": 0.01, "n": 100}
           for kind, row in {"ddpm-beta": {10: 3.0, 1000: 1.5}, "ddpm-beta-tilde": {10: 9.0, 1000: 1.4},
                             "analytic-ddpm": {10: 2.0, 1000: 1.45}, "npr-ddpm": {10: 1.9, 1000: 1.44}}.items()
           for k, v in row.items()}
    write_json(tmp_path / "metrics" / "ddpm_mnist-s0.json", {"variants": variants, "nll_table": nll})
    params = SimpleNamespace(runs={"ddpm_mnist": None}, seeds=[0], eval=SimpleNamespace(reference_split="test"))
    text = "\n".join(diffusion_sections(params))
    assert "| ddim-eta0 | 30.00 | 12.00 |" in text
    assert "than eta = 1 (Song et al. 2021, Table 1) at every step count measured (10, 100): not ordered so at 100 (no uncertainty: the verdicts are in the claims table)." in text
    assert "lower FID (classifier-mnist) than DDIM (Bao et al. 2022, Table 2) at every step count measured (10, 100): ordered so (no uncertainty: the verdicts are in the claims table)." in text
    assert "than DDPM's with sigma^2 = beta (Bao et al. 2022, Table 1) at every step count measured (10, 1000): ordered so (no uncertainty: the verdicts are in the claims table)." in text
    assert "sigma^2 = beta~ (Bao et al. 2022, Table 1) at every step count measured (10, 1000): not ordered so at 1000 (no uncertainty: the verdicts are in the claims table)." in text
    assert "| analytic-ddpm | 2.000 ± 0.010 | 1.450 ± 0.010 |" in text
    assert "SN-DDIM has a lower FID (classifier-mnist) than Analytic-DDIM (Bao et al. 2022b) at every step count " \
           "measured (10, 100): not ordered so at 100 (no uncertainty: the verdicts are in the claims table)." in text
    assert "NPR-DDPM's bound is lower than Analytic-DDPM's (Bao et al. 2022b) at every step count measured " \
           "(10, 1000): ordered so (no uncertainty: the verdicts are in the claims table)." in text
    assert "Song, Meng & Ermon 2021 (DDIM), Table 1" in text


def test_train_sample_evaluate_through_the_harness(workdir):
    """Gamma_n estimated after training and stored in model.pt; the capped sample counts and the NLL
    table reach the metrics file with their protocol."""
    from genbench.cli import main
    from genbench.io import read_json
    from genbench.layout import metrics_path, run_dir, samples_dir
    from genbench.train import load_trained

    for stage in (["classifier", "--dataset", "mnist"], ["refstats", "--dataset", "mnist"]):
        assert main(stage) == 0
    for stage in ("train", "sample", "evaluate"):
        assert main([stage, "--run", "ddpm_mnist", "--seed", "0"]) == 0
    model, _ = load_trained(run_dir("ddpm_mnist", 0))
    assert torch.isfinite(model.gamma[1:]).all() and (model.gamma[1:] > 0).all() and bool(model.moment_heads_fitted)
    assert read_json(run_dir("ddpm_mnist", 0) / "outcome.json")["calibration_s"] > 0
    record = read_json(samples_dir("ddpm_mnist", 0) / "sample.json")
    assert record["sampler"] == "analytic-ddpm S=5" and record["variants"]["ddim-eta0_S2"]["n"] == 20
    m = read_json(metrics_path("ddpm_mnist", 0))
    assert m["scores"]["classifier"]["protocol"]["n_gen"] == 50  # the run's eval.n_gen cap
    assert m["variants"]["analytic-ddim_S20"]["scores"]["classifier"]["protocol"]["n_gen"] == 20
    assert m["variants"]["sn-ddim_S20"]["scores"]["classifier"]["protocol"]["n_gen"] == 20
    assert set(m["nll_table"]) == {f"{v}_K{k}" for v in ("ddpm-beta", "ddpm-beta-tilde", "analytic-ddpm", "sn-ddpm",
                                                         "npr-ddpm") for k in (2, 20)}
    assert m["likelihood"]["vlb"]["n"] == 10 and m["likelihood"]["estimate"]["n"] == 10
    # the bound at K = T is the leaderboard's vlb: same network, same variances
    assert m["nll_table"]["analytic-ddpm_K20"]["bits_per_dim"] == pytest.approx(m["likelihood"]["vlb"]["bits_per_dim"],
                                                                                rel=0.05)
