"""Generative adversarial networks: six objectives on one pair of shared architectures.

Every GAN here has a generator G: z ~ N(0, I) -> x and a discriminator (critic, energy) D; they differ
only in their losses, so they share:
  - images (sides divisible by 4): a DCGAN-style generator (linear -> 2 transposed convs, batch norm,
    tanh into [-1, 1]) and a conv discriminator without normalisation layers (a gradient penalty needs
    per-example gradients, which batch norm would mix);
  - 2-D points: MLPs (3 hidden layers) for both.
One trainer step is ONE discriminator update on one real batch; the generator is updated after every
`n_critic`-th discriminator update (WGAN-GP's schedule), so `train.steps` counts discriminator steps.
A GAN has no likelihood and no validation loss: the checkpoint kept is the last one.

The sampling stage may also draw latents with the hubness prior (Liang et al. 2022, below) and, for
the energy GAN, refine them by MCMC in latent space; each is scored as a row of its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from genbench import GenbenchError
from genbench.metrics.hubness import k_occurrence
from genbench.models import GenerativeModel, Optimization, register_model
from genbench.models.nn import from_signed_unit, to_signed_unit


# ==================================================================================================
# Shared architectures
# ==================================================================================================
class ImageGenerator(nn.Module):
    """DCGAN-style (Radford et al. 2016): z -> 2h x H/4 x W/4 -> h x H/2 x W/2 -> C x H x W, tanh."""

    def __init__(self, latent_dim: int, shape: tuple[int, int, int], hidden: int):
        super().__init__()
        c, h, w = shape
        self.start = (2 * hidden, h // 4, w // 4)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, math.prod(self.start)), nn.Unflatten(1, self.start),
            nn.BatchNorm2d(2 * hidden), nn.ReLU(),
            nn.ConvTranspose2d(2 * hidden, hidden, 4, stride=2, padding=1), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.ConvTranspose2d(hidden, c, 4, stride=2, padding=1), nn.Tanh(),
        )

    def forward(self, z):
        return self.net(z)


class ImageDiscriminator(nn.Module):
    """C x H x W -> h x H/2 x W/2 -> 2h x H/4 x W/4 -> `out_dim` scores (LeakyReLU 0.2, no norm)."""

    def __init__(self, shape: tuple[int, int, int], hidden: int, out_dim: int = 1):
        super().__init__()
        c, h, w = shape
        self.features = nn.Sequential(
            nn.Conv2d(c, hidden, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, 2 * hidden, 4, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Flatten(),
        )
        self.feature_dim = 2 * hidden * (h // 4) * (w // 4)
        self.head = nn.Linear(self.feature_dim, out_dim)

    def forward(self, x):
        return self.head(self.features(x))


def mlp(d_in: int, hidden: int, d_out: int, layers: int = 3, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    dims = [d_in] + [hidden] * layers
    body = [m for a, b in zip(dims[:-1], dims[1:]) for m in (nn.Linear(a, b), act())]
    return nn.Sequential(*body, nn.Linear(hidden, d_out))


class LeakyReLU02(nn.LeakyReLU):
    def __init__(self):
        super().__init__(0.2)


# ==================================================================================================
# Penalties (pure functions of a critic and points: tested against their closed forms)
# ==================================================================================================
def input_gradient(critic: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """d critic(x_i) / d x_i for every example, kept in the graph (the penalty is trained through)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad.flatten(1)


