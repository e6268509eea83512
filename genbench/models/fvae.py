"""f-VAE: a VAE whose approximate posterior is a conditional flow.

==================================================================================================
f-VAE — Su & Wu 2018, "f-VAEs: Improve VAEs with Conditional Flows", arXiv:1809.05861
(author's Keras reference: github.com/bojone/flow, f-VAEs.py).
==================================================================================================
The paper keeps the generative model q(x) = integral q(z) q(x|z) dz (its eq. 1, prior N(0, I)) and
replaces the Gaussian posterior of a VAE by a *conditional flow*: u ~ q(u) = N(0, I) and z = F_x(u),
with F_x invertible for every x, i.e. q(z|x) = integral delta(z - F_x(u)) q(u) du, so

  log q(z|x) = log N(u; 0, I) - log|det dF_x(u)/du|                                  (change of vars)
  ELBO(x)    = E_u[ log p(x | z) + log N(z; 0, I) - log q(z|x) ],   z = F_x(u)

Its concrete conditional flow (the f-VAE model of the paper; `f-VAEs.py` of the reference) is an
encoder shift, one learnt scale and an UNconditional flow F2 built from couplings (its eqs. 2-3):

  F_x(u) = F2(sigma_1 * u + E(x)),            log|det dF_x/du| = d log sigma_1 + log|det dF2/dz0|
  decoder  G(z) = D(F2^{-1}(z)),               so p(x|z) = p_D(x | z0) with z0 = F2^{-1}(z)

F2 must not depend on x: generation runs z ~ N(0, I) -> z0 = F2^{-1}(z) -> D(z0). (Written in z0,
the same bound is a Gaussian-posterior VAE whose prior is the flow density N(F2(z0)) |det dF2/dz0|;
with E and D identities, z0 = x + sigma_1 u and G = F2^{-1}, it is a Glow fitted to noise-perturbed
data, the paper's link between VAEs and flows.)

Here, so that the comparison with `vae` is like for like:
* E and D are the `vae` family's ConvEncoder / ConvDecoder, D's output is the same per-pixel logistic
  discretized to 256 bins (the paper uses a Gaussian with a learnt sigma_2 on [-1, 1] data), so the
  bounds are of the discrete 8-bit image, in nats, with no dequantization term.
* sigma_1 is ONE learnt scalar (`posterior_scale="shared"`, the paper / reference: an actnorm
  without shift on u), or per example and dimension from the encoder as in the VAE
  (`posterior_scale="amortized"`; with flow_layers=0 this IS the `vae` model).
* F2 acts on the latent vector: `flow_layers` steps of [actnorm (per-dimension scale and shift,
  zero-initialised, as the reference's Actnorm), affine coupling (the paper's eq. 2, RealNVP form
  exp(s(a)) * b + t(a); s, t from an MLP of the untouched half; tanh-bounded log-scale;
  zero-initialised output so F2 starts as the identity; the reference's couplings are additive,
  s = 0), reversal of the dimensions (so consecutive couplings alternate halves)]. The reference
  uses a multi-scale Glow on an image-shaped latent; a vector latent keeps it cheap on CPU.
* log q uses the sampled u (one-sample estimate, as the reference's loss), so the ELBO is exactly
  the IWAE bound L_1 (Burda et al. 2016, eq. 8) for the same noise; IWAE uses the same weights
  p(x, z_i) / q(z_i|x).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genbench.models import GenerativeModel, register_model
from genbench.models.nn import discretized_logistic_log_prob, gaussian_log_prob, to_signed_unit
from genbench.models.vae import VAE, ConvDecoder, ConvEncoder, importance_weighted_bound


@dataclass
class FVAEConfig:
    latent_dim: int = 32
    hidden_channels: int = 32  # channels of the first conv; doubled at the second
    hidden_units: int = 256  # width of the fully connected layer between conv stack and latent
    flow_layers: int = 4  # steps of F2 (actnorm + affine coupling + reversal); 0: F2 = identity
    flow_hidden: int = 128  # width of the two hidden layers of each coupling MLP
    posterior_scale: Literal["shared", "amortized"] = "shared"  # sigma_1: one scalar, or sigma(x)
    sample_mode: Literal["mean", "sample"] = "mean"  # images from the decoder's location or a draw
    iwae_chunk: int = 25  # importance samples evaluated per pass (memory bound)


# ==================================================================================================
# F2: an unconditional flow on R^d. forward(z0) -> (z, log|det dz/dz0|), inverse(z) -> (z0, -that)
# ==================================================================================================
class LatentActNorm(nn.Module):
    """y = z * exp(s) + b per dimension; zero-initialised (identity), log|det| = sum(s)."""

    def __init__(self, dim: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, z):
        return z * torch.exp(self.log_scale) + self.shift, self.log_scale.sum().expand(z.shape[0])

    def inverse(self, y):
        return (y - self.shift) * torch.exp(-self.log_scale), -self.log_scale.sum().expand(y.shape[0])


class LatentCoupling(nn.Module):
    """RealNVP affine coupling: z = (a, b) -> (a, b * exp(s(a)) + t(a)), then the vector reversed."""

    LOG_SCALE_BOUND = 2.0  # |log s| < 2 per coupling: keeps exp(s) and its inverse tame

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.split = dim // 2
        out = dim - self.split
        self.net = nn.Sequential(
            nn.Linear(self.split, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, 2 * out),
        )
        nn.init.zeros_(self.net[-1].weight)  # the coupling starts as the identity
        nn.init.zeros_(self.net[-1].bias)

    def _shift_log_scale(self, a):
        shift, raw = self.net(a).chunk(2, dim=1)
        return shift, self.LOG_SCALE_BOUND * torch.tanh(raw / self.LOG_SCALE_BOUND)

    def forward(self, z):
        a, b = z[:, : self.split], z[:, self.split:]
        shift, log_scale = self._shift_log_scale(a)
        y = torch.cat([a, b * torch.exp(log_scale) + shift], dim=1)
        return y.flip(1), log_scale.sum(1)

    def inverse(self, y):
        y = y.flip(1)
        a, b = y[:, : self.split], y[:, self.split:]
        shift, log_scale = self._shift_log_scale(a)
        return torch.cat([a, (b - shift) * torch.exp(-log_scale)], dim=1), -log_scale.sum(1)


class LatentFlow(nn.Module):
    """F2 = composition of `layers` x (actnorm, coupling); the identity when layers = 0."""

    def __init__(self, dim: int, layers: int, hidden: int):
        super().__init__()
        steps: list[nn.Module] = []
        for _ in range(layers):
            steps += [LatentActNorm(dim), LatentCoupling(dim, hidden)]
        self.steps = nn.ModuleList(steps)

    @staticmethod
    def _full_precision(z):
        return z.float() if z.dtype in (torch.float16, torch.bfloat16) else z

    def forward(self, z0):
        z = self._full_precision(z0)
        logdet = z.new_zeros(z.shape[0])
        with torch.autocast(z.device.type, enabled=False):  # log-determinants in full precision
            for step in self.steps:
                z, ld = step(z)
                logdet = logdet + ld
        return z, logdet

    def inverse(self, z):
        z0 = self._full_precision(z)
        logdet = z0.new_zeros(z0.shape[0])
        with torch.autocast(z0.device.type, enabled=False):
            for step in reversed(self.steps):
                z0, ld = step.inverse(z0)
                logdet = logdet + ld
        return z0, logdet


# ==================================================================================================
# the model
# ==================================================================================================
@register_model("fvae", config=FVAEConfig, data_kinds=("image",),
                paper="Su & Wu 2018, f-VAEs: Improve VAEs with Conditional Flows (arXiv:1809.05861)")
class FVAE(VAE):
    """Reuses the VAE's decoder head, `sample`, `training_step`, `validation_loss` and
    `log_likelihood`; `decode` is the paper's G(z) = D(F2^{-1}(z)), `elbo` / `iwae` use F_x."""

    likelihood_kinds = ("elbo", "iwae")
    kl_weight = 1.0  # trains its ELBO (the VAE's beta setting is not one of its settings)

    def __init__(self, config: FVAEConfig, data_shape: tuple[int, ...]):
        GenerativeModel.__init__(self, config, data_shape)  # the VAE's own layers are built here
        c, h, w = data_shape
        if h % 4 or w % 4:
            raise ValueError(f"the conv f-VAE needs image sides divisible by 4, got {h}x{w}")
        if config.flow_layers < 0:
            raise ValueError(f"flow_layers must be >= 0, got {config.flow_layers}")
        if config.flow_layers > 0 and config.latent_dim < 2:
            raise ValueError("the coupling flow needs latent_dim >= 2")
        d = config.latent_dim
        amortized = config.posterior_scale == "amortized"
        self.encoder = ConvEncoder(c, h, w, config.hidden_channels, config.hidden_units, (2 if amortized else 1) * d)
        self.decoder = ConvDecoder(d, 2 * c, h, w, config.hidden_channels, config.hidden_units)
        if not amortized:
            self.log_sigma1 = nn.Parameter(torch.zeros(()))  # reference: Actnorm(use_shift=False) on u
        self.flow = LatentFlow(d, config.flow_layers, config.flow_hidden)

    # the conditional flow F_x(u) = F2(sigma * u + E(x)) ------------------------------------------
    def posterior_base(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """E(x) and log sigma (per example and dimension) of z0 = E(x) + sigma * u."""
        if self.config.posterior_scale == "amortized":
            mean, log_var = self.encode(x)  # the VAE's head: clamped log-variance
            return mean, 0.5 * log_var
        mean = self.encoder(to_signed_unit(x))
        return mean, self.log_sigma1.expand_as(mean)

    def conditional_flow(self, u, mean, log_sigma):
        """z = F_x(u), z0 = F2^{-1}(z), and log|det dF_x/du| per example."""
        z0 = mean + torch.exp(log_sigma) * u
        z, logdet_f2 = self.flow(z0)
        return z, z0, log_sigma.sum(1) + logdet_f2

    def log_q(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log q(z|x) at arbitrary z (through F_x^{-1}; one x may broadcast against many z).
        Training uses the sampled u instead."""
        mean, log_sigma = self.posterior_base(x)
        z0, logdet_inv = self.flow.inverse(z)
        u = (z0 - mean) * torch.exp(-log_sigma)
        return gaussian_log_prob(u, torch.zeros_like(u), torch.zeros_like(u)).sum(1) - log_sigma.sum(1) + logdet_inv

    # p(x|z) -------------------------------------------------------------------------------------
    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """G(z) = D(F2^{-1}(z)): the decoder of a prior latent z (used by the inherited `sample`)."""
        return super().decode(self.flow.inverse(z)[0])

    def log_px_given_z0(self, x: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
        loc, log_scale = super().decode(z0)  # D(z0) directly: F2^{-1}(F2(z0)) = z0
        return discretized_logistic_log_prob(x, loc, log_scale).flatten(1).sum(1)

    # bounds -------------------------------------------------------------------------------------
    def _log_weight(self, x, mean, log_sigma, generator):
        """log p(x, z) - log q(z|x) for one z = F_x(u), u ~ N(0, I) drawn from `generator`."""
        u = torch.randn(mean.shape, generator=generator, device=mean.device)
        z, z0, logdet = self.conditional_flow(u, mean, log_sigma)
        zeros = torch.zeros_like(z)
        log_q = gaussian_log_prob(u, zeros, zeros).sum(1) - logdet
        log_p = self.log_px_given_z0(x, z0) + gaussian_log_prob(z, zeros, zeros).sum(1)
        return log_p - log_q

    def elbo(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per-example one-sample ELBO in nats, E_u[log p(x|z) + log p(z) - log q(z|x)], z = F_x(u)."""
        mean, log_sigma = self.posterior_base(x)
        return self._log_weight(x, mean, log_sigma, generator)

    def iwae(self, x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """Per-example IWAE bound L_k in nats (Burda et al. eq. 8) with the conditional-flow q."""
        mean, log_sigma = self.posterior_base(x)
        return importance_weighted_bound(
            lambda m: self._log_weight(x.repeat_interleave(m, 0), mean.repeat_interleave(m, 0),
                                       log_sigma.repeat_interleave(m, 0), generator),
            k, self.config.iwae_chunk)
