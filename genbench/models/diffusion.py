"""Diffusion models: one noise-prediction U-Net, several samplers and likelihoods on it.

Notation (Ho et al. 2020; Bao et al. 2022): steps n = 1..T, alpha_bar_n = prod_{i<=n} (1 - beta_i),
alpha_bar_0 = 1, beta_bar_n = 1 - alpha_bar_n. Data x_0 in [-1, 1] (the 256 bin centres of
`to_signed_unit`), q(x_n | x_0) = N(sqrt(alpha_bar_n) x_0, beta_bar_n I).

Every sampler and bound here walks a sub-sequence 1 <= tau_1 < ... < tau_K = T (tau_0 = 0; K = T is
the full chain) with the generalised reverse step of DDIM / Analytic-DPM from t = tau_k to s = tau_{k-1}:

  x0_hat = (x_t - sqrt(beta_bar_t) eps(x_t, t)) / sqrt(alpha_bar_t)
  x_s    = sqrt(alpha_bar_s) x0_hat + sqrt(beta_bar_s - lambda^2) eps(x_t, t) + sigma z,   z ~ N(0, I)

where lambda^2 is the variance of the forward posterior q_lambda(x_s | x_t, x_0) being matched and
sigma^2 the reverse variance:

  sampler           lambda^2                 sigma^2
  ddpm-beta         beta_tilde(t, s)         1 - alpha_bar_t / alpha_bar_s      (DDPM's sigma^2 = beta)
  ddpm-beta-tilde   beta_tilde(t, s)         beta_tilde(t, s)                    (DDPM's sigma^2 = beta~)
  ddim-eta<e>       e^2 beta_tilde(t, s)     lambda^2                            (DDIM eq. 16)
  analytic-ddpm     beta_tilde(t, s)         sigma*^2 (Analytic-DPM Thm 1, clipped by Thm 2)
  analytic-ddim     0                        sigma*^2
  sn-ddpm           beta_tilde(t, s)         sigma*^2(x_t), per pixel, from E[eps^2 | x_t] (SN-DPM)
  sn-ddim           0                        sigma*^2(x_t) as sn-ddpm
  npr-ddpm          beta_tilde(t, s)         sigma*^2(x_t), per pixel, from E[(eps - eps_hat)^2 | x_t] (NPR-DPM)
  npr-ddim          0                        sigma*^2(x_t) as npr-ddpm
  ode               the probability-flow ODE, solved by an adaptive Dormand-Prince method

with beta_tilde(t, s) = beta_bar_s / beta_bar_t * (1 - alpha_bar_t / alpha_bar_s) (DDPM eq. 7 over a
sub-sequence; for s = t - 1 it is DDPM's beta~_t).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from genbench import GenbenchError
from genbench.metrics.likelihood import LOG_NUM_BINS, dequantize
from genbench.models import GenerativeModel, Optimization, SamplerVariant, register_model
from genbench.models.nn import discretized_gaussian_log_prob, from_signed_unit, to_signed_unit


# ==================================================================================================
# Noise schedules
# ==================================================================================================
def linear_alpha_bars(timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """DDPM (Ho et al. 2020, sec. 4): beta_n linear from beta_1 to beta_T; returns alpha_bar_0..T."""
    betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1.0 - betas, 0)])


def cosine_alpha_bars(timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Improved DDPM (Nichol & Dhariwal 2021, eq. 17): alpha_bar_n = f(n) / f(0),
    f(n) = cos^2(((n / T) + s) / (1 + s) * pi / 2), betas clipped at 0.999; returns alpha_bar_0..T."""
    n = torch.arange(timesteps + 1, dtype=torch.float64)
    f = torch.cos((n / timesteps + offset) / (1 + offset) * math.pi / 2) ** 2
    betas = (1.0 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1.0 - betas, 0)])


class Schedule:
    """alpha_bar on the discrete steps, and the matching continuous-time VP process for the ODE
    (Song et al. 2021, eq. 11 / 32): log alpha_bar(t), t in [0, 1], t = n / T."""

    def __init__(self, kind: str, timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02,
                 offset: float = 0.008):
        self.kind, self.timesteps, self.offset = kind, timesteps, offset
        self.beta_min, self.beta_max = beta_start * timesteps, beta_end * timesteps
        if kind == "linear":
            self.alpha_bar = linear_alpha_bars(timesteps, beta_start, beta_end)
        elif kind == "cosine":
            self.alpha_bar = cosine_alpha_bars(timesteps, offset)
        else:
            raise GenbenchError(f"unknown noise schedule {kind!r}; expected 'linear' or 'cosine'")
        # the cosine process reaches alpha_bar = 0 at t = 1 (infinite beta): stop half a step before
        self.t_max = 1.0 if kind == "linear" else 1.0 - 0.5 / timesteps

    def __getitem__(self, n: int) -> float:
        return float(self.alpha_bar[n])

    def log_alpha_bar_at(self, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":  # integral of beta(s) = beta_min + s (beta_max - beta_min)
            return -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)
        angle = lambda u: (u + self.offset) / (1 + self.offset) * math.pi / 2  # noqa: E731
        return 2 * torch.log(torch.cos(angle(t))) - 2 * math.log(math.cos(angle(torch.tensor(0.0)).item()))

    def beta_at(self, t: torch.Tensor) -> torch.Tensor:
        """beta(t) = -d log alpha_bar(t) / dt."""
        if self.kind == "linear":
            return self.beta_min + t * (self.beta_max - self.beta_min)
        return math.pi / (1 + self.offset) * torch.tan((t + self.offset) / (1 + self.offset) * math.pi / 2)