def interpolates(real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x_hat = eps x + (1 - eps) x~, eps ~ U[0, 1] per example (Gulrajani et al. 2017, Alg. 1)."""
    eps = torch.rand((len(real),) + (1,) * (real.dim() - 1), generator=generator, device=real.device)
    return eps * real + (1 - eps) * fake


def gradient_penalty(critic, points: torch.Tensor, weight: float) -> torch.Tensor:
    """WGAN-GP, Gulrajani et al. 2017 eq. 3: lambda E[(||grad D(x_hat)||_2 - 1)^2]."""
    norms = input_gradient(critic, points).norm(dim=1)
    return weight * ((norms - 1) ** 2).mean()


def wasserstein_div_penalty(critic, points: torch.Tensor, k: float, p: float) -> torch.Tensor:
    """WGAN-div, Wu et al. 2018 eq. 13: k E[||grad f(x)||^p] (from the squared norm: smooth at 0)."""
    sq = input_gradient(critic, points).pow(2).sum(dim=1)
    return k * sq.pow(p / 2).mean()


def zero_centered_penalty(critic, points: torch.Tensor, weight: float) -> torch.Tensor:
    """lambda E[||grad E(x)||^2] on real data (Kumar et al. 2019, section 3: the energy's regulariser)."""
    return weight * input_gradient(critic, points).pow(2).sum(dim=1).mean()


def pearson_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Pearson correlation between two batches of vectors (O-GAN's rho, Su 2019 eq. 8)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(dim=1)


# ==================================================================================================
# Hubness prior for latent sampling (Liang, Wu, Lai & Qin 2022, "Exploring and Exploiting Hubness
# Priors for High-Quality GAN Latent Sampling")
# ==================================================================================================
@torch.no_grad()
def hubness_latents(n: int, dim: int, generator: torch.Generator, *, k: int, threshold: int, pool: int,
                    device: torch.device | str = "cpu") -> tuple[torch.Tensor, float]:
    """`n` latents z ~ N(0, I) kept only if they are hubs: within each pool of `pool` draws, the
    k-occurrence N_k(z) (how many other pool members count z among their k nearest neighbours) must
    be at least `threshold` (section 3.2). Returns the latents and the acceptance rate."""
    kept, drawn = [], 0
    while sum(len(x) for x in kept) < n:
        z = torch.randn((pool, dim), generator=generator, device=device)
        drawn += pool
        occurrences = k_occurrence(z, k)
        kept.append(z[occurrences >= threshold])
        if drawn >= 200 * max(n, pool) and sum(len(x) for x in kept) == 0:
            raise GenbenchError(f"the hubness prior accepted no latent in {drawn} draws (k = {k}, threshold = "
                             f"{threshold}): lower eval.hubness.threshold")
    accepted = torch.cat(kept)
    return accepted[:n], len(accepted) / drawn


# ==================================================================================================
# The shared GAN
# ==================================================================================================
@dataclass
class GANConfig:
    latent_dim: int = 64
    hidden: int = 64                  # image: channels of the discriminator's first conv; points: MLP width
    n_critic: int = 1                 # discriminator updates per generator update
    adam_betas: list[float] = field(default_factory=lambda: [0.5, 0.999])


class GAN(GenerativeModel):
    """Generator/discriminator pair; subclasses give the two losses of their paper."""

    likelihood_kinds = ()
    checkpoint_selection = "last"     # no validation loss ranks GAN checkpoints
    discriminator_outputs = 1

    def __init__(self, config: GANConfig, data_shape: tuple[int, ...]):
        super().__init__(config, data_shape)
        self.points = len(data_shape) == 1
        if self.points:
            self.generator = mlp(config.latent_dim, config.hidden, data_shape[0])
            self.discriminator = mlp(data_shape[0], config.hidden, self.discriminator_outputs, act=LeakyReLU02)
        else:
            if data_shape[1] % 4 or data_shape[2] % 4:
                raise ValueError(f"the DCGAN networks need image sides divisible by 4, got {data_shape}")
            self.generator = ImageGenerator(config.latent_dim, data_shape, config.hidden)
            self.discriminator = ImageDiscriminator(data_shape, config.hidden, self.discriminator_outputs)
        self.register_buffer("last_generator_loss", torch.tensor(float("nan")))

    # spaces ------------------------------------------------------------------------------------------
    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() if self.points else to_signed_unit(x)

    def to_data_space(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.points else from_signed_unit(y)

    def latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn((n, self.config.latent_dim), generator=generator, device=self.device)

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """The scalar score per example that the objective's losses use."""
        return self.discriminator(x).squeeze(1)

    # the two losses of each paper ----------------------------------------------------------------
    def discriminator_loss(self, real, z, fake, generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def generator_loss(self, real, z, fake, generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # protocol --------------------------------------------------------------------------------------
    def configure_optimizers(self, lr, weight_decay):
        betas = tuple(self.config.adam_betas)
        return {"discriminator": torch.optim.Adam(self.discriminator_parameters(), lr=lr, betas=betas,
                                                  weight_decay=weight_decay),
                "generator": torch.optim.Adam(self.generator_parameters(), lr=lr, betas=betas,
                                              weight_decay=weight_decay)}

    def discriminator_parameters(self):
        return list(self.discriminator.parameters())

    def generator_parameters(self):
        return list(self.generator.parameters())

    def discriminator_update(self, real, opt: Optimization, generator) -> dict[str, torch.Tensor]:
        z = self.latents(len(real), generator)
        with torch.no_grad():
            fake = self.generator(z)
        terms = self.discriminator_loss(real, z, fake, generator)
        opt.step("discriminator", terms["d_loss"])
        return {k: v.detach() for k, v in terms.items()}

    def generator_update(self, real, opt: Optimization, generator) -> dict[str, torch.Tensor]:
        for p in self.discriminator_parameters():  # the generator's loss must not train D
            p.requires_grad_(False)
        try:
            z = self.latents(len(real), generator)
            terms = self.generator_loss(real, z, self.generator(z), generator)
            opt.step("generator", terms["g_loss"])
        finally:
            for p in self.discriminator_parameters():
                p.requires_grad_(True)
        return {k: v.detach() for k, v in terms.items()}

    def training_step(self, x, step, opt: Optimization, generator):
        real = self.to_model_space(x)
        out = self.discriminator_update(real, opt, generator)
        if (step + 1) % self.config.n_critic == 0:
            g_terms = self.generator_update(real, opt, generator)
            self.last_generator_loss.fill_(float(g_terms.pop("g_loss")))
            out.update(g_terms)
        if torch.isfinite(self.last_generator_loss):  # absent until the first generator update
            out["g_loss"] = self.last_generator_loss.clone()
        out["loss"] = out["d_loss"]
        return out

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_data_space(self.generator(z))

    @torch.no_grad()
    def sample(self, n, generator):
        return self.generate(self.latents(n, generator))

    def sample_variants(self, hubness) -> dict[str, Callable[[int, torch.Generator], tuple[torch.Tensor, dict]]]:
        """Samplers scored as rows of their own: the hubness prior (when eval.hubness is set) on image
        GANs (hubs emerge in high-dimensional latent spaces; the 2-D toys' generators have small ones)."""
        if hubness is None or self.points:
            return {}

        def hub(n, generator):
            z, rate = hubness_latents(n, self.config.latent_dim, generator, k=hubness.k,
                                      threshold=hubness.threshold, pool=hubness.pool, device=self.device)
            return self.generate(z), {"acceptance_rate": rate, "k": hubness.k, "threshold": hubness.threshold,
                                      "pool": hubness.pool}
        return {"hubness": hub}


# ==================================================================================================
# SGAN — Goodfellow et al. 2014, "Generative Adversarial Nets", eq. 1 with the non-saturating
# generator loss of section 3:
#   L_D = -E[log sigmoid D(x)] - E[log(1 - sigmoid D(G(z)))],   L_G = -E[log sigmoid D(G(z))]
# ==================================================================================================
@register_model("sgan", config=GANConfig, data_kinds=("image", "points"),
                paper="Goodfellow et al. 2014, Generative Adversarial Nets (non-saturating loss)")
class SGAN(GAN):
    def discriminator_loss(self, real, z, fake, generator):
        d_real, d_fake = self.critic(real), self.critic(fake)
        return {"d_loss": F.softplus(-d_real).mean() + F.softplus(d_fake).mean()}

    def generator_loss(self, real, z, fake, generator):
        return {"g_loss": F.softplus(-self.critic(fake)).mean()}


# ==================================================================================================
# WGAN-GP — Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", eq. 3 / Algorithm 1:
#   L_D = E[D(x~)] - E[D(x)] + lambda E[(||grad D(x_hat)||_2 - 1)^2],  x_hat on real-fake segments,
#   L_G = -E[D(G(z))];  lambda = 10, n_critic = 5, Adam(beta1 = 0, beta2 = 0.9).
# ==================================================================================================
@dataclass
class WGANGPConfig(GANConfig):
    penalty_weight: float = 10.0
    n_critic: int = 5
    adam_betas: list[float] = field(default_factory=lambda: [0.0, 0.9])


@register_model("wgan_gp", config=WGANGPConfig, data_kinds=("image", "points"),
                paper="Gulrajani et al. 2017, Improved Training of Wasserstein GANs")
class WGANGP(GAN):
    def penalty(self, real, fake, generator):
        return gradient_penalty(self.critic, interpolates(real, fake, generator), self.config.penalty_weight)

    def discriminator_loss(self, real, z, fake, generator):
        w_dist = self.critic(real).mean() - self.critic(fake).mean()
        penalty = self.penalty(real, fake, generator)
        return {"d_loss": -w_dist + penalty, "wasserstein_estimate": w_dist.detach(), "penalty": penalty.detach()}

    def generator_loss(self, real, z, fake, generator):
        return {"g_loss": -self.critic(fake).mean()}


# ==================================================================================================
# WGAN-div — Wu et al. 2018, "Wasserstein Divergence for GANs", eq. 13:
#   L_D = E[D(x~)] - E[D(x)] + k E_{x ~ P_u}[||grad D(x)||^p],   L_G = -E[D(G(z))]
# with k = 2, p = 6 (section 4.2). P_u is the paper's recommended sampling: the real and the generated
# points of the batch, each penalised (the penalty averages over both); `interpolates` is the other
# option the paper compares. No Lipschitz constraint: the divergence is valid for any k > 0, p > 1.
# ==================================================================================================
@dataclass
class WGANDivConfig(GANConfig):
    k: float = 2.0
    p: float = 6.0
    penalty_points: Literal["real_and_fake", "interpolates"] = "real_and_fake"
    n_critic: int = 5
    adam_betas: list[float] = field(default_factory=lambda: [0.0, 0.9])


@register_model("wgan_div", config=WGANDivConfig, data_kinds=("image", "points"),
                paper="Wu et al. 2018, Wasserstein Divergence for GANs")
class WGANDiv(WGANGP):
    def penalty(self, real, fake, generator):
        points = (torch.cat([real, fake]) if self.config.penalty_points == "real_and_fake"
                  else interpolates(real, fake, generator))
        return wasserstein_div_penalty(self.critic, points, self.config.k, self.config.p)


# ==================================================================================================
# GAN-QP — Su 2018, "GAN-QP: A Novel GAN Framework without Gradient Vanishing and Lipschitz
# Constraint", eq. 13 with T(x_r, x_f) = D(x_r) (section 3.3):
#   L_D = E[ -(D(x_r) - D(x_f)) + (D(x_r) - D(x_f))^2 / (2 lambda d(x_r, x_f)) ],
#   L_G = E[ D(x_r) - D(x_f) ],
# over pairs of a real and a generated example; d is the L1 or L2 distance per dimension (the mean
# absolute / root-mean-square difference), lambda = 10. The quadratic potential replaces any
# Lipschitz constraint.
# ==================================================================================================
@dataclass
class GANQPConfig(GANConfig):
    qp_lambda: float = 10.0
    distance: Literal["l1", "l2"] = "l1"


def qp_distance(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    diff = (real - fake).flatten(1)
    return diff.abs().mean(1) if kind == "l1" else diff.pow(2).mean(1).sqrt()


@register_model("gan_qp", config=GANQPConfig, data_kinds=("image", "points"),
                paper="Su 2018, GAN-QP (arXiv 1811.07296)")
class GANQP(GAN):
    def qp_discriminator_loss(self, d_real, d_fake, real, fake):
        gap = d_real - d_fake
        dist = qp_distance(real, fake, self.config.distance).clamp_min(1e-8)
        return (-gap + gap.pow(2) / (2 * self.config.qp_lambda * dist)).mean()

    def discriminator_loss(self, real, z, fake, generator):
        return {"d_loss": self.qp_discriminator_loss(self.critic(real), self.critic(fake), real, fake)}

    def generator_loss(self, real, z, fake, generator):
        return {"g_loss": (self.critic(real) - self.critic(fake)).mean()}


# ==================================================================================================
# O-GAN — Su 2019, "O-GAN: Extremely Concise Approach for Auto-Encoding GANs" (arXiv 1903.01931).
# The discriminator outputs a vector E(x) in R^{latent_dim}; orthogonal decomposition: its mean over
# dimensions is the GAN score, D(x) = avg(E(x)) (eq. 6), and the part orthogonal to it — invariant to
# that mean and to scale — is an encoder. Both networks add -lambda rho(z, E(G(z))) (eq. 8, Pearson
# correlation across dimensions, lambda = 0.5) to the loss of a base GAN (here GAN-QP, as the author's
# code). Reconstruction: x -> E(x) standardised over dimensions -> G.
# ==================================================================================================
@dataclass
class OGANConfig(GANQPConfig):
    correlation_weight: float = 0.5


@register_model("ogan", config=OGANConfig, data_kinds=("image", "points"),
                paper="Su 2019, O-GAN (arXiv 1903.01931)")
class OGAN(GANQP):
    @property
    def discriminator_outputs(self):
        return self.config.latent_dim

    def critic(self, x):
        return self.discriminator(x).mean(dim=1)

    def discriminator_loss(self, real, z, fake, generator):
        e_real, e_fake = self.discriminator(real), self.discriminator(fake)
        corr = pearson_correlation(z, e_fake).mean()
        qp = self.qp_discriminator_loss(e_real.mean(1), e_fake.mean(1), real, fake)
        return {"d_loss": qp - self.config.correlation_weight * corr, "correlation": corr.detach()}

    def generator_loss(self, real, z, fake, generator):
        e_fake = self.discriminator(fake)
        corr = pearson_correlation(z, e_fake).mean()
        return {"g_loss": (self.critic(real) - e_fake.mean(1)).mean() - self.config.correlation_weight * corr}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent code of data: E(x) standardised over its dimensions (zero mean, unit variance)."""
        e = self.discriminator(self.to_model_space(x))
        return (e - e.mean(1, keepdim=True)) / e.std(1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.generate(self.encode(x))


# ==================================================================================================
# Maximum-entropy energy GAN (MEG) — Kumar, Ozair, Goyal, Courville & Bengio 2019, "Maximum Entropy
# Generators for Energy-Based Models". The discriminator is an energy E (low on data):
#   L_E = E_data[E(x)] - E_z[E(G(z))] + lambda E_data[||grad_x E(x)||^2]          (eq. 3, lambda = 10)
#   L_G = E_z[E(G(z))] - H[p_G],   H[p_G] ~ I(X; Z) for x = G(z) (eq. 6),
# the mutual information estimated with the Jensen-Shannon bound of Deep InfoMax: a statistics network
# T(x, z) classifies joint pairs (G(z), z) against shuffled pairs (G(z), z'), and G and T both minimise
# the classification loss (maximising the MI bound). Optional: Metropolis-adjusted Langevin in latent
# space on U(z) = E(G(z)) + ||z||^2 / 2 (section 4) refines samples before decoding.
# ==================================================================================================
@dataclass
class MEGConfig(GANConfig):
    penalty_weight: float = 10.0
    mi_weight: float = 1.0
    mcmc_steps: int = 0               # >0: the sample stage also scores latent-MALA samples
    mcmc_step_size: float = 0.01
    adam_betas: list[float] = field(default_factory=lambda: [0.5, 0.9])


class StatisticsNetwork(nn.Module):
    """T(x, z): features of x concatenated with z, then an MLP to one logit."""

    def __init__(self, data_shape, latent_dim: int, hidden: int, points: bool):
        super().__init__()
        if points:
            self.features, feat = nn.Identity(), data_shape[0]
        else:
            body = ImageDiscriminator(data_shape, hidden // 2)
            self.features, feat = body.features, body.feature_dim
        self.head = mlp(feat + latent_dim, hidden, 1, layers=2, act=LeakyReLU02)

    def forward(self, x, z):
        return self.head(torch.cat([self.features(x), z], dim=1)).squeeze(1)


@register_model("meg", config=MEGConfig, data_kinds=("image", "points"),
                paper="Kumar et al. 2019, Maximum Entropy Generators for Energy-Based Models")
class MEG(GAN):
    def __init__(self, config: MEGConfig, data_shape):
        super().__init__(config, data_shape)
        self.statistics = StatisticsNetwork(data_shape, config.latent_dim, config.hidden, self.points)

    def energy(self, x):
        return self.discriminator(x).squeeze(1)

    def generator_parameters(self):  # T is trained with G, on the same loss
        return list(self.generator.parameters()) + list(self.statistics.parameters())

    def discriminator_loss(self, real, z, fake, generator):
        gap = self.energy(real).mean() - self.energy(fake).mean()
        penalty = zero_centered_penalty(self.energy, real, self.config.penalty_weight)
        return {"d_loss": gap + penalty, "energy_gap": gap.detach(), "penalty": penalty.detach()}

    def mutual_information_loss(self, fake, z, generator):
        """Binary cross-entropy of T on joint vs product-of-marginals pairs (the JSD MI bound)."""
        z_other = self.latents(len(z), generator)
        joint, marginal = self.statistics(fake, z), self.statistics(fake, z_other)
        return F.softplus(-joint).mean() + F.softplus(marginal).mean()

    def generator_loss(self, real, z, fake, generator):
        energy = self.energy(fake).mean()
        mi_loss = self.mutual_information_loss(fake, z, generator)
        return {"g_loss": energy + self.config.mi_weight * mi_loss, "mi_loss": mi_loss.detach()}

    def latent_mala(self, z: torch.Tensor, steps: int, step_size: float, generator) -> tuple[torch.Tensor, float]:
        """Metropolis-adjusted Langevin on U(z) = E(G(z)) + ||z||^2 / 2; returns z and the acceptance rate."""
        def potential_and_grad(v):
            with torch.enable_grad():
                v = v.detach().requires_grad_(True)
                u = self.energy(self.generator(v)) + 0.5 * v.pow(2).sum(1)
                (g,) = torch.autograd.grad(u.sum(), v)
            return u.detach(), g

        def log_q(to, frm, grad_frm):  # log density of proposing `to` from `frm`, up to a constant
            return -(to - frm + step_size * grad_frm).pow(2).sum(1) / (4 * step_size)

        u, g = potential_and_grad(z)
        accepted = 0.0
        for _ in range(steps):
            noise = torch.randn(z.shape, generator=generator, device=z.device)
            prop = z - step_size * g + math.sqrt(2 * step_size) * noise
            u_prop, g_prop = potential_and_grad(prop)
            log_ratio = -u_prop + u + log_q(z, prop, g_prop) - log_q(prop, z, g)
            accept = torch.rand(len(z), generator=generator, device=z.device).log() < log_ratio
            z = torch.where(accept[:, None], prop, z)
            u = torch.where(accept, u_prop, u)
            g = torch.where(accept[:, None], g_prop, g)
            accepted += float(accept.float().mean()) / steps
        return z, accepted

    def sample_variants(self, hubness):
        variants = super().sample_variants(hubness)
        if self.config.mcmc_steps > 0:
            def mcmc(n, generator):
                z, rate = self.latent_mala(self.latents(n, generator), self.config.mcmc_steps,
                                           self.config.mcmc_step_size, generator)
                return self.generate(z), {"acceptance_rate": rate, "steps": self.config.mcmc_steps,
                                          "step_size": self.config.mcmc_step_size}
            variants["latent-mcmc"] = mcmc
        return variants
