"""2-D toy distributions: samplers, and exact log-densities where a closed form exists.

Constants (the usual choices of the GAN and flow literature):

- ``ring8``: equal mixture of 8 isotropic Gaussians, std RING_STD = 0.02, centred on the circle of
  radius RING_RADIUS = 2 at angles 2*pi*k/8, k = 0..7 (the first at (2, 0)). Exact density.
- ``grid25``: equal mixture of 25 isotropic Gaussians, std GRID_STD = 0.05, centred at
  {-4, -2, 0, 2, 4}^2 (row-major, x varying slowest). Exact density.
- ``moons``: two half circles, upper (cos t, sin t) and lower (1 - cos t, 1/2 - sin t) with
  t ~ U[0, pi] and each point on either with probability 1/2, plus N(0, MOONS_NOISE^2 = 0.1^2)
  noise, then x -> 2 x + (-1, -0.2) (scikit-learn's make_moons as scaled in FFJORD). No closed form.
- ``swissroll``: t = 1.5 pi (1 + 2 u), u ~ U[0, 1], point (t cos t, t sin t) plus N(0, SWISS_NOISE^2 =
  1) noise, divided by 5 (make_swiss_roll's x-z plane as scaled in FFJORD). No closed form.
- ``checkerboard``: uniform on the 8 black squares of a 4 x 4 board of 2 x 2 squares tiling
  [-4, 4]^2; a square is black when floor(x / 2) + floor(y / 2) is even. Density 1/32 there, 0
  (log-density -inf) elsewhere.

Samplers take a numpy Generator and return float64 arrays n x 2; log-densities take n x 2 arrays
(numpy, or CPU tensors) and return float64 arrays n in nats.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from genbench import GenbenchError
from genbench.data.base import LoadRequest, RawData

TOYS = ("ring8", "grid25", "moons", "swissroll", "checkerboard")
RING_RADIUS, RING_STD = 2.0, 0.02
GRID_STD = 0.05
MOONS_NOISE, SWISS_NOISE = 0.1, 1.0
BOARD_HALF_WIDTH, BOARD_SQUARE = 4.0, 2.0
_MIXTURES = {"ring8": RING_STD, "grid25": GRID_STD}


def mode_centers(name: str) -> np.ndarray:
    """The component means of a Gaussian-mixture toy (``ring8``: 8 x 2, ``grid25``: 25 x 2)."""
    if name == "ring8":
        angles = 2 * np.pi * np.arange(8) / 8
        return RING_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if name == "grid25":
        ticks = np.arange(-4.0, 4.1, 2.0)
        return np.stack(np.meshgrid(ticks, ticks, indexing="ij"), axis=-1).reshape(-1, 2)
    raise GenbenchError(f"toy {name!r} has no modes; mode_centers knows {sorted(_MIXTURES)}")


def mode_std(name: str) -> float:
    """The standard deviation of each component of a Gaussian-mixture toy."""
    mode_centers(name)  # validates the name
    return _MIXTURES[name]


def has_exact_density(name: str) -> bool:
    _check(name)
    return name in ("ring8", "grid25", "checkerboard")


def sample(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points from toy ``name``, as a float64 array n x 2."""
    _check(name)
    if name in _MIXTURES:
        centers = mode_centers(name)
        return centers[rng.integers(len(centers), size=n)] + _MIXTURES[name] * rng.standard_normal((n, 2))
    if name == "moons":
        t = rng.uniform(0, np.pi, size=n)
        lower = rng.random(n) < 0.5
        x = np.where(lower, 1 - np.cos(t), np.cos(t))
        y = np.where(lower, 0.5 - np.sin(t), np.sin(t))
        points = np.stack([x, y], axis=1) + MOONS_NOISE * rng.standard_normal((n, 2))
        return 2 * points + np.array([-1.0, -0.2])
    if name == "swissroll":
        t = 1.5 * np.pi * (1 + 2 * rng.random(n))
        points = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
        return (points + SWISS_NOISE * rng.standard_normal((n, 2))) / 5
    # checkerboard: pick one of the 8 black squares, then a uniform point inside it
    squares = _black_squares()
    corner = squares[rng.integers(len(squares), size=n)]
    return corner + BOARD_SQUARE * rng.random((n, 2))