def timestep_subsequence(timesteps: int, k: int) -> list[int]:
    """K steps evenly spaced on 1..T, both ends included (K = T: the full chain)."""
    if not 1 <= k <= timesteps:
        raise GenbenchError(f"a sub-sequence of {k} steps does not fit in T = {timesteps}")
    if k == 1:
        return [timesteps]
    return sorted({int(round(v)) for v in np.linspace(1, timesteps, k)})


# ==================================================================================================
# The generalised reverse step: variances and coefficients (floats in float64)
# ==================================================================================================
def beta_tilde(ab_t: float, ab_s: float) -> float:
    """Variance of q(x_s | x_t, x_0) for the Markov forward process (DDPM eq. 7, over t > s)."""
    return (1.0 - ab_s) / (1.0 - ab_t) * (1.0 - ab_t / ab_s)


def ddim_lambda2(ab_t: float, ab_s: float, eta: float) -> float:
    """DDIM eq. 16: sigma_eta^2 = eta^2 beta_tilde(t, s); eta = 1 is DDPM's posterior, eta = 0 deterministic."""
    return eta**2 * beta_tilde(ab_t, ab_s)


def x0_coefficient(ab_t: float, ab_s: float, lam2: float) -> float:
    """The reverse mean written in x_0: mu = c x_0 + (terms in x_t) with
    c = sqrt(alpha_bar_s) - sqrt(beta_bar_s - lambda^2) sqrt(alpha_bar_t / beta_bar_t); a mean error
    in x0_hat costs c^2 |x_0 - x0_hat|^2 / (2 sigma^2) nats."""
    return math.sqrt(ab_s) - math.sqrt(max(1.0 - ab_s - lam2, 0.0)) * math.sqrt(ab_t / (1.0 - ab_t))


def optimal_variance(ab_t: float, ab_s: float, lam2: float, residual):
    """sigma*^2 = lambda^2 + (sqrt(beta_bar_t / alpha_{t|s}) - sqrt(beta_bar_s - lambda^2))^2 r,
    alpha_{t|s} = alpha_bar_t / alpha_bar_s: lambda^2 + c^2 beta_bar_t / alpha_bar_t r with c = x0_coefficient,
    where r (per dimension, a float or a tensor) is the expected squared error of the noise prediction,
    so that beta_bar_t / alpha_bar_t r is the one of x0_hat. Three estimates of r:
      Analytic-DPM (Bao et al. 2022a, Thm 1, eq. 7): r = 1 - Gamma_t, one number per step (perfect mean);
      SN-DPM (Bao et al. 2022b):  r(x_t) = E[eps^2 | x_t] - eps_hat(x_t)^2, per pixel (the squared noise
        E[eps^2 | x_t] from a second head; exact when eps_hat is the posterior mean);
      NPR-DPM (Bao et al. 2022b): r(x_t) = E[(eps - eps_hat(x_t))^2 | x_t], per pixel (the noise prediction
        residual from a second head): the optimal diagonal covariance for the network's own, imperfect, mean."""
    gap = math.sqrt((1.0 - ab_t) * ab_s / ab_t) - math.sqrt(max(1.0 - ab_s - lam2, 0.0))
    return lam2 + gap**2 * residual


def analytic_variance(ab_t: float, ab_s: float, lam2: float, gamma: float) -> float:
    """Analytic-DPM Theorem 1 (Bao et al. 2022, eq. 7), Gamma_t = E_q ||eps(x_t, t)||^2 / d (estimated
    by Monte Carlo): the Bayes-optimal x_0's posterior variance is beta_bar_t / alpha_bar_t (1 - Gamma_t)."""
    return optimal_variance(ab_t, ab_s, lam2, 1.0 - gamma)


def analytic_variance_bounds(ab_t: float, ab_s: float, lam2: float, data_half_range: float = 1.0
                             ) -> tuple[float, float]:
    """Analytic-DPM Theorem 2 for data in [a, b]: lambda^2 <= sigma*^2 <= lambda^2 + c^2 ((b - a) / 2)^2
    (a variable in [a, b] has variance at most ((b - a) / 2)^2; c = x0_coefficient)."""
    return lam2, lam2 + x0_coefficient(ab_t, ab_s, lam2) ** 2 * data_half_range**2


SAMPLER_NAMES = ("ddpm-beta", "ddpm-beta-tilde", "analytic-ddpm", "analytic-ddim", "sn-ddpm", "sn-ddim", "npr-ddpm",
                 "npr-ddim", "ddim-eta<e>", "ode")
MARKOV_VARIANCES = ("ddpm-beta", "ddpm-beta-tilde", "analytic-ddpm", "sn-ddpm", "npr-ddpm")  # the bound's kinds


def moment_head(kind: str) -> str | None:
    """'sn' / 'npr' for the samplers that need the network's per-pixel moment head, else None."""
    head = kind.split("-")[0]
    return head if head in ("sn", "npr") else None


def parse_sampler(name: str) -> tuple[str, float | None]:
    """'ddim-eta0.5' -> ('ddim', 0.5); the others -> (name, None). Unknown names raise."""
    if name.startswith("ddim-eta"):
        try:
            return "ddim", float(name.removeprefix("ddim-eta"))
        except ValueError:
            pass
    elif name in SAMPLER_NAMES:
        return name, None
    raise GenbenchError(f"unknown diffusion sampler {name!r}; expected one of {', '.join(SAMPLER_NAMES)}")


