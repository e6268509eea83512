"""Layers and likelihood pieces shared by model families."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def to_signed_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 {0..255} -> float in [-1, 1] (bin centres at (2k - 255) / 255)."""
    return x.float() * (2.0 / 255.0) - 1.0


def from_signed_unit(y: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 {0..255}, rounding to the nearest bin."""
    return ((y.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) for uint8 data under a logistic discretized to 256 bins (Salimans et al. 2017, eq. 2).

    `mean` and `log_scale` live in the [-1, 1] space of `to_signed_unit`; each bin has width 2/255,
    the edge bins take the tails. Returns the elementwise log-probability (nats) of the DISCRETE
    value, so summing over dimensions gives -NLL of the 8-bit image directly.
    """
    y = to_signed_unit(x)
    centered = y - mean
    inv_scale = torch.exp(-log_scale)
    plus = inv_scale * (centered + 1.0 / 255.0)
    minus = inv_scale * (centered - 1.0 / 255.0)
    cdf_plus = torch.sigmoid(plus)
    cdf_minus = torch.sigmoid(minus)
    log_cdf_plus = plus - F.softplus(plus)  # log sigmoid(plus), for x = 0
    log_one_minus_cdf_minus = -F.softplus(minus)  # log (1 - sigmoid(minus)), for x = 255
    cdf_delta = cdf_plus - cdf_minus
    mid = inv_scale * centered
    # where the bin mass underflows, use the density at the centre times the bin width
    log_pdf_mid = mid - log_scale - 2.0 * F.softplus(mid)
    log_mid = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp_min(1e-12)), log_pdf_mid + math.log(2.0 / 255.0))
    return torch.where(x == 0, log_cdf_plus, torch.where(x == 255, log_one_minus_cdf_minus, log_mid))


def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mean, exp(log_var))."""
    return -0.5 * (math.log(2 * math.pi) + log_var + (z - mean) ** 2 * torch.exp(-log_var))


def gaussian_kl_to_standard(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(mean, exp(log_var)) || N(0, 1)) in closed form (Kingma & Welling 2014, App. B)."""
    return 0.5 * (torch.exp(log_var) + mean**2 - 1.0 - log_var)


def discretized_gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) for uint8 data under a Gaussian discretized to the 256 bins of `to_signed_unit`
    (Ho et al. 2020, eq. 13): bins of width 2/255 around the centres, the edge bins take the tails.
    Elementwise, in nats, of the DISCRETE value (computed with log Phi for stability)."""
    y = x.to(mean.dtype) * (2.0 / 255.0) - 1.0  # to_signed_unit, in the precision of `mean`
    inv_scale = torch.exp(-log_scale)
    upper = (y - mean + 1.0 / 255.0) * inv_scale
    lower = (y - mean - 1.0 / 255.0) * inv_scale
    log_cdf_upper = torch.special.log_ndtr(upper)
    log_sf_lower = torch.special.log_ndtr(-lower)  # log (1 - Phi(lower))
    # log(Phi(u) - Phi(l)) on whichever side of the mean keeps the difference of tails well-conditioned
    right = lower > 0
    hi = torch.where(right, log_sf_lower, log_cdf_upper)
    lo = torch.where(right, torch.special.log_ndtr(-upper), torch.special.log_ndtr(lower))
    log_mid = hi + torch.log1p(-torch.exp((lo - hi).clamp(max=-1e-12)))
    return torch.where(x == 0, log_cdf_upper, torch.where(x == 255, log_sf_lower, log_mid))


class CausalTransformerLayer(nn.Module):
    """A pre-norm transformer layer whose attention reads only earlier positions (TARFLOW's blocks, the
    codebook prior). `extend` takes the keys and values of the positions before `h` (a cache) and
    processes only the new ones, returning the extended cache: one position per pass when sampling."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.extend(h, None)[0]

    def extend(self, h: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        n, length, width = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        # no cache: the whole sequence, the future masked; a cache: the new position reads every cached one
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=cache is None)
        h = h + self.proj(attn.transpose(1, 2).reshape(n, length, width))
        return h + self.mlp(self.norm2(h)), (k, v)


def labelled_split(x: torch.Tensor, y: torch.Tensor, classes: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of a split for a model of `classes` classes; a label outside them is refused by name."""
    bad = (y < 0) | (y >= classes)
    if bool(bad.any()):
        from genbench import GenbenchError

        raise GenbenchError(f"the {split} split holds label {int(y[bad][0])}, outside the {classes} classes of "
                            f"model_config.classes; set classes to the dataset's number of classes")
    return x, y
