"""Discrete codebooks: VQ-VAE against finite scalar quantization, each with an autoregressive prior.

==================================================================================================
VQ-VAE — van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning";
FSQ — Mentzer, Minnen, Agustsson & Tschannen 2024, "Finite Scalar Quantization: VQ-VAE Made Simple".
==================================================================================================
One convolutional autoencoder (two stride-2 convolutions and residual blocks down to a 7 x 7 grid for
28 x 28 images, the mirror image up), trained on the mean squared error of [0, 1] pixels; between them
one quantizer, chosen by `quantizer`:

  vq   z_q = e_k, k = argmin_j |z_e - e_j|  (eq. 1-2); straight-through z_e + sg(z_q - z_e) (sec. 3.2);
       loss adds the commitment term beta |z_e - sg(e_k)|^2 (eq. 3, beta = 0.25); the codebook follows
       exponential moving averages instead of its loss term (App. A.1):
         N_j <- g N_j + (1 - g) n_j,   m_j <- g m_j + (1 - g) sum_{i: k_i = j} z_e,i,   e_j = m_j / N_j
       with N Laplace-smoothed so that an unused code keeps its place (g = 0.99). The codebook starts at
       K encoder outputs of the first training batch (`codebook_init: data`, the default; `random`: N(0, I/d)
       draws): random codes far from where the untrained encoder's outputs lie are never nearest, never
       move and stay dead (measured here: 5 of 1024 codes in use from step 50 on, MNIST, seed 0)
  fsq  each of d = len(levels) channels bounded then rounded: z_hat = round(f(z)), f(z) = h tanh(z + s) - o
       with h = (L - 1)(1 + eps) / 2, o = 1/2 for even L (else 0), s = atanh(o / h) (sec. 3, App. A.1),
       straight-through rounding, z_hat / floor(L / 2) the decoder's input; the codebook is implicit, of
       size prod(levels), code index = sum_i (z_hat_i + floor(L_i / 2)) prod_{j < i} L_j

Then, with the autoencoder frozen, a small causal transformer learns p(k_1..k_49) over the grid's code
indices in raster order (the papers' second stage uses a PixelCNN; any autoregressive prior serves):
samples decode prior draws. Training runs `ae_steps` autoencoder steps, then the prior until `steps`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genbench import GenbenchError
from genbench.models import GenerativeModel, Optimization, register_model
from genbench.models.nn import CausalTransformerLayer


# --------------------------------------------------------------------------------------------------
# quantizers
# --------------------------------------------------------------------------------------------------
class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook with EMA updates (van den Oord et al. 2017, eq. 1-3 and App. A.1)."""

    def __init__(self, size: int, dim: int, decay: float, commitment: float, eps: float = 1e-5):
        super().__init__()
        self.size, self.dim, self.decay, self.commitment, self.eps = size, dim, decay, commitment, eps
        init = torch.randn(size, dim) / math.sqrt(dim)
        self.register_buffer("codebook", init.clone())
        self.register_buffer("ema_count", torch.ones(size))
        self.register_buffer("ema_sum", init.clone())
        self.register_buffer("initialised", torch.tensor(False))   # from data (`init_from_data`): once, checkpointed

    @property
    def codes(self) -> int:
        return self.size

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """(B, d, H, W) -> (B, H, W) nearest code indices."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.dim)
        distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
                     + self.codebook.pow(2).sum(1)[None, :])
        return distances.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, H, W) indices -> (B, d, H, W) code vectors."""
        return self.codebook[idx].permute(0, 3, 1, 2)

    @torch.no_grad()
    def init_from_data(self, z: torch.Tensor, generator: torch.Generator) -> None:
        """Start the codebook (and its EMA sums, at count 1) at K of the batch's encoder outputs drawn without
        replacement; a batch of fewer than K vectors is drawn with replacement and jittered by 1 % of the
        outputs' spread so that no two codes coincide."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.dim)
        if len(flat) >= self.size:
            codes = flat[torch.randperm(len(flat), generator=generator)[:self.size]]
        else:
            codes = flat[torch.randint(len(flat), (self.size,), generator=generator)]
            codes = codes + 0.01 * flat.std(0) * torch.randn(codes.shape, generator=generator)
        self.codebook.copy_(codes)
        self.ema_sum.copy_(codes)
        self.ema_count.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def ema_update(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        flat, k = z.permute(0, 2, 3, 1).reshape(-1, self.dim), idx.reshape(-1)
        counts = torch.bincount(k, minlength=self.size).to(flat.dtype)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, k, flat)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (total + self.size * self.eps) * total   # Laplace smoothing
        self.codebook.copy_(self.ema_sum / smoothed[:, None])

    def forward(self, z: torch.Tensor, update: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(decoder input with the straight-through gradient, indices, commitment loss)."""
        idx = self.indices(z)
        z_q = self.lookup(idx)
        if update:
            self.ema_update(z.detach(), idx)
        commitment = self.commitment * (z - z_q.detach()).pow(2).sum(1).mean()
        return z + (z_q - z).detach(), idx, commitment