# ==================================================================================================
# Dormand-Prince 5(4) adaptive solver and the instantaneous change of variables
# ==================================================================================================
_DOPRI_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DOPRI_A = ((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
            (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
            (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
            (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_DOPRI_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DOPRI_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def solve_ode(f: Callable[[float, torch.Tensor], torch.Tensor], y0: torch.Tensor, t0: float, t1: float, *,
              rtol: float = 1e-5, atol: float = 1e-5, max_steps: int = 10_000) -> tuple[torch.Tensor, int]:
    """y(t1) of dy/dt = f(t, y), y(t0) = y0, by Dormand & Prince (1980) RK5(4) with local error control
    (mixed tolerance atol + rtol |y|, RMS norm over the whole state, first-same-as-last); t1 < t0 is
    fine. Returns (y(t1), number of evaluations of f)."""
    direction = 1.0 if t1 >= t0 else -1.0
    t, y = t0, y0
    k1 = f(t, y)
    nfe = 1
    scale = atol + rtol * y.abs()
    d0, d1 = float((y / scale).pow(2).mean().sqrt()), float((k1 / scale).pow(2).mean().sqrt())
    h = 0.01 * d0 / d1 if d0 > 1e-5 and d1 > 1e-5 else 1e-6  # Hairer, Norsett & Wanner II.4 (first guess)
    h = min(h, abs(t1 - t0))
    for _ in range(max_steps):
        if direction * (t1 - t) <= 1e-12 * max(1.0, abs(t1)):
            return y, nfe
        h = min(h, abs(t1 - t))
        ks = [k1]
        for c, row in zip(_DOPRI_C[1:], _DOPRI_A[1:]):
            y_stage = y + direction * h * sum(a * k for a, k in zip(row, ks) if a != 0.0)
            ks.append(f(t + direction * h * c, y_stage))
        nfe += 6
        y_new = y_stage  # the 7th stage is evaluated at the 5th-order solution (FSAL)
        err = direction * h * sum((b5 - b4) * k for b5, b4, k in zip(_DOPRI_B5, _DOPRI_B4, ks) if b5 != b4)
        scale = atol + rtol * torch.maximum(y.abs(), y_new.abs())
        err_norm = float((err / scale).pow(2).mean().sqrt())
        if not math.isfinite(err_norm):
            raise GenbenchError("the ODE solver met a non-finite value; the network output diverged")
        if err_norm <= 1.0:
            t, y, k1 = t + direction * h, y_new, ks[-1]
        h *= min(10.0, max(0.2, 0.9 * (err_norm + 1e-16) ** -0.2))
    raise GenbenchError(f"the ODE solver did not reach t = {t1} in {max_steps} steps (stiff?); loosen ode_rtol")


def divergence(fx: torch.Tensor, x: torch.Tensor, probe: torch.Tensor | None) -> torch.Tensor:
    """Per-example tr(d f / d x): Hutchinson's v^T (df/dx) v with the given probe (E[v v^T] = I), or
    the exact trace (probe None; one backward pass per dimension — small D only)."""
    if probe is not None:
        (vjp,) = torch.autograd.grad(fx, x, probe, create_graph=False)
        return (vjp * probe).flatten(1).sum(1)
    flat_f = fx.flatten(1)
    total = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    for i in range(flat_f.shape[1]):
        (g,) = torch.autograd.grad(flat_f[:, i].sum(), x, retain_graph=True)
        total = total + g.flatten(1)[:, i]
    return total


def ode_log_likelihood(f: Callable[[float, torch.Tensor], torch.Tensor], x: torch.Tensor, t0: float, t1: float,
                       prior_log_prob: Callable[[torch.Tensor], torch.Tensor], probe: torch.Tensor | None, *,
                       rtol: float, atol: float) -> tuple[torch.Tensor, int]:
    """log p_t0(x) of the flow dx/dt = f(t, x) with x(t1) ~ prior, by the instantaneous change of
    variables (Chen et al. 2018, Thm 1): d log p(x(t)) / dt = -tr(df/dx), so
    log p_t0(x(t0)) = log p_t1(x(t1)) + integral_t0^t1 tr(df/dx) dt. For a linear field f = A x this is
    log det exp(A (t1 - t0)) = tr(A) (t1 - t0). Returns (per-example log-density, evaluations)."""
    shape, d = x.shape, x[0].numel()

    def augmented(t: float, state: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xt = state[:, :d].reshape(shape).detach().requires_grad_(True)
            fx = f(t, xt)
            div = divergence(fx, xt, probe)
        return torch.cat([fx.detach().flatten(1), div.detach()[:, None]], dim=1)

    state0 = torch.cat([x.flatten(1), torch.zeros(len(x), 1, dtype=x.dtype, device=x.device)], dim=1)
    state1, nfe = solve_ode(augmented, state0, t0, t1, rtol=rtol, atol=atol)
    return prior_log_prob(state1[:, :d].reshape(shape)) + state1[:, d], nfe


@torch.no_grad()
def gamma_moments(eps: Callable, x0: torch.Tensor, schedule: Schedule, steps, generator: torch.Generator
                  ) -> torch.Tensor:
    """Analytic-DPM eq. 8: Gamma_n = (1/M) sum_m ||eps(x_n^m, n)||^2 / d with x_n^m ~ q(x_n | x_0^m), for
    each n in `steps`; returns a float64 tensor over n = 0..T (NaN where not estimated)."""
    gamma = torch.full((schedule.timesteps + 1,), math.nan, dtype=torch.float64)
    for n in steps:
        ab = schedule[n]
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        e = eps(math.sqrt(ab) * x0 + math.sqrt(1 - ab) * noise, n)
        gamma[n] = e.double().pow(2).flatten(1).mean(1).mean()
    return gamma


def standard_normal_log_prob(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * (x.flatten(1) ** 2 + math.log(2 * math.pi)).sum(1)


# ==================================================================================================
# The noise-prediction U-Net (Ho et al. 2020, App. B, scaled down for 28x28) with Skip-Tuning
# ==================================================================================================
def timestep_embedding(n: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the (possibly fractional) step index (Vaswani et al. 2017; DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=n.device, dtype=torch.float32) / half)
    angles = n.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, temb: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(temb, c_out)
        self.norm2, self.drop, self.conv2 = group_norm(c_out), nn.Dropout(dropout), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x))) + self.temb(F.silu(temb))[:, :, None, None]
        return self.shortcut(x) + self.conv2(self.drop(F.silu(self.norm2(h))))


class SelfAttention(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm, self.qkv, self.out = group_norm(channels), nn.Conv2d(channels, 3 * channels, 1), nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=2)
        attn = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(attn.transpose(1, 2).reshape(b, c, h, w))


class UNet(nn.Module):
    """eps(x_n, n): levels of `res_blocks` residual blocks (channels x mults), stride-2 conv
    downsampling, self-attention at the lowest resolution, and an upsampling path that concatenates
    every activation the down path stored (the skip connections).

    Skip-Tuning (Ma et al. 2024): at sampling time the skip connections are multiplied by rho_i,
    linear in depth from 1 at the outermost skip to `rho_bottom` at the innermost (`skip_scaling`)."""

    def __init__(self, channels_in: int, channels: int, mults: list[int], res_blocks: int, attention: bool,
                 dropout: float):
        super().__init__()
        temb = 4 * channels
        self.channels = channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(channels_in, channels, 3, padding=1)
        self.down, skip_channels, c = nn.ModuleList(), [channels], channels
        for level, mult in enumerate(mults):
            for _ in range(res_blocks):
                self.down.append(ResBlock(c, channels * mult, temb, dropout))
                c = channels * mult
                skip_channels.append(c)
            if level < len(mults) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skip_channels.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c, temb, dropout), ResBlock(c, c, temb, dropout)])
        self.mid_attention = SelfAttention(c) if attention else nn.Identity()
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for _ in range(res_blocks + 1):
                self.up.append(ResBlock(c + skip_channels.pop(), channels * mult, temb, dropout))
                c = channels * mult
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)))
        self.out = nn.Sequential(group_norm(c), nn.SiLU(), nn.Conv2d(c, channels_in, 3, padding=1))
        self.num_skips = 1 + len(self.down)
        self.skip_scales: list[float] | None = None

    @contextlib.contextmanager
    def skip_scaling(self, rho_bottom: float):
        """Inside the `with` block, the i-th skip (0 = outermost) is scaled by 1 + (rho_bottom - 1) i / (N - 1)."""
        n = self.num_skips
        self.skip_scales = [1.0 + (rho_bottom - 1.0) * i / max(n - 1, 1) for i in range(n)]
        try:
            yield
        finally:
            self.skip_scales = None

    def forward(self, x: torch.Tensor, n: torch.Tensor, features: bool = False):
        """eps; with `features`, (eps, the last activation before the output layer)."""
        temb = self.time_mlp(timestep_embedding(n, self.channels))
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        h = self.mid_attention(self.mid[0](h, temb))
        h = self.mid[1](h, temb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                depth = len(skips) - 1  # skips are consumed innermost first
                skip = skips.pop()
                if self.skip_scales is not None:
                    skip = skip * self.skip_scales[depth]
                h = layer(torch.cat([h, skip], dim=1), temb)
            else:
                h = layer(h)
        return (self.out(h), h) if features else self.out(h)

    def output_head(self) -> nn.Sequential:
        """A head shaped like `out` (norm, SiLU, 3x3 conv) on the same activation, built without touching the
        global RNG (so adding one leaves training bit-identical) and zero-initialised but for a bias of 1."""
        c, c_out = self.out[2].in_channels, self.out[2].out_channels
        conv = torch.nn.utils.skip_init(nn.Conv2d, c, c_out, 3, padding=1)
        nn.init.zeros_(conv.weight)
        nn.init.ones_(conv.bias)
        return nn.Sequential(group_norm(c), nn.SiLU(), conv)


# ==================================================================================================
# DDPM — Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models"
# ==================================================================================================
# Training (Algorithm 1, L_simple, eq. 14): E_{n, x_0, eps} || eps - eps_theta(sqrt(ab_n) x_0 + sqrt(1 - ab_n) eps, n) ||^2.
# Bound (eq. 5, over a sub-sequence as in Bao et al. 2022, eq. 12), per example in nats:
#   L = KL(q(x_T | x_0) || N(0, I)) + sum_{k >= 2} KL(q_lambda(x_s | x_t, x_0) || p(x_s | x_t)) - log p(x_0 | x_tau1)
# with p(x_0 | x_tau1) the discretized Gaussian decoder (eq. 13) on the 256 bins of the 8-bit image,
# so the bound is of the discrete data and needs no dequantization. The model's mean uses the same
# (clipped) x0_hat as the sampler, as in Analytic-DPM's code (github baofff/Analytic-DPM,
# cifar_imagenet_codes/core/inference/ll/elbo.py: nelbo_ms_eps_ddpm clamps the predicted x_0 into [-1, 1]
# always, nelbo_naive_ddpm when clip_denoise is set, which its profiles/ddpm/cifar10/naive_evaluate.py `nll`
# does); the variances are the sampler's without the sampling-time cap on sigma of the step into tau_1
# (`sigma_clip_pixels`), which that code gives its samplers only. Each KL term is Gaussian:
#   KL = d/2 (log(sigma^2 / lambda^2) + lambda^2 / sigma^2 - 1) + c^2 |x_0 - x0_hat|^2 / (2 sigma^2).
# DDIM — Song, Meng & Ermon 2021: same network, the eta-family of samplers (eq. 12, 16).
# Analytic-DPM — Bao, Li, Zhu & Zhang 2022: sigma*^2 from Gamma_n (Thm 1), clipped to Thm 2's bounds;
#   Gamma_n = (1/M) sum_m ||eps(x_n^m, n)||^2 / d, x_n^m ~ q(x_n | x_0^m) over M training images,
#   estimated once after training (`calibrate`) and stored with the weights.
# SN-DPM / NPR-DPM — Bao, Li, Sun, Zhu & Zhang 2022b, "Estimating the Optimal Covariance with Imperfect Mean
#   in Diffusion Probabilistic Models": per-pixel sigma*^2(x_t) (see `optimal_variance`) from two extra heads on
#   the trained network's last activation, fitted after training with the network frozen (`calibrate`):
#   SN by E||head_sn(x_n) - eps^2||^2, NPR by E||head_npr(x_n) - (eps - eps_hat(x_n))^2||^2.
# Probability-flow ODE — Song et al. 2021, eq. 13 for the VP SDE:
#   dx/dt = -1/2 beta(t) (x - eps(x, t T) / sqrt(1 - alpha_bar(t))).
@dataclass
class DDPMConfig:
    schedule: Literal["linear", "cosine"] = "linear"
    timesteps: int = 1000
    beta_start: float = 1.0e-4
    beta_end: float = 0.02
    channels: int = 32
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 2])
    res_blocks: int = 1
    attention: bool = True
    dropout: float = 0.1
    sampler: str = "analytic-ddpm"          # the leaderboard row's sampler (see SAMPLER_NAMES)
    sampling_steps: int = 100
    clip_denoised: bool = True              # clip x0_hat into [-1, 1] (sampler and bound: one reverse model)
    skip_rho: float = 1.0                   # Skip-Tuning's innermost skip scale for the default sampler
    # Analytic-DPM's cap on sigma of the step into tau_1, in pixel levels (its code: 2 for analytic-ddpm
    # on the linear schedule, 1 on the cosine one and for analytic-ddim and the ddpm-beta baseline);
    # sampling only: the bound (`variational_bounds`) has no cap, as in that code
    sigma_clip_pixels: dict[str, float] = field(default_factory=lambda: {
        "ddpm-beta": 1.0, "analytic-ddpm": 2.0, "analytic-ddim": 1.0, "sn-ddpm": 2.0, "sn-ddim": 1.0,
        "npr-ddpm": 2.0, "npr-ddim": 1.0})
    gamma_samples: int = 100                # M, training images per step for Analytic-DPM's Gamma_n
    moment_head_steps: int = 0              # SN-/NPR-DPM: steps fitting their heads after training (0: no heads)
    moment_head_batch: int = 64
    moment_head_lr: float = 1.0e-3
    likelihood_steps: int = 1000            # K of the leaderboard's bound (analytic-ddpm variances)
    ode_rtol: float = 1.0e-5
    ode_atol: float = 1.0e-5
    ode_eps: float = 1.0e-5                 # the ODE starts (likelihood) / stops (sampling) at t = eps
    # the studies of the evaluation stage (rows of their own in the report)
    steps_table: list[int] = field(default_factory=lambda: [10, 20, 50, 100, 1000])
    steps_table_samplers: list[str] = field(default_factory=lambda: ["ddim-eta0", "ddim-eta1", "analytic-ddim"])
    steps_table_n: int | None = None        # samples per cell (None: as many as the extractors use)
    skip_tuning: list[float] = field(default_factory=list)  # rho_bottom values for extra rows (DDIM, 10 steps)
    ode_sampling: bool = True               # also score the probability-flow ODE sampler
    nll_table: list[int] = field(default_factory=lambda: [10, 25, 50, 100, 200, 400, 1000])
    nll_table_variances: list[str] = field(default_factory=lambda: ["ddpm-beta", "ddpm-beta-tilde", "analytic-ddpm"])
    ode_likelihood: bool = True             # also report the ODE's likelihood (kind 'estimate')


