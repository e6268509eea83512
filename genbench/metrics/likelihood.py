"""Bits per dimension: the ONE place they are computed, with ONE convention for 8-bit data.

Convention (uniform dequantization, Theis et al. 2016; Dinh et al. 2017; Ho et al. 2019):

* Data: x in {0, ..., 255}^D (uint8). A continuous model sees y = (x + u) / 256 with
  u ~ U[0, 1)^D, so y lies in [0, 1)^D and inside x's bin [x/256, (x+1)/256).
* A density p(y) on [0, 1)^D defines P(x) = integral of p over the bin of x, and by Jensen
      -log P(x) <= E_u[ -log p((x + u) / 256) ] + D log 256      (nats).
  `continuous_to_discrete_nll` adds the D log 256 term. A model whose density lives on another
  affine scale z = a y + b (e.g. [-1, 1)) first converts with `affine_to_unit_cube_nll`.
* A model with a likelihood over the 256 values themselves (a discretized logistic or Gaussian,
  a 256-way softmax) already gives -log P(x): no term is added (`space="discrete"`).
  A Bernoulli cross-entropy on x / 255 is not a distribution over {0..255}: it has no bits/dim
  comparable to these.
* bits/dim = NLL_nats / (D ln 2), where NLL is -log P(x) per example and D = C * H * W.

Every per-example NLL carries its kind (LIKELIHOOD_KINDS): `exact` (flows), `elbo` / `iwae`
(VAE bounds), `vlb` (diffusion variational bound), `estimate` (stochastic log-det estimators).
Bounds and estimates are upper bounds / estimates of the NLL; the kind is reported beside the number.
"""
from __future__ import annotations

import math
from typing import Literal, TypeVar

import torch

from genbench import GenbenchError

LIKELIHOOD_KINDS = ("exact", "elbo", "iwae", "vlb", "estimate")
NUM_BINS = 256
LOG_NUM_BINS = math.log(NUM_BINS)

# Resolution of the dequantization noise: u is uniform on {0, 1/2^16, ..., 1 - 1/2^16}. Then
# (x + u) / 256 = (2^16 x + k) / 2^24 is exact in float32, stays inside x's bin and below 1
# (a float32 continuous u rounds (255 + u) / 256 up to 1.0 for u near 1).
_NOISE_BITS = 16

Number = TypeVar("Number")


def check_kind(kind: str) -> str:
    if kind not in LIKELIHOOD_KINDS:
        raise GenbenchError(f"Unknown likelihood kind {kind!r}; expected one of {LIKELIHOOD_KINDS}.")
    return kind


def dequantize(x_uint8: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """y = (x + u) / 256, u ~ U[0, 1) (on a 2^-16 grid, see above): float32 in [0, 1), same shape.

    Deterministic given `generator` (which must live on x's device); floor(256 y) == x exactly.
    """
    if not (torch.is_tensor(x_uint8) and x_uint8.dtype == torch.uint8):
        got = getattr(x_uint8, "dtype", type(x_uint8))
        raise GenbenchError(f"dequantize wants uint8 data in {{0..255}}, got {got}.")
    k = torch.randint(0, 2**_NOISE_BITS, x_uint8.shape, generator=generator, device=x_uint8.device)
    return (x_uint8.to(torch.int32) * 2**_NOISE_BITS + k).to(torch.float32) / 2 ** (8 + _NOISE_BITS)


def affine_to_unit_cube_nll(nll_nats_z: Number, num_dims: int, scale: float) -> Number:
    """NLL of y on [0, 1)^D from the NLL of z = scale * y + shift: -log p_y = -log p_z - D log|scale|.

    E.g. a model on [-1, 1) (z = 2y - 1) has scale 2; one on [0, 256) has scale 256.
    """
    return nll_nats_z - num_dims * math.log(abs(scale))


def continuous_to_discrete_nll(nll_cont_nats_on_unit_cube: Number, num_dims: int) -> Number:
    """Upper bound on -log P(x) (nats) from -log p(y) of a density on [0, 1)^D: adds D log 256."""
    return nll_cont_nats_on_unit_cube + num_dims * LOG_NUM_BINS


def nats_to_bits_per_dim(nll_nats_per_example: Number, num_dims: int) -> Number:
    """bits/dim = -log P(x) [nats] / (D ln 2), for a discrete NLL over {0..255}^D."""
    return nll_nats_per_example / (num_dims * math.log(2))


def bits_per_dim(
    nll_nats_per_example: Number, num_dims: int, *, space: Literal["unit_cube", "discrete"]
) -> Number:
    """The front door: bits/dim of a per-example NLL in nats (tensor, array or float).

    space="unit_cube": -log p(y) of a density on the dequantized y in [0, 1)^D (flows, VAEs,
    diffusion VLBs on continuous data) -> adds D log 256 first.
    space="discrete": -log P(x) of a likelihood over {0..255}^D (discretized logistic, ...) -> as is.
    """
    if space == "unit_cube":
        nll_nats_per_example = continuous_to_discrete_nll(nll_nats_per_example, num_dims)
    elif space != "discrete":
        raise GenbenchError(f"Unknown likelihood space {space!r}; expected 'unit_cube' or 'discrete'.")
    return nats_to_bits_per_dim(nll_nats_per_example, num_dims)
