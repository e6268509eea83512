"""Variational autoencoders.

==================================================================================================
Gaussian VAE — Kingma & Welling 2014, "Auto-Encoding Variational Bayes"; IWAE bound from Burda,
Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders".
==================================================================================================
Encoder q(z|x) = N(mu(x), diag sigma^2(x)), prior p(z) = N(0, I), decoder p(x|z) a per-pixel
logistic discretized to the 256 8-bit bins (Salimans et al. 2017, eq. 2, one component), so the
likelihood is of the discrete image and bits/dim need no dequantization.

  ELBO  (K&W eq. 10):   L(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))   (KL in closed form, App. B)
  IWAE  (Burda eq. 8):  L_k(x) = E[ log (1/k) sum_i p(x, z_i) / q(z_i | x) ],  z_i ~ q(z|x)
with L(x) = L_1(x) <= L_k(x) <= log p(x).

==================================================================================================
The VAE as an information bottleneck — Higgins et al. 2017 (beta-VAE); Alemi et al. 2018, "Fixing a
Broken ELBO"; Su, "变分自编码器 + 信息瓶颈 + 正态分布"
==================================================================================================
Training maximises  E_q[log p(x|z)] - beta KL(q(z|x) || p(z))  (beta = 1: the ELBO, the default).
Over the test split:  rate R = E_x KL(q(z|x) || p(z))  and  distortion D = -E_x E_q[log p(x|z)], in nats,
so -ELBO = R + D; a beta sweep traces the rate-distortion curve, and the ELBO is the beta = 1 point of
D + beta R. Active units (Burda et al. 2016, section 5.2): unit u is active when
A_u = Cov_x(E_q[z_u | x]) > 0.01 (here E_q[z_u | x] is the encoder's mean).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from genbench import GenbenchError
from genbench.models import GenerativeModel, Optimization, register_model
from genbench.models.nn import (
    discretized_logistic_log_prob,
    from_signed_unit,
    gaussian_kl_to_standard,
    gaussian_log_prob,
    to_signed_unit,
)


def importance_weighted_bound(log_weights: Callable[[int], torch.Tensor], k: int, chunk: int) -> torch.Tensor:
    """log (1/k) sum_i w_i per example (Burda et al. eq. 8), drawing the k importance samples `chunk`
    at a time: `log_weights(m)` returns log w for m samples of every example, example-major (N*m,)."""
    parts, remaining = [], k
    while remaining > 0:
        m = min(chunk, remaining)
        remaining -= m
        parts.append(log_weights(m).view(-1, m))
    return torch.logsumexp(torch.cat(parts, dim=1), dim=1) - math.log(k)


@dataclass
class VAEConfig:
    latent_dim: int = 32
    hidden_channels: int = 32  # channels of the first conv; doubled at the second
    hidden_units: int = 256  # width of the fully connected layer between conv stack and latent
    sample_mode: Literal["mean", "sample"] = "mean"  # images from the decoder's location or a draw
    iwae_chunk: int = 25  # importance samples evaluated per pass (memory bound)
    beta: float = 1.0  # weight of the KL term in the training loss (1: the ELBO; Higgins et al. 2017)
    rate_distortion: bool = False  # evaluate: rate, distortion and active units on the test split


ACTIVE_UNIT_THRESHOLD = 1e-2  # Burda et al. 2016, section 5.2


def active_units(means: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> tuple[int, list[float]]:
    """Burda et al.'s criterion: A_u = Cov_x(E_q[z_u | x]) over the examples (rows of `means`) and the number
    of units with A_u > threshold."""
    activity = means.double().var(dim=0, unbiased=True)
    return int((activity > threshold).sum()), [float(a) for a in activity]


class ConvEncoder(nn.Module):
    def __init__(self, channels: int, height: int, width: int, hidden: int, units: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, 2 * hidden, 4, stride=2, padding=1), nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * hidden * (height // 4) * (width // 4), units), nn.SiLU(),
            nn.Linear(units, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    def __init__(self, in_dim: int, channels_out: int, height: int, width: int, hidden: int, units: int):
        super().__init__()
        self.start = (2 * hidden, height // 4, width // 4)
        self.net = nn.Sequential(
            nn.Linear(in_dim, units), nn.SiLU(),
            nn.Linear(units, math.prod(self.start)), nn.SiLU(),
            nn.Unflatten(1, self.start),
            nn.ConvTranspose2d(2 * hidden, hidden, 4, stride=2, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(hidden, channels_out, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


@register_model("vae", config=VAEConfig, data_kinds=("image",),
                paper="Kingma & Welling 2014, Auto-Encoding Variational Bayes (IWAE: Burda et al. 2016)")
class VAE(GenerativeModel):
    likelihood_kinds = ("elbo", "iwae")

    def __init__(self, config: VAEConfig, data_shape: tuple[int, ...]):
        super().__init__(config, data_shape)
        c, h, w = data_shape
        if h % 4 or w % 4:
            raise ValueError(f"the conv VAE needs image sides divisible by 4, got {h}x{w}")
        if not config.beta > 0:
            raise GenbenchError(f"model_config.beta must be > 0 (1: the ELBO), got {config.beta!r}")
        self.encoder = ConvEncoder(c, h, w, config.hidden_channels, config.hidden_units, 2 * config.latent_dim)
        self.decoder = ConvDecoder(config.latent_dim, 2 * c, h, w, config.hidden_channels, config.hidden_units)

    # q(z|x) and p(x|z) ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(to_signed_unit(x)).chunk(2, dim=1)
        return mean, log_var.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, log_scale = self.decoder(z).chunk(2, dim=1)
        return torch.tanh(loc), log_scale.clamp(min=-7.0)

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        loc, log_scale = self.decode(z)
        return discretized_logistic_log_prob(x, loc, log_scale).flatten(1).sum(1)

    def _reparameterize(self, mean, log_var, generator):
        eps = torch.randn(mean.shape, generator=generator, device=mean.device)
        return mean + torch.exp(0.5 * log_var) * eps

    # bounds -------------------------------------------------------------------------------------
    def elbo(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per-example ELBO in nats (K&W eq. 10, one-sample reconstruction term)."""
        mean, log_var = self.encode(x)
        z = self._reparameterize(mean, log_var, generator)
        return self.log_px_given_z(x, z) - gaussian_kl_to_standard(mean, log_var).sum(1)

    def iwae(self, x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """Per-example IWAE bound L_k in nats (Burda et al. eq. 8)."""
        mean, log_var = self.encode(x)

        def log_weights(m: int) -> torch.Tensor:
            mean_m, log_var_m = mean.repeat_interleave(m, 0), log_var.repeat_interleave(m, 0)
            z = self._reparameterize(mean_m, log_var_m, generator)
            log_p_xz = self.log_px_given_z(x.repeat_interleave(m, 0), z) + gaussian_log_prob(
                z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
            return log_p_xz - gaussian_log_prob(z, mean_m, log_var_m).sum(1)

        return importance_weighted_bound(log_weights, k, self.config.iwae_chunk)

    # protocol -----------------------------------------------------------------------------------
    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        """Adam with its multi-tensor (foreach) update: on CPU the same kernels, in the same order, as the
        default per-parameter loop, so the same bits (tests/test_bench.py), with less per-step overhead."""
        return {"model": torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay, foreach=True)}

    @property
    def kl_weight(self) -> float:
        """beta of the training loss reconstruction - beta * KL (1: the ELBO; the beta-VAE sweep sets it)."""
        return self.config.beta

    def training_step(self, x, step, opt: Optimization, generator):
        beta = self.kl_weight
        if beta == 1.0:
            elbo = self.elbo(x, generator)
            loss = -elbo.mean()
        else:  # beta-VAE: reconstruction - beta * KL
            reconstruction, kl = self.rate_and_reconstruction(x, generator)
            elbo = reconstruction - kl
            loss = -(reconstruction - beta * kl).mean()
        opt.step("model", loss)
        return {"loss": loss.detach(), "elbo_nats": elbo.mean().detach()}

    def rate_and_reconstruction(self, x: torch.Tensor, generator: torch.Generator
                                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example E_q[log p(x|z)] (one reparameterised draw) and KL(q(z|x) || p(z)) in nats."""
        mean, log_var = self.encode(x)
        z = self._reparameterize(mean, log_var, generator)
        return self.log_px_given_z(x, z), gaussian_kl_to_standard(mean, log_var).sum(1)

    @torch.no_grad()
    def rate_distortion_study(self, x: torch.Tensor, generator: torch.Generator, batch: int) -> dict:
        """Rate, distortion (nats, with standard errors over the examples), -ELBO = R + D and the active
        units on uint8 images `x` (the test split)."""
        reconstruction, rate, means = [], [], []
        for i in range(0, len(x), batch):
            xb = x[i:i + batch].to(self.device)
            rec, kl = self.rate_and_reconstruction(xb, generator)
            reconstruction.append(rec.double().cpu())
            rate.append(kl.double().cpu())
            means.append(self.encode(xb)[0].double().cpu())
        distortion, rate_t = -torch.cat(reconstruction), torch.cat(rate)
        active, activity = active_units(torch.cat(means))
        n = len(rate_t)

        def stat(v: torch.Tensor) -> dict:
            return {"nats": float(v.mean()), "stderr": float(v.std() / math.sqrt(n)) if n > 1 else 0.0}

        return {"n": n, "beta": self.config.beta, "rate": stat(rate_t), "distortion": stat(distortion),
                "neg_elbo": stat(rate_t + distortion), "active_units": active, "latent_dim": self.config.latent_dim,
                "unit_activity": activity, "active_threshold": ACTIVE_UNIT_THRESHOLD}

    @torch.no_grad()
    def validation_loss(self, x, generator):
        return -self.elbo(x, generator)

    @torch.no_grad()
    def sample(self, n, generator):
        z = torch.randn((n, self.config.latent_dim), generator=generator, device=self.device)
        loc, log_scale = self.decode(z)
        if self.config.sample_mode == "sample":
            u = torch.rand(loc.shape, generator=generator, device=loc.device).clamp(1e-5, 1 - 1e-5)
            loc = loc + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
        return from_signed_unit(loc)

    @torch.no_grad()
    def log_likelihood(self, x, kind, generator, iwae_k: int = 100):
        if kind == "elbo":
            return self.elbo(x, generator)
        if kind == "iwae":
            return self.iwae(x, iwae_k, generator)
        return super().log_likelihood(x, kind, generator)