def log_density(name: str, x) -> np.ndarray:
    """Exact log-density (nats) of toy ``name`` at the rows of ``x`` (n x 2)."""
    if not has_exact_density(name):
        raise GenbenchError(f"toy {name!r} has no closed-form density; exact densities exist for "
                            f"ring8, grid25 and checkerboard")
    x = np.asarray(x, dtype=np.float64).reshape(-1, 2)
    if name == "checkerboard":
        inside = np.all((x >= -BOARD_HALF_WIDTH) & (x < BOARD_HALF_WIDTH), axis=1)
        cells = np.floor(x / BOARD_SQUARE).astype(np.int64)
        black = inside & ((cells[:, 0] + cells[:, 1]) % 2 == 0)
        area = len(_black_squares()) * BOARD_SQUARE ** 2
        return np.where(black, -np.log(area), -np.inf)
    centers, std = mode_centers(name), _MIXTURES[name]
    out = np.empty(len(x))
    for start in range(0, len(x), 1 << 16):  # bounded memory: chunk x n_components at a time
        chunk = x[start:start + (1 << 16)]
        sq = ((chunk[:, None, :] - centers[None]) ** 2).sum(-1)
        logp = -sq / (2 * std ** 2) - np.log(2 * np.pi * std ** 2) - np.log(len(centers))
        top = logp.max(axis=1)
        out[start:start + len(chunk)] = top + np.log(np.exp(logp - top[:, None]).sum(axis=1))
    return out


def load(request: LoadRequest, *, name: str) -> RawData:
    """Train and test sets of toy ``name`` drawn from ``request.seed`` (streams [seed, 0] and [seed, 1])."""
    train = sample(name, request.toy_train_size, np.random.default_rng([request.seed, 0]))
    test = sample(name, request.toy_test_size, np.random.default_rng([request.seed, 1]))
    return RawData(train.astype(np.float32), np.zeros(len(train), np.int64),
                   test.astype(np.float32), np.zeros(len(test), np.int64),
                   provenance={"source": "generated", "source_dir": None, "raw_files": {}})


def loader(name: str):
    """The registry's loader for toy ``name``."""
    _check(name)
    return functools.partial(load, name=name)


def _black_squares() -> np.ndarray:
    """Lower-left corners of the black squares (floor(x/2) + floor(y/2) even), 8 x 2."""
    cells = np.arange(-2, 2)
    return np.array([(i * BOARD_SQUARE, j * BOARD_SQUARE)
                     for i in cells for j in cells if (i + j) % 2 == 0], dtype=np.float64)


def _check(name: str) -> None:
    if name not in TOYS:
        raise GenbenchError(f"unknown toy {name!r}; known: {', '.join(TOYS)}")


def mode_metrics(samples: torch.Tensor, toy: str, min_share: float = 0.008) -> dict[str, Any]:
    """Mode coverage on a Gaussian-mixture toy (the protocol of Srivastava et al. 2017, VEEGAN, and Lin
    et al. 2018, PacGAN): a sample is high quality when it lies within 3 standard deviations of its
    nearest mode; a mode is covered when at least `min_share` of all samples (PacGAN: 20 of 2500) are
    high-quality samples of it. mode_kl = KL(high-quality samples' mode histogram || uniform)."""
    import torch

    centers = torch.from_numpy(mode_centers(toy))
    dist = torch.cdist(samples.double(), centers)
    nearest, which = dist.min(dim=1)
    good = nearest <= 3 * mode_std(toy)
    counts = torch.bincount(which[good], minlength=len(centers)).double()
    share = counts / counts.sum().clamp_min(1)
    kl = float((share[share > 0] * (share[share > 0] * len(centers)).log()).sum()) if counts.sum() else math.inf
    return {"modes_covered": int((counts >= min_share * len(samples)).sum()), "modes_total": len(centers),
            "high_quality_fraction": float(good.double().mean()), "mode_kl": kl, "n": len(samples),
            "min_share": min_share}