@register_model("ddpm", config=DDPMConfig, data_kinds=("image",),
                paper="Ho et al. 2020 (DDPM); Song et al. 2021 (DDIM, probability-flow ODE); Bao et al. 2022 "
                      "(Analytic-DPM); Ma et al. 2024 (Skip-Tuning)")
class DDPM(GenerativeModel):

    def __init__(self, config: DDPMConfig, data_shape: tuple[int, ...]):
        super().__init__(config, data_shape)
        for name in [config.sampler, *config.steps_table_samplers]:
            parse_sampler(name)
        for name in config.nll_table_variances:
            if name not in MARKOV_VARIANCES:
                raise GenbenchError(f"nll_table_variances: {name!r} is not one of {', '.join(MARKOV_VARIANCES)} "
                                    "(the bound needs the Markov forward process)")
        for name in [config.sampler, *config.steps_table_samplers, *config.nll_table_variances]:
            if moment_head(name) and config.moment_head_steps <= 0:
                raise GenbenchError(f"{name} needs its moment head: set model_config.moment_head_steps > 0")
        clipped = ("ddpm-beta", "analytic-ddpm", "analytic-ddim", "sn-ddpm", "sn-ddim", "npr-ddpm", "npr-ddim")
        for name in config.sigma_clip_pixels:
            if name not in clipped:
                raise GenbenchError(f"sigma_clip_pixels: {name!r} is not one of {', '.join(clipped)}")
        for k in [config.sampling_steps, config.likelihood_steps, *config.steps_table, *config.nll_table]:
            timestep_subsequence(config.timesteps, k)
        c, h, w = data_shape
        levels = len(config.channel_mults) - 1
        if h % 2**levels or w % 2**levels:
            raise GenbenchError(f"the U-Net halves {levels} times; image sides {h}x{w} must divide by {2**levels}")
        self.schedule = Schedule(config.schedule, config.timesteps, config.beta_start, config.beta_end)
        self.net = UNet(c, config.channels, config.channel_mults, config.res_blocks, config.attention, config.dropout)
        # Gamma_n of Analytic-DPM, n = 0..T; NaN until `calibrate` runs (saved with the weights)
        self.register_buffer("gamma", torch.full((config.timesteps + 1,), math.nan, dtype=torch.float64))
        # SN-DPM's E[eps^2 | x_n] and NPR-DPM's E[(eps - eps_hat)^2 | x_n] heads, fitted by `calibrate`
        self.moment_heads = nn.ModuleDict({"sn": self.net.output_head(), "npr": self.net.output_head()}) \
            if config.moment_head_steps > 0 else None
        self.register_buffer("moment_heads_fitted", torch.tensor(False))
        self.likelihood_kinds = ("vlb", "estimate") if config.ode_likelihood else ("vlb",)

    @property
    def device(self) -> torch.device:
        return self.gamma.device

    # forward process and network ------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, n: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ab = self.schedule.alpha_bar.to(x0.device)[n].float().view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def eps(self, x: torch.Tensor, n: int | float | torch.Tensor, features: bool = False):
        """eps(x_n, n); with `features`, (eps, the U-Net's last activation) for the moment heads."""
        n = torch.as_tensor(n, device=x.device, dtype=torch.float32).expand(len(x))
        return self.net(x, n, features=features) if features else self.net(x, n)

    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        """Training fits the noise-prediction network only (the moment heads are fitted after it)."""
        return {"model": torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)}

    def eps_and_residuals(self, x: torch.Tensor, n: int, heads: tuple[str, ...]
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(eps_hat, {head: r}) with r >= 0 the per-pixel squared error of eps_hat that `optimal_variance`
        takes: E[eps^2 | x] - eps_hat^2 from the SN head, E[(eps - eps_hat)^2 | x] from the NPR head."""
        if not heads:
            return self.eps(x, n), {}
        if self.moment_heads is None or not bool(self.moment_heads_fitted):
            raise GenbenchError(f"{'/'.join(heads)}-DPM needs its moment head, fitted after training: this model.pt "
                                "has none; set model_config.moment_head_steps > 0 and re-run `genbench train`")
        eps, features = self.eps(x, n, features=True)
        residuals = {}
        for head in heads:
            moment = self.moment_heads[head](features)
            residuals[head] = (moment - eps.pow(2) if head == "sn" else moment).clamp(min=0.0)
        return eps, residuals

    def simple_loss(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per-example L_simple (eq. 14) with n ~ U{1..T}."""
        x0 = to_signed_unit(x)
        n = torch.randint(1, self.config.timesteps + 1, (len(x0),), generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        return (self.eps(self.q_sample(x0, n, noise), n) - noise).pow(2).flatten(1).mean(1)

    def training_step(self, x, step, opt: Optimization, generator):
        loss = self.simple_loss(x, generator).mean()
        opt.step("model", loss)
        return {"loss": loss.detach()}

    @torch.no_grad()
    def validation_loss(self, x, generator):
        return self.simple_loss(x, generator)

    # Analytic-DPM's Gamma_n ---------------------------------------------------------------------------
    @torch.no_grad()
    def calibrate(self, x_train: torch.Tensor, generator: torch.Generator, progress: bool = False) -> None:
        """Gamma_n for n = 1..T from `gamma_samples` training images (the same M images at every n)."""
        was_training = self.training
        self.eval()
        idx = torch.randperm(len(x_train), generator=generator, device=generator.device)[: self.config.gamma_samples]
        x0 = to_signed_unit(x_train[idx.cpu()].to(self.device))
        steps = range(1, self.config.timesteps + 1)
        gamma = gamma_moments(self.eps, x0, self.schedule, tqdm(steps, desc="Analytic-DPM Gamma_n",
                                                                  disable=not progress), generator)
        self.gamma.copy_(gamma.to(self.gamma.device))
        if self.moment_heads is not None:
            self.fit_moment_heads(x_train, generator, progress)
        self.train(was_training)

    @torch.enable_grad()
    def fit_moment_heads(self, x_train: torch.Tensor, generator: torch.Generator, progress: bool = False) -> None:
        """SN-DPM / NPR-DPM: regress the heads on the frozen network's last activation, with n ~ U{1..T}:
        head_sn -> eps^2 and head_npr -> (eps - eps_hat(x_n))^2 (their minimisers are the conditional means)."""
        cfg = self.config
        opt = torch.optim.Adam(self.moment_heads.parameters(), lr=cfg.moment_head_lr)
        bar = tqdm(range(cfg.moment_head_steps), desc="SN/NPR-DPM heads", disable=not progress)
        for _ in bar:
            idx = torch.randint(len(x_train), (cfg.moment_head_batch,), generator=generator, device=generator.device)
            x0 = to_signed_unit(x_train[idx.cpu()].to(self.device))
            n = torch.randint(1, cfg.timesteps + 1, (len(x0),), generator=generator, device=x0.device)
            noise = torch.randn(x0.shape, generator=generator, device=x0.device)
            with torch.no_grad():
                eps, features = self.eps(self.q_sample(x0, n, noise), n, features=True)
            loss = ((self.moment_heads["sn"](features) - noise.pow(2)).pow(2).mean()
                    + (self.moment_heads["npr"](features) - (noise - eps).pow(2)).pow(2).mean())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.4g}")
        self.moment_heads_fitted.fill_(True)

    def _gamma(self, n: int) -> float:
        value = float(self.gamma[n])
        if not math.isfinite(value):
            raise GenbenchError("Analytic-DPM needs Gamma_n, estimated after training: this model.pt has none; "
                                "re-run `genbench train` for the job")
        return value

    def variances(self, kind: str, eta: float | None, t: int, s: int, taus: list[int],
                  residual: torch.Tensor | None = None, *, sampling: bool):
        """(lambda^2, sigma^2) of the reverse step t -> s of the sub-sequence `taus` (the module's
        table); sigma^2 is a float, or a per-pixel tensor for SN-/NPR-DPM (from `residual`, see
        `eps_and_residuals`). The optimal variances are clipped to Analytic-DPM's Theorem 2 bounds.
        When `sampling`, sigma^2 of the step into tau_1 is also capped at (y 2/255 sqrt(pi/2))^2 —
        E|sigma z| <= y pixel levels, Analytic-DPM's `clip_sigma_idx = 1` — with y from
        `sigma_clip_pixels[kind]`. The cap is a sampling device only: in Bao et al.'s code it is an
        argument of the samplers (cifar_imagenet_codes/core/inference/sampler/reverse_ddpm.py and
        reverse_ddim.py: clip_sigma_idx, clip_pixel) and their bound (core/inference/ll/elbo.py:
        nelbo_naive_ddpm, nelbo_ms_eps_ddpm) has none, so `variational_bounds` passes sampling=False."""
        ab_t, ab_s = self.schedule[t], self.schedule[s]
        if kind == "ddim":
            lam2 = ddim_lambda2(ab_t, ab_s, eta)
            return lam2, lam2
        lam2 = 0.0 if kind.endswith("-ddim") else beta_tilde(ab_t, ab_s)
        if kind == "ddpm-beta-tilde":
            return lam2, lam2
        pixels = self.config.sigma_clip_pixels.get(kind)
        cap = (pixels * 2.0 / 255.0) ** 2 * math.pi / 2 \
            if sampling and pixels is not None and len(taus) > 1 and s == taus[0] else math.inf
        if kind == "ddpm-beta":
            sigma2 = 1.0 - ab_t / ab_s
        elif moment_head(kind):
            lower, upper = analytic_variance_bounds(ab_t, ab_s, lam2)
            sigma2 = optimal_variance(ab_t, ab_s, lam2, residual).clamp(lower, min(upper, cap))
            return lam2, sigma2.clamp(min=1e-20)
        else:
            lower, upper = analytic_variance_bounds(ab_t, ab_s, lam2)
            sigma2 = min(max(analytic_variance(ab_t, ab_s, lam2, self._gamma(t)), lower), upper)
        return lam2, max(min(sigma2, cap), 1e-20)

    def denoise(self, x: torch.Tensor, t: int, clip: bool, heads: tuple[str, ...] = ()
                ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(x0_hat, eps, residuals of the named moment heads) at step t, from one network pass; clipping
        x0_hat re-derives eps from it so both stay consistent (the residuals are of the raw eps_hat)."""
        ab_t = self.schedule[t]
        eps, residuals = self.eps_and_residuals(x, t, heads)
        x0 = (x - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (x - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)
        return x0, eps, residuals

    # sampling ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_chain(self, n: int, generator: torch.Generator, sampler: str, steps: int,
                     skip_rho: float = 1.0) -> tuple[torch.Tensor, dict]:
        """uint8 samples by the generalised reverse process over `steps` sub-sequence steps (or the ODE)."""
        kind, eta = parse_sampler(sampler)
        x = torch.randn((n, *self.data_shape), generator=generator, device=self.device)
        scaling = self.net.skip_scaling(skip_rho) if skip_rho != 1.0 else contextlib.nullcontext()
        with scaling:
            if kind == "ode":
                x, nfe = self.ode_sample(x)
                return from_signed_unit(x), {"network_evaluations": float(nfe)}
            taus = timestep_subsequence(self.config.timesteps, steps)
            for k in reversed(range(len(taus))):
                t, s = taus[k], (taus[k - 1] if k > 0 else 0)
                head = moment_head(kind)
                x0, eps, residuals = self.denoise(x, t, self.config.clip_denoised, (head,) if head else ())
                lam2, sigma2 = self.variances(kind, eta, t, s, taus, residuals.get(head), sampling=True)
                ab_s = self.schedule[s]
                x = math.sqrt(ab_s) * x0 + math.sqrt(max(1 - ab_s - lam2, 0.0)) * eps
                if s > 0 and (torch.is_tensor(sigma2) or sigma2 > 0):
                    x = x + sigma2**0.5 * torch.randn(x.shape, generator=generator, device=x.device)
        return from_signed_unit(x), {"network_evaluations": float(len(taus))}

    def ode_drift(self, t: float, x: torch.Tensor) -> torch.Tensor:
        tt = torch.tensor(t, dtype=torch.float64)
        beta = float(self.schedule.beta_at(tt))
        sigma = math.sqrt(-math.expm1(float(self.schedule.log_alpha_bar_at(tt))))
        return -0.5 * beta * (x - self.eps(x, t * self.config.timesteps) / sigma)

    def ode_sample(self, x_end: torch.Tensor) -> tuple[torch.Tensor, int]:
        return solve_ode(self.ode_drift, x_end, self.schedule.t_max, self.config.ode_eps,
                         rtol=self.config.ode_rtol, atol=self.config.ode_atol)

    @property
    def sampling_network_evaluations(self) -> int | None:
        """Network evaluations per sample of the default sampler (None: adaptive, the ODE)."""
        return None if self.config.sampler == "ode" else len(timestep_subsequence(self.config.timesteps,
                                                                                   self.config.sampling_steps))

    @property
    def sampler_description(self) -> str:
        skip = f" skip {self.config.skip_rho:g}" if self.config.skip_rho != 1.0 else ""
        return f"{self.config.sampler} S={self.config.sampling_steps}{skip}"

    @torch.no_grad()
    def sample(self, n, generator):
        return self.sample_chain(n, generator, self.config.sampler, self.config.sampling_steps, self.config.skip_rho)[0]

    def sample_variants(self, hubness) -> dict[str, SamplerVariant]:
        """The steps table (sampler x S), the Skip-Tuning rows and the ODE sampler: each a row of its own."""
        cfg, out = self.config, {}
        for sampler in cfg.steps_table_samplers:
            for steps in cfg.steps_table:
                out[f"{sampler}_S{steps}"] = SamplerVariant(
                    lambda m, g, s=sampler, k=steps: self.sample_chain(m, g, s, k), cfg.steps_table_n,
                    {"table": "steps", "sampler": sampler, "steps": steps})
        for rho in cfg.skip_tuning:
            out[f"ddim-eta0_S10_skip{rho:g}"] = SamplerVariant(
                lambda m, g, r=rho: self.sample_chain(m, g, "ddim-eta0", 10, skip_rho=r), cfg.steps_table_n,
                {"table": "skip", "sampler": "ddim-eta0", "steps": 10, "rho_bottom": rho})
        if cfg.ode_sampling:
            out["ode"] = SamplerVariant(lambda m, g: self.sample_chain(m, g, "ode", 0), cfg.steps_table_n,
                                        {"sampler": "ode"})
        return out

    # likelihood ------------------------------------------------------------------------------------
    @torch.no_grad()
    def variational_bounds(self, x: torch.Tensor, steps: int, kinds: list[str], generator: torch.Generator
                           ) -> dict[str, torch.Tensor]:
        """Per-example lower bounds on log P(x) (nats, discrete data) over a K-step sub-sequence, one
        per reverse-variance kind; the kinds share the noise and the network's predictions."""
        x0 = to_signed_unit(x).double()
        d = x0[0].numel()
        taus = timestep_subsequence(self.config.timesteps, steps)
        ab_T = self.schedule[taus[-1]]
        prior = 0.5 * (ab_T * x0.pow(2).flatten(1).sum(1) + d * ((1 - ab_T) - 1 - math.log(1 - ab_T)))
        nll = {kind: prior.clone() for kind in kinds}

        heads = tuple(sorted({moment_head(kind) for kind in kinds} - {None}))

        def predict(t: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            """x0_hat at x_t ~ q(x_t | x_0), and each needed head's residual there (one shared draw)."""
            noise = torch.randn(x0.shape, generator=generator, device=x0.device)
            xt = self.q_sample(x0.float(), torch.full((len(x0),), t, device=x0.device), noise)
            x0_hat, _, residuals = self.denoise(xt, t, self.config.clip_denoised, heads)
            return x0_hat.double(), {h: r.double() for h, r in residuals.items()}

        for k in range(1, len(taus)):
            t, s = taus[k], taus[k - 1]
            x0_hat, residuals = predict(t)
            sq_err = (x0 - x0_hat).pow(2)
            err = sq_err.flatten(1).sum(1)
            for kind in kinds:
                lam2, sigma2 = self.variances(kind, None, t, s, taus, residuals.get(moment_head(kind)),
                                              sampling=False)  # no sampling-time cap in the bound
                c2 = x0_coefficient(self.schedule[t], self.schedule[s], lam2) ** 2
                if torch.is_tensor(sigma2):  # per-pixel Gaussian KL, summed over pixels
                    nll[kind] += 0.5 * ((sigma2 / lam2).log() + lam2 / sigma2 - 1 + c2 * sq_err / sigma2).flatten(1).sum(1)
                else:
                    nll[kind] += 0.5 * (d * (math.log(sigma2 / lam2) + lam2 / sigma2 - 1) + c2 * err / sigma2)
        t1 = taus[0]
        x0_hat, _ = predict(t1)
        log_scale = torch.full_like(x0_hat, 0.5 * math.log(self.decoder_variance(taus)))
        decoder = discretized_gaussian_log_prob(x, x0_hat, log_scale).flatten(1).sum(1)
        for kind in kinds:
            nll[kind] -= decoder
        return {kind: -v for kind, v in nll.items()}

    def decoder_variance(self, taus: list[int]) -> float:
        """sigma^2 of the decoder p(x_0 | x_tau1), the same for every variance kind: beta~ of the step
        tau2 -> tau1 (beta~ itself is 0 at the last step; DDPM's and Analytic-DPM's code use beta~_2)."""
        if len(taus) == 1:
            return 1.0 - self.schedule[taus[0]]
        return beta_tilde(self.schedule[taus[1]], self.schedule[taus[0]])

    @torch.no_grad()
    def ode_log_likelihood(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """log P(x) (nats, discrete) >= E_u log p_ODE(z) + D log(2 / 256), z = 2 (x + u) / 256 - 1 the
        dequantized image on [-1, 1) (the harness's convention, scale 2); Hutchinson with Rademacher probes."""
        z = dequantize(x, generator) * 2.0 - 1.0
        probe = torch.randint(0, 2, z.shape, generator=generator, device=z.device).float() * 2 - 1
        log_p, _ = ode_log_likelihood(self.ode_drift, z, self.config.ode_eps, self.schedule.t_max,
                                      standard_normal_log_prob, probe, rtol=self.config.ode_rtol,
                                      atol=self.config.ode_atol)
        d = x[0].numel()
        return log_p.double() + d * math.log(2.0) - d * LOG_NUM_BINS

    @torch.no_grad()
    def log_likelihood(self, x, kind, generator):
        if kind == "vlb":
            return self.variational_bounds(x, self.config.likelihood_steps, ["analytic-ddpm"], generator)["analytic-ddpm"]
        if kind == "estimate" and self.config.ode_likelihood:
            return self.ode_log_likelihood(x, generator)
        return super().log_likelihood(x, kind, generator)

    @torch.no_grad()
    def log_likelihood_table(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The NLL table of Analytic-DPM (Table 1): the bound for each variance kind and K."""
        out = {}
        for steps in self.config.nll_table:
            bounds = self.variational_bounds(x, steps, self.config.nll_table_variances, generator)
            out.update({f"{kind}_K{steps}": v for kind, v in bounds.items()})
        return out
