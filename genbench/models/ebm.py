"""Energy-based models trained by contrastive divergence with Langevin-dynamics negatives.

An energy network E_theta: x -> R defines p_theta(x) = exp(-E_theta(x)) / Z(theta), low energy on data.
Its maximum-likelihood gradient needs samples of p_theta, drawn here by (short-run, persistent)
Langevin dynamics on the input (`langevin`, a pure function). The networks:
  - images: a conv net (4 convs, three of them stride 2, LeakyReLU 0.2) then a linear to one energy;
  - 2-D points: an MLP (3 hidden layers, LeakyReLU 0.2) to one energy;
every conv and linear wrapped in spectral normalisation, so E is (about) 1-Lipschitz.
Contrastive divergence has no validation loss that ranks checkpoints: the checkpoint kept is the last.
The replay buffer of negatives is a registered buffer of the model, so it travels with every checkpoint
and training resumes bit for bit; it is also scored as a sampler of its own ("buffer" row), since the
buffer's chains, run for the whole of training, are the samples the paper shows.

Scales: the paper's images live in [0, 1]; here images live in [-1, 1] (y = 2x - 1, `to_signed_unit`).
For the same energy as a function of the picture, grad_y = grad_x / 2 and a move dy = 2 dx, so the
paper's step lambda on the gradient becomes 4 lambda, its noise std sigma becomes 2 sigma and its clip
c on the gradient becomes c / 2; a clipped step moves a pixel by at most 2 lambda c here, lambda c there.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from genbench.models import GenerativeModel, Optimization, register_model
from genbench.models.nn import from_signed_unit, to_signed_unit


# ==================================================================================================
# Langevin dynamics (a pure function of an energy and a batch of starting points)
# ==================================================================================================
def langevin(energy: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, steps: int, step_size: float,
             noise_std: float, generator: torch.Generator, grad_clip: float | None = None,
             clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """`steps` updates  x <- clamp(x - step_size * clip(grad_x E(x)) + noise_std * N(0, I)).

    `energy` maps a batch to one energy per example; its gradient is taken of the batch's sum, which
    is each example's own gradient (examples do not interact). `grad_clip` clips every coordinate of
    the gradient into [-grad_clip, grad_clip] (the reference code's default, "li", projection) before
    the step; `clamp` = (lo, hi) keeps the chains in a box (the data's range).

    Textbook (unadjusted) Langevin is step_size = eps / 2 and noise_std = sqrt(eps): as eps -> 0 its
    stationary law is exp(-E(x)) / Z, the discretisation bias being O(eps). IGEBM decouples the two
    (its lambda on the gradient and sigma on the noise, lambda >> sigma^2 / 2), which samples a
    sharpened (low-temperature) version of exp(-E): a short-run sampler rather than an exact one.

    Works under torch.no_grad callers; returns detached points, the starting batch left untouched.
    """
    x = x.detach()
    for _ in range(steps):
        with torch.enable_grad():
            v = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(v).sum(), v)
        with torch.no_grad():
            if grad_clip is not None:
                grad = grad.clamp(-grad_clip, grad_clip)
            x = x - step_size * grad
            if noise_std:
                x = x + noise_std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            if clamp is not None:
                x = x.clamp(*clamp)
    return x.detach()


def contrastive_divergence_loss(e_pos: torch.Tensor, e_neg: torch.Tensor, alpha: float
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, contrastive term, regulariser) of IGEBM:
    E[E(x+)] - E[E(x-)]  +  alpha (E[E(x+)^2] + E[E(x-)^2]).
    Its gradient in theta is the maximum-likelihood gradient (negatives standing in for p_theta's
    samples) plus the L2 pull of both energies towards 0, which keeps their scale bounded."""
    contrastive = e_pos.mean() - e_neg.mean()
    regulariser = alpha * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
    return contrastive + regulariser, contrastive, regulariser


# ==================================================================================================
# Energy networks (spectral normalisation on every layer)
# ==================================================================================================
def _conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


class ImageEnergy(nn.Module):
    """C x H x W -> h x H x W -> 2h x H/2 x W/2 -> 4h x H/4 x W/4 -> 4h x ~H/8 x ~W/8 -> one energy."""

    LAYERS = ((1, 3, 1, 1), (2, 4, 2, 1), (4, 4, 2, 1), (4, 3, 2, 1))  # (width / h, kernel, stride, padding)

    def __init__(self, shape: tuple[int, int, int], hidden: int):
        super().__init__()
        c, h, w = shape
        body, channels = [], c
        for mult, kernel, stride, padding in self.LAYERS:
            body += [spectral_norm(nn.Conv2d(channels, mult * hidden, kernel, stride, padding)), nn.LeakyReLU(0.2)]
            channels = mult * hidden
            h, w = _conv_out(h, kernel, stride, padding), _conv_out(w, kernel, stride, padding)
        self.features = nn.Sequential(*body, nn.Flatten())
        self.head = spectral_norm(nn.Linear(channels * h * w, 1))

    def forward(self, x):
        return self.head(self.features(x)).squeeze(1)


class PointEnergy(nn.Module):
    """2 -> h -> h -> h -> one energy (LeakyReLU 0.2)."""

    def __init__(self, dim: int, hidden: int, layers: int = 3):
        super().__init__()
        dims = [dim] + [hidden] * layers
        body = [m for a, b in zip(dims[:-1], dims[1:]) for m in (spectral_norm(nn.Linear(a, b)), nn.LeakyReLU(0.2))]
        self.net = nn.Sequential(*body, spectral_norm(nn.Linear(hidden, 1)))

    def forward(self, x):
        return self.net(x).squeeze(1)


@contextlib.contextmanager
def frozen(module: nn.Module):
    """Parameters out of autograd for the block (Langevin needs d E / d x only)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


# ==================================================================================================
# IGEBM — Du & Mordatch 2019, "Implicit Generation and Generalization in Energy-Based Models"
# (arXiv 1903.08689), section 3 and Algorithm 1:
#   negatives:  x~^0 from a replay buffer of past negatives (95%) or U(box) (5%), then K steps of
#               x~^k = x~^{k-1} - lambda clip(grad_x E(x~^{k-1})) + omega^k,  omega^k ~ N(0, sigma^2 I),
#               and the final x~^K = x- pushed back into the buffer;
#   loss:       L = E_data[E(x+)] - E[E(stop_gradient(x-))] + alpha (E[E(x+)^2] + E[E(x-)^2]),
# with spectral normalisation on E's layers, alpha = 1, K = 60, lambda = 10, sigma = 0.005 on [0, 1]
# images, per-coordinate gradient clip 0.01, Adam(beta1 = 0, beta2 = 0.999). Samples: Langevin from
# uniform noise (`sample`), or the replay buffer itself (`sample_variants`).
# ==================================================================================================
@dataclass
class IGEBMConfig:
    hidden: int = 64                  # image: channels of the first conv; points: MLP width
    langevin_steps: int = 60          # K, Langevin steps per training step
    step_size: float = 40.0           # lambda on the gradient: 10 on [0, 1] images = 40 on [-1, 1]
    noise_std: float = 0.01           # sigma: 0.005 on [0, 1] images = 0.01 on [-1, 1]
    grad_clip: float | None = 0.005   # per-coordinate clip of grad_x E: 0.01 on [0, 1] = 0.005 on [-1, 1]
    buffer_size: int = 10000          # replay buffer of negatives
    restart_prob: float = 0.05        # fraction of chains restarted from uniform noise
    alpha: float = 1.0                # weight of the energy regulariser E(x+)^2 + E(x-)^2
    sample_steps: int = 60            # Langevin steps from uniform noise for `sample`: K, the length of
                                      # the training's restarted chains (longer chains sharpen towards modes)
    points_box: float = 5.0           # 2-D points: chains start in U[-b, b]^2 and stay in that box
    adam_betas: list[float] = field(default_factory=lambda: [0.0, 0.999])


@register_model("igebm", config=IGEBMConfig, data_kinds=("image", "points"),
                paper="Du & Mordatch 2019, Implicit Generation and Generalization in Energy-Based Models")
class IGEBM(GenerativeModel):
    likelihood_kinds = ()
    checkpoint_selection = "last"     # contrastive divergence has no validation loss that ranks checkpoints

    def __init__(self, config: IGEBMConfig, data_shape: tuple[int, ...]):
        super().__init__(config, data_shape)
        if config.buffer_size < 1 or not 0.0 <= config.restart_prob <= 1.0:
            raise ValueError(f"igebm: buffer_size must be >= 1 and restart_prob in [0, 1], got "
                             f"{config.buffer_size} and {config.restart_prob}")
        self.points = len(data_shape) == 1
        self.net = PointEnergy(data_shape[0], config.hidden) if self.points else ImageEnergy(data_shape, config.hidden)
        self.register_buffer("replay", torch.zeros(config.buffer_size, *data_shape))
        self.register_buffer("replay_pushed", torch.zeros((), dtype=torch.long))  # negatives pushed so far

    # spaces ------------------------------------------------------------------------------------------
    @property
    def box(self) -> tuple[float, float]:
        """The box the chains start in (uniformly) and are clamped to."""
        return (-self.config.points_box, self.config.points_box) if self.points else (-1.0, 1.0)

    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() if self.points else to_signed_unit(x)

    def to_data_space(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.points else from_signed_unit(y)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """One energy per example (low on data)."""
        return self.net(x)

    def uniform_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        lo, hi = self.box
        return lo + (hi - lo) * torch.rand((n, *self.data_shape), generator=generator, device=self.device)

    def positives(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Data in model space; images are dequantised uniformly within their 8-bit bin (width 2/255)."""
        y = self.to_model_space(x)
        if self.points:
            return y
        return y + (torch.rand(y.shape, generator=generator, device=y.device) - 0.5) * (2.0 / 255.0)

    # replay buffer -----------------------------------------------------------------------------------
    @property
    def replay_filled(self) -> int:
        return min(int(self.replay_pushed), self.config.buffer_size)

    def initial_chains(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Starting points of `n` chains and which of them restart from noise: each chain continues a
        uniformly drawn buffered negative, except with probability `restart_prob` (and while the buffer
        is empty) when it starts from U(box)."""
        noise = self.uniform_noise(n, generator)
        filled = self.replay_filled
        if filled == 0:
            return noise, torch.ones(n, dtype=torch.bool, device=self.device)
        index = torch.randint(filled, (n,), generator=generator, device=self.device)
        restart = torch.rand(n, generator=generator, device=self.device) < self.config.restart_prob
        mask = restart.view(n, *([1] * len(self.data_shape)))
        return torch.where(mask, noise, self.replay[index]), restart

    @torch.no_grad()
    def push(self, negatives: torch.Tensor) -> None:
        """Write negatives into the buffer's slots in turn, overwriting the oldest once it is full."""
        size = self.config.buffer_size
        negatives = negatives.detach()[-size:]
        slots = (self.replay_pushed + torch.arange(len(negatives), device=self.device)) % size
        self.replay[slots] = negatives.to(self.replay.dtype)
        self.replay_pushed += len(negatives)

    # sampling ----------------------------------------------------------------------------------------
    def run_chains(self, x0: torch.Tensor, steps: int, generator: torch.Generator) -> torch.Tensor:
        c = self.config
        with frozen(self.net):
            return langevin(self.energy, x0, steps, c.step_size, c.noise_std, generator,
                            grad_clip=c.grad_clip, clamp=self.box)

    @property
    def sampling_network_evaluations(self) -> int:
        """Energy gradients (a forward and a backward pass) per sample."""
        return self.config.sample_steps

    @torch.no_grad()
    def sample(self, n, generator):
        """Langevin chains of `sample_steps` steps from uniform noise."""
        return self.to_data_space(self.run_chains(self.uniform_noise(n, generator), self.config.sample_steps,
                                                  generator))

    def sample_variants(self, hubness) -> dict[str, Callable[[int, torch.Generator], tuple[torch.Tensor, dict]]]:
        """The replay buffer as a sampler (the persistent chains the paper shows): `n` distinct buffered
        negatives per call (with replacement only when `n` exceeds the buffer). The hubness prior is
        for latent-variable generators and does not apply."""
        filled = self.replay_filled
        if filled == 0:
            return {}

        def buffer(n, generator):
            if n <= filled:
                index = torch.randperm(filled, generator=generator, device=self.device)[:n]
            else:
                index = torch.randint(filled, (n,), generator=generator, device=self.device)
            return self.to_data_space(self.replay[index].clone()), {"buffer_filled": filled}
        return {"buffer": buffer}

    # training ----------------------------------------------------------------------------------------
    def configure_optimizers(self, lr, weight_decay):
        return {"model": torch.optim.Adam(self.net.parameters(), lr=lr, betas=tuple(self.config.adam_betas),
                                          weight_decay=weight_decay)}

    def training_step(self, x, step, opt: Optimization, generator):
        c = self.config
        pos = self.positives(x, generator)
        x0, restart = self.initial_chains(len(pos), generator)
        neg = self.run_chains(x0, c.langevin_steps, generator)
        self.push(neg)
        e_pos, e_neg = self.energy(pos), self.energy(neg)
        loss, contrastive, regulariser = contrastive_divergence_loss(e_pos, e_neg, c.alpha)
        opt.step("model", loss)
        return {"loss": loss.detach(), "contrastive": contrastive.detach(), "regulariser": regulariser.detach(),
                "energy_pos": e_pos.detach().mean(), "energy_neg": e_neg.detach().mean(),
                "restart_fraction": restart.float().mean()}