class FiniteScalarQuantizer(nn.Module):
    """Bound each channel to L_i values and round (Mentzer et al. 2024, sec. 3 and App. A.1)."""

    def __init__(self, levels: list[int], eps: float = 1e-3):
        super().__init__()
        if not levels or any(int(l) < 2 for l in levels):
            raise GenbenchError(f"model_config.levels: every FSQ level must be >= 2, got {levels!r}")
        self.levels = [int(l) for l in levels]
        lv = torch.tensor(self.levels, dtype=torch.float64)
        self.register_buffer("half_range", ((lv - 1) * (1 + eps) / 2).float(), persistent=False)
        self.register_buffer("offset", torch.where(lv % 2 == 0, 0.5, 0.0).float(), persistent=False)
        self.register_buffer("shift", torch.atanh(torch.where(lv % 2 == 0, 0.5, 0.0) / ((lv - 1) * (1 + eps) / 2)
                                                  ).float(), persistent=False)
        self.register_buffer("half_width", (lv // 2).float(), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + self.levels[:-1]), 0)
        self.register_buffer("basis", basis, persistent=False)
        self.dim = len(self.levels)

    @property
    def codes(self) -> int:
        return math.prod(self.levels)

    def _view(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(1, -1, 1, 1)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z + self._view(self.shift)) * self._view(self.half_range) - self._view(self.offset)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Integer levels (as floats) in [-floor(L/2), ...], with the straight-through gradient of rounding."""
        bounded = self.bound(z)
        return bounded + (torch.round(bounded) - bounded).detach()

    def indices_from_levels(self, q: torch.Tensor) -> torch.Tensor:
        """(B, d, H, W) integer levels -> (B, H, W) code indices (the mixed-radix number of the shifted levels)."""
        shifted = (q + self._view(self.half_width)).round().long()
        return (shifted * self.basis.view(1, -1, 1, 1)).sum(1)

    def levels_from_indices(self, idx: torch.Tensor) -> torch.Tensor:
        digits = [(idx // int(b)) % l for b, l in zip(self.basis.tolist(), self.levels)]
        return torch.stack(digits, 1).float() - self._view(self.half_width)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        return self.indices_from_levels(torch.round(self.bound(z)))

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        return self.levels_from_indices(idx) / self._view(self.half_width)

    def forward(self, z: torch.Tensor, update: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = self.quantize(z)
        return q / self._view(self.half_width), self.indices_from_levels(q.detach()), z.new_zeros(())


# --------------------------------------------------------------------------------------------------
# the autoencoder and the prior
# --------------------------------------------------------------------------------------------------
class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(channels, channels, 1))

    def forward(self, x):
        return x + self.net(x)


def encoder(channels_in: int, hidden: int, blocks: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, hidden, 4, 2, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 4, 2, 1),
                         *[ResidualBlock(hidden) for _ in range(blocks)], nn.ReLU(), nn.Conv2d(hidden, out, 1))


def decoder(code_dim: int, hidden: int, blocks: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(code_dim, hidden, 3, padding=1), *[ResidualBlock(hidden) for _ in range(blocks)],
                         nn.ReLU(), nn.ConvTranspose2d(hidden, hidden, 4, 2, 1), nn.ReLU(),
                         nn.ConvTranspose2d(hidden, channels_out, 4, 2, 1))


class CodePrior(nn.Module):
    """A causal transformer over the raster-ordered code grid: p(k_t | k_<t), a start token first."""

    def __init__(self, codes: int, length: int, width: int, layers: int, heads: int):
        super().__init__()
        self.codes, self.length = codes, length
        self.token = nn.Embedding(codes + 1, width)           # + the start token
        self.position = nn.Parameter(torch.zeros(1, length, width))
        self.blocks = nn.ModuleList(CausalTransformerLayer(width, heads) for _ in range(layers))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, codes))

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) code sequences -> (B, T, codes) logits of each position given the ones before it."""
        start = torch.full((idx.shape[0], 1), self.codes, dtype=torch.long, device=idx.device)
        inputs = torch.cat([start, idx[:, :-1]], 1)
        h = self.token(inputs) + self.position[:, :inputs.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.head(h)

    def log_prob(self, idx: torch.Tensor) -> torch.Tensor:
        return -F.cross_entropy(self.logits(idx).transpose(1, 2), idx, reduction="none").sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
        """Ancestral sampling in raster order, one position per pass with cached keys and values."""
        token = torch.full((n, 1), self.codes, dtype=torch.long, device=self.position.device)
        caches: list = [None] * len(self.blocks)
        out = []
        for t in range(self.length):
            h = self.token(token) + self.position[:, t:t + 1]
            for i, block in enumerate(self.blocks):
                h, caches[i] = block.extend(h, caches[i] if t else None)
            probs = torch.softmax(self.head(h[:, -1]).float() / temperature, -1)
            token = torch.multinomial(probs, 1, generator=generator)
            out.append(token)
        return torch.cat(out, 1)


DEFAULT_FSQ_LEVELS = (8, 5, 5, 5)   # 1000 codes, matched with VQ's K = 1024 (Mentzer et al. 2024, Table 1)


@dataclass
class CodebookConfig:
    quantizer: Literal["vq", "fsq"] = "fsq"
    levels: list[int] | None = None   # fsq: levels per channel (None: DEFAULT_FSQ_LEVELS)
    codebook_size: int = 1024         # vq: K
    code_dim: int = 16                # vq: the code vectors' dimension
    codebook_init: Literal["data", "random"] = "data"   # vq: first batch's encoder outputs, or N(0, I/d)
    commitment: float = 0.25          # vq: beta
    ema_decay: float = 0.99           # vq: g
    hidden: int = 32
    res_blocks: int = 2
    ae_steps: int = 2000              # autoencoder steps; the prior trains from there to train.steps
    prior_width: int = 64
    prior_layers: int = 2
    prior_heads: int = 4
    sample_temperature: float = 1.0

    @property
    def fsq_levels(self) -> list[int]:
        return list(self.levels or DEFAULT_FSQ_LEVELS)

    @property
    def codes(self) -> int:
        """The codebook's size as configured: prod(levels) for FSQ, K for VQ."""
        return math.prod(self.fsq_levels) if self.quantizer == "fsq" else self.codebook_size


@register_model("codebook", config=CodebookConfig, data_kinds=("image",),
                paper="van den Oord et al. 2017, Neural Discrete Representation Learning (VQ-VAE); Mentzer et al. "
                      "2024, Finite Scalar Quantization: VQ-VAE Made Simple")
class CodebookAutoencoder(GenerativeModel):
    checkpoint_selection = "last"   # two phases, two losses: no one validation figure ranks the checkpoints

    def __init__(self, config: CodebookConfig, data_shape: tuple[int, ...]):
        super().__init__(config, data_shape)
        c, h, w = data_shape
        if h % 4 or w % 4:
            raise GenbenchError(f"the codebook autoencoder halves the image twice: sides {h}x{w} must divide by 4")
        if config.quantizer == "vq":
            if config.codebook_size < 1:
                raise GenbenchError(f"model_config.codebook_size must be >= 1, got {config.codebook_size}")
            self.quantizer: VectorQuantizer | FiniteScalarQuantizer = VectorQuantizer(
                config.codebook_size, config.code_dim, config.ema_decay, config.commitment)
        else:
            self.quantizer = FiniteScalarQuantizer(config.fsq_levels)
        self.encoder = encoder(c, config.hidden, config.res_blocks, self.quantizer.dim)
        self.decoder = decoder(self.quantizer.dim, config.hidden, config.res_blocks, c)
        self.grid = (h // 4, w // 4)
        self.prior = CodePrior(self.quantizer.codes, self.grid[0] * self.grid[1], config.prior_width,
                               config.prior_layers, config.prior_heads)

    # the autoencoder ------------------------------------------------------------------------------
    @staticmethod
    def pixels(x: torch.Tensor) -> torch.Tensor:
        return x.float() / 255.0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> (B, H/4, W/4) code indices."""
        return self.quantizer.indices(self.encoder(self.pixels(x)))

    def decode(self, idx: torch.Tensor) -> torch.Tensor:
        """code indices -> [0, 1] images (the decoder's output, clamped)."""
        return self.decoder(self.quantizer.lookup(idx)).clamp(0.0, 1.0)

    @torch.no_grad()
    def reconstruct_images(self, x: torch.Tensor) -> torch.Tensor:
        return (self.decode(self.encode(x)) * 255.0).round().to(torch.uint8)

    def configure_optimizers(self, lr, weight_decay):
        autoencoder = list(self.encoder.parameters()) + list(self.decoder.parameters())
        return {"autoencoder": torch.optim.Adam(autoencoder, lr=lr, weight_decay=weight_decay),
                "prior": torch.optim.Adam(self.prior.parameters(), lr=lr, weight_decay=weight_decay)}

    def training_step(self, x, step, opt: Optimization, generator):
        if step < self.config.ae_steps:
            target = self.pixels(x)
            z = self.encoder(target)
            if (isinstance(self.quantizer, VectorQuantizer) and self.config.codebook_init == "data"
                    and not bool(self.quantizer.initialised)):
                self.quantizer.init_from_data(z.detach(), generator)
            z_q, idx, commitment = self.quantizer(z, update=True)
            mse = (self.decoder(z_q) - target).pow(2).mean()
            loss = mse + commitment
            opt.step("autoencoder", loss)
            used = torch.unique(idx).numel() / self.quantizer.codes
            return {"loss": loss.detach(), "mse": mse.detach(), "batch_code_usage": torch.tensor(used)}
        with torch.no_grad():
            idx = self.encode(x).flatten(1)
        nll = -self.prior.log_prob(idx).mean()
        opt.step("prior", nll)
        return {"loss": nll.detach(), "prior_nll_nats": nll.detach()}

    @torch.no_grad()
    def sample(self, n, generator):
        idx = self.prior.sample(n, generator, self.config.sample_temperature).view(n, *self.grid)
        return (self.decode(idx) * 255.0).round().to(torch.uint8)

    # the evaluation's figures -------------------------------------------------------------------
    @torch.no_grad()
    def codebook_study(self, x: torch.Tensor, batch: int) -> dict:
        """On images x: codebook usage (% of codes used), code perplexity exp(H) of the codes' histogram,
        the reconstruction's mean squared error per pixel ([0, 1] scale, mean and stderr over images) and
        the prior's NLL of the images' codes (nats per image)."""
        counts = torch.zeros(self.quantizer.codes, dtype=torch.float64)
        mse, nll = [], []
        for start in range(0, len(x), batch):
            chunk = x[start:start + batch].to(self.device)
            idx = self.encode(chunk)
            counts += torch.bincount(idx.flatten().cpu(), minlength=self.quantizer.codes).double()
            mse.append((self.decode(idx) - self.pixels(chunk)).pow(2).flatten(1).mean(1).double().cpu())
            nll.append(-self.prior.log_prob(idx.flatten(1)).double().cpu())
        p = counts / counts.sum()
        entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
        mse_t, nll_t = torch.cat(mse), torch.cat(nll)
        se = lambda t: float(t.std() / math.sqrt(len(t)))  # noqa: E731
        return {"n": len(x), "codes": self.quantizer.codes, "quantizer": self.config.quantizer,
                "usage_percent": 100.0 * float((counts > 0).sum()) / self.quantizer.codes,
                "perplexity": math.exp(entropy), "perplexity_fraction": math.exp(entropy) / self.quantizer.codes,
                "reconstruction_mse": {"mean": float(mse_t.mean()), "stderr": se(mse_t)},
                "prior_nll_nats": {"mean": float(nll_t.mean()), "stderr": se(nll_t)}}
