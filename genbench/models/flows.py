"""Normalizing flows with exact likelihoods: NICE, RealNVP, Glow, invertible ResNet and TARFLOW.

A flow is an invertible map f from data space to latent space; by the change of variables
    log p(y) = log p_Z(f(y)) + log |det df/dy|                       (Dinh et al. 2014, eq. 1)
Every flow here is one `FlowNetwork`: a list of stages, each an invertible `Bijector` that returns
(output, per-example log|det J|), optionally followed by a `Split` that factors half the channels
out to a prior (the multi-scale architecture, Dinh et al. 2016 sec. 3.6), and a prior on what is
left. Image flows see the dequantized data y = (x + u) / 256 in [0, 1)^D of the harness (see
genbench.metrics.likelihood), their first stage maps it to the model's space (shift, [-1, 1] or
logit, with its Jacobian), and the likelihood they report is
    log P(x) >= E_u[log p(y)] - D log 256                           (one u per example)
On the 2-D toys (points) they model the raw coordinates and report the continuous density.

Shapes inside a flow are (N, C, H, W); a point in R^D is held as (N, D, 1, 1), so the 1x1-conv and
channel-coupling machinery serves both. Squeeze and checkerboard masks need spatial size and are
used on images only.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from genbench import GenbenchError
from genbench.metrics.likelihood import LOG_NUM_BINS, dequantize
from genbench.models.nn import CausalTransformerLayer
from genbench.models import GenerativeModel, Optimization, SamplerVariant, register_model

Shape = tuple[int, ...]
Preprocess = Literal["none", "shift", "signed", "logit"]
LOG_2PI = math.log(2 * math.pi)


def per_example_sum(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(1)


@dataclass
class FlowContext:
    """What stochastic or configurable layers need during a pass (only the i-ResNet uses it)."""

    generator: torch.Generator | None = None
    series_terms: int = 5          # power-series terms of the i-ResNet log-determinant
    hutchinson_samples: int = 1    # probe vectors per example for the trace estimator
    exact_logdet: bool = False     # brute-force Jacobian instead (small inputs only)


# ==================================================================================================
# bijectors: forward(x, ctx) -> (y, logdet per example); inverse(y, ctx) -> x
# ==================================================================================================
class Bijector(nn.Module):
    def forward(self, x: torch.Tensor, ctx: FlowContext | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def inverse(self, y: torch.Tensor, ctx: FlowContext | None = None) -> torch.Tensor:
        raise NotImplementedError

    def output_shape(self, shape: Shape) -> Shape:
        return shape


class Chain(Bijector):
    def __init__(self, layers: list[Bijector]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x, ctx=None):
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x, ctx)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y, ctx=None):
        for layer in reversed(self.layers):
            y = layer.inverse(y, ctx)
        return y

    def output_shape(self, shape):
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape


class ElementwiseAffine(Bijector):
    """y -> scale * y + shift with constants: the shift and [-1, 1] preprocessings."""

    def __init__(self, scale: float, shift: float):
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x, ctx=None):
        dims = x[0].numel()
        return x * self.scale + self.shift, x.new_full((x.shape[0],), dims * math.log(abs(self.scale)))

    def inverse(self, y, ctx=None):
        return (y - self.shift) / self.scale


class Logit(Bijector):
    """y -> logit(alpha + (1 - 2 alpha) y), RealNVP's preprocessing (Dinh et al. 2016, sec. 4.1)."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def forward(self, x, ctx=None):
        s = self.alpha + (1 - 2 * self.alpha) * x
        y = torch.log(s) - torch.log1p(-s)
        logdet = per_example_sum(math.log(1 - 2 * self.alpha) - torch.log(s) - torch.log1p(-s))
        return y, logdet

    def inverse(self, y, ctx=None):
        return (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)


def preprocessing(kind: Preprocess, alpha: float) -> Bijector:
    """From the dequantized y in [0, 1) to the space the flow is built in."""
    return {"none": lambda: ElementwiseAffine(1.0, 0.0), "shift": lambda: ElementwiseAffine(1.0, -0.5),
            "signed": lambda: ElementwiseAffine(2.0, -1.0), "logit": lambda: Logit(alpha)}[kind]()


class Squeeze(Bijector):
    """(C, H, W) -> (4C, H/2, W/2), each 2x2 neighbourhood into channels (RealNVP sec. 3.6)."""

    def forward(self, x, ctx=None):
        n, c, h, w = x.shape
        y = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)
        return y, x.new_zeros(n)

    def inverse(self, y, ctx=None):
        n, c4, h, w = y.shape
        c = c4 // 4
        return y.view(n, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c, 2 * h, 2 * w)

    def output_shape(self, shape):
        c, h, w = shape
        if h % 2 or w % 2:
            raise GenbenchError(f"cannot squeeze a {h}x{w} image: sides must be even (use fewer levels)")
        return (4 * c, h // 2, w // 2)


class Flatten(Bijector):
    def __init__(self, shape: Shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x, ctx=None):
        return x.reshape(x.shape[0], -1), x.new_zeros(x.shape[0])

    def inverse(self, y, ctx=None):
        return y.view(y.shape[0], *self.shape)

    def output_shape(self, shape):
        return (math.prod(shape),)


class Patchify(Bijector):
    """(C, H, W) -> a sequence of (H/p)(W/p) tokens of p*p*C values, row-major (TARFLOW sec. 2.2).
    A point (D, 1, 1) becomes D tokens of one coordinate each."""

    def __init__(self, patch: int):
        super().__init__()
        self.patch = patch

    def forward(self, x, ctx=None):
        n, c, h, w = x.shape
        if h == w == 1:
            return x.view(n, c, 1), x.new_zeros(n)
        p = self.patch
        y = x.view(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(n, (h // p) * (w // p), p * p * c)
        return y, x.new_zeros(n)

    def inverse(self, y, ctx=None, shape: Shape | None = None):
        raise RuntimeError("Patchify.inverse needs the image shape; use PatchifyTo")

    def output_shape(self, shape):
        c, h, w = shape
        if h == w == 1:
            return (c, 1)
        if h % self.patch or w % self.patch:
            raise GenbenchError(f"patch size {self.patch} does not divide the {h}x{w} image")
        return ((h // self.patch) * (w // self.patch), self.patch * self.patch * c)


class PatchifyTo(Patchify):
    def __init__(self, patch: int, shape: Shape):
        super().__init__(patch)
        self.shape = tuple(shape)

    def inverse(self, y, ctx=None, shape=None):
        c, h, w = self.shape
        n = y.shape[0]
        if h == w == 1:
            return y.view(n, c, 1, 1)
        p = self.patch
        return y.view(n, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, h, w)


class ActNorm(Bijector):
    """Per-channel affine y = (x + b) * exp(s), initialised from the first training batch so that
    every channel has zero mean and unit variance (Glow, Kingma & Dhariwal 2018, sec. 3.1).
    log|det| = H * W * sum(s)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(1)

    def forward(self, x, ctx=None):
        if self.training and not self.initialized:
            self.initialize(x)
        y = (x + self.bias) * torch.exp(self.log_scale)
        logdet = x.shape[2] * x.shape[3] * self.log_scale.sum()
        return y, logdet.expand(x.shape[0])

    def inverse(self, y, ctx=None):
        return y * torch.exp(-self.log_scale) - self.bias


InvConv = Literal["lu", "plain", "exp"]


class Conv1x1(Bijector):
    """Invertible 1x1 convolution, y = W x at every pixel (Glow, Kingma & Dhariwal 2018, sec. 3.2):
    log|det| = H * W * log|det W| (eq. 9). Subclasses parameterise W; each computes log|det W| in its
    own way and W^-1 for the inverse (in float64, then cast). All take the same random draw, a C x C
    Gaussian matrix, so the rest of a flow is initialised alike whichever form it uses."""

    def weight(self) -> torch.Tensor:
        raise NotImplementedError

    def log_abs_det(self) -> torch.Tensor:
        """log|det W|, a scalar."""
        raise NotImplementedError

    def inverse_weight(self) -> torch.Tensor:
        """W^-1 in float64."""
        return torch.linalg.inv(self.weight().double())

    def forward(self, x, ctx=None):
        w = self.weight()
        y = F.conv2d(x, w.view(*w.shape, 1, 1))
        return y, (x.shape[2] * x.shape[3] * self.log_abs_det()).expand(x.shape[0])

    def inverse(self, y, ctx=None):
        w_inv = self.inverse_weight().to(y.dtype)
        return F.conv2d(y, w_inv.view(*w_inv.shape, 1, 1))


class InvertibleConv1x1(Conv1x1):
    """W in LU form, W = P L (U + diag(sign(s) exp(log|s|))) (Glow sec. 3.2, eq. 10):
    log|det W| = sum(log|s|), O(C). P is fixed; initialised from a random rotation."""

    def __init__(self, channels: int):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels))
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("permutation", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)))

    def weight(self) -> torch.Tensor:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.permutation @ lower @ upper

    def log_abs_det(self):
        return self.log_s.sum()


class PlainConv1x1(Conv1x1):
    """W a full learnt matrix, initialised as a random rotation (Glow sec. 3.2): log|det W| by an LU
    factorisation of W at every pass (`torch.linalg.slogdet`, O(C^3)), eq. 9."""

    def __init__(self, channels: int):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels))
        self.w = nn.Parameter(q)

    def weight(self) -> torch.Tensor:
        return self.w

    def log_abs_det(self):
        return torch.linalg.slogdet(self.w)[1]


class ExpConv1x1(Conv1x1):
    """W = exp(A), the matrix exponential of a learnt A (Hoogeboom et al. 2020, The Convolution Exponential
    and Generalized Sylvester Flows, for a convolution in place of A; Su Jianlin, "恒等式 det(exp(A)) =
    exp(Tr(A)) 赏析"). Since det(exp A) = exp(tr A) (triangularise A: the eigenvalues of exp A are the
    exponentials of those of A, and a determinant is the product of the eigenvalues),
        log|det W| = tr(A)                                    (no determinant is computed)
    and W^-1 = exp(-A) (no matrix is inverted). W is invertible for every A, but det W > 0 always:
    exp reaches only the matrices of positive determinant, never a reflection.

    A starts as the skew-symmetric part of a Gaussian matrix, so W = exp(A) starts as a random
    rotation (det 1, log-det 0), as Glow's W does: every step's coupling transforms the same channel
    half (`channel_mask(shape, 0)`), so it is the 1x1 convolution that mixes the channels, and A = 0
    (W = I) would leave half of them untouched by every coupling until A has learnt to mix."""

    def __init__(self, channels: int):
        super().__init__()
        m = torch.randn(channels, channels)
        self.log_weight = nn.Parameter((m - m.T) / 2)

    def weight(self) -> torch.Tensor:
        return torch.linalg.matrix_exp(self.log_weight)

    def log_abs_det(self):
        return torch.diagonal(self.log_weight).sum()

    def inverse_weight(self) -> torch.Tensor:
        return torch.linalg.matrix_exp(-self.log_weight.double())


CONV_1X1: dict[str, type[Conv1x1]] = {"lu": InvertibleConv1x1, "plain": PlainConv1x1, "exp": ExpConv1x1}


class Coupling(Bijector):
    """Masked coupling: the masked part x_a = m * x conditions an elementwise map of the rest,
        y = x_a + (1 - m) * (x * exp(s(x_a)) + t(x_a)),    log|det| = sum (1 - m) * s(x_a)
    additive: s = 0 (NICE, Dinh et al. 2014, eq. 7); tanh: s = scale * tanh(raw) (RealNVP eq. 7-9);
    sigmoid: exp(s) = sigmoid(raw + 2) (Glow, Table 1 and its code)."""

    def __init__(self, mask: torch.Tensor, net: nn.Module, kind: Literal["additive", "tanh", "sigmoid"]):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = net
        self.kind = kind
        if kind == "tanh":
            self.scale = nn.Parameter(torch.ones_like(mask))

    def _shift_and_log_scale(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.net(x_a)
        if self.kind == "additive":
            return out, None
        raw, shift = out.chunk(2, dim=1)
        log_scale = self.scale * torch.tanh(raw) if self.kind == "tanh" else F.logsigmoid(raw + 2.0)
        return shift, log_scale

    def forward(self, x, ctx=None):
        x_a = x * self.mask
        shift, log_scale = self._shift_and_log_scale(x_a)
        free = 1 - self.mask
        if log_scale is None:
            return x_a + free * (x + shift), x.new_zeros(x.shape[0])
        return x_a + free * (x * torch.exp(log_scale) + shift), per_example_sum(free * log_scale)

    def inverse(self, y, ctx=None):
        y_a = y * self.mask
        shift, log_scale = self._shift_and_log_scale(y_a)
        free = 1 - self.mask
        if log_scale is None:
            return y_a + free * (y - shift)
        return y_a + free * (y - shift) * torch.exp(-log_scale)


class DiagonalScaling(Bijector):
    """NICE's last layer, h -> exp(s) * h, log|det| = sum(s) (Dinh et al. 2014, sec. 3.3).

    s starts at 0 (the paper), or, given `init_rms`, from the first training batch so that every
    coordinate's root mean square is `init_rms` (a data-dependent start like Glow's ActNorm). Adam moves
    s by about the learning rate per step, so from 0 the scale of a near-constant pixel, which wants
    s of about 6, takes thousands of steps to arrive: the paper's 1500 epochs hide that, a short run
    measures it."""

    def __init__(self, dims: int, init_rms: float | None = None):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(1, dims))
        self.init_rms = init_rms
        if init_rms is not None:
            self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        rms = x.square().mean(dim=0, keepdim=True).sqrt()
        self.log_scale.copy_(math.log(self.init_rms) - torch.log(rms.clamp_min(1e-8)))
        self.initialized.fill_(1)

    def forward(self, x, ctx=None):
        if self.init_rms is not None and self.training and not self.initialized:
            self.initialize(x)
        return x * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, y, ctx=None):
        return y * torch.exp(-self.log_scale)


def checkerboard_mask(shape: Shape, parity: int) -> torch.Tensor:
    _, h, w = shape
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((ii + jj) % 2 == parity).float().view(1, 1, h, w)


def channel_mask(shape: Shape, parity: int) -> torch.Tensor:
    c = shape[0]
    first = torch.arange(c) < (c + 1) // 2
    return (first if parity == 0 else ~first).float().view(1, c, *([1] * (len(shape) - 1)))


# ==================================================================================================
# coupling networks
# ==================================================================================================
class ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, kernel, padding=kernel // 2),
                                  nn.ReLU(), nn.Conv2d(channels, channels, kernel, padding=kernel // 2))

    def forward(self, x):
        return x + self.body(x)


def zero_init(layer: nn.Module) -> nn.Module:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def conv_net(c_in: int, hidden: int, c_out: int, spatial: int, res_blocks: int) -> nn.Module:
    """3x3 conv in, residual blocks, 1x1 conv, zero-initialised 3x3 conv out (the flow starts as the
    identity). On 1x1 inputs (points) every kernel is 1x1: the net is an MLP."""
    k = 3 if spatial > 1 else 1
    return nn.Sequential(nn.Conv2d(c_in, hidden, k, padding=k // 2), *[ResBlock(hidden, k) for _ in range(res_blocks)],
                         nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                         zero_init(nn.Conv2d(hidden, c_out, k, padding=k // 2)))


def mlp(d_in: int, hidden: int, layers: int, d_out: int) -> nn.Module:
    mods: list[nn.Module] = []
    width = d_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*mods, zero_init(nn.Linear(width, d_out)))


# ==================================================================================================
# invertible residual block (Behrmann et al. 2019)
# ==================================================================================================
class SpectralNormConv(nn.Module):
    """A convolution rescaled so its operator norm on (C, H, W) inputs is at most `coeff`:
    W <- W / max(1, sigma / coeff), sigma from power iteration on the convolution operator itself
    and its adjoint (i-ResNet sec. 3, after Gouk et al. 2018). One iteration per training pass."""

    def __init__(self, c_in: int, c_out: int, kernel: int, in_shape: Shape, coeff: float, power_iterations: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
        self.coeff, self.power_iterations = coeff, power_iterations
        self.register_buffer("u", F.normalize(torch.randn(1, *in_shape).flatten(), dim=0).view(1, *in_shape))

    def _operator(self, x, weight):
        return F.conv2d(x, weight, padding=self.conv.padding)

    @torch.no_grad()
    def power_iterate(self, iterations: int) -> None:
        u = self.u
        for _ in range(iterations):
            v = F.normalize(self._operator(u, self.conv.weight).flatten(), dim=0).view(1, -1, *u.shape[2:])
            u = F.conv_transpose2d(v, self.conv.weight, padding=self.conv.padding)
            u = F.normalize(u.flatten(), dim=0).view_as(self.u)
        self.u.copy_(u)

    def sigma(self) -> torch.Tensor:
        with torch.no_grad():
            v = F.normalize(self._operator(self.u, self.conv.weight).flatten(), dim=0)
        return torch.dot(v, self._operator(self.u, self.conv.weight).flatten())

    def normalized_weight(self) -> torch.Tensor:
        if self.training:
            self.power_iterate(self.power_iterations)
        return self.conv.weight / torch.clamp(self.sigma() / self.coeff, min=1.0)

    def forward(self, x):
        return F.conv2d(x, self.normalized_weight(), self.conv.bias, padding=self.conv.padding)


class InvertibleResidualBlock(Bijector):
    """y = x + g(x) with Lip(g) <= c < 1 (i-ResNet, Behrmann et al. 2019, Theorem 1).
    Inverse by the fixed-point iteration x <- y - g(x) (Algorithm 1); log-determinant by the
    truncated power series with Hutchinson's trace estimator (eq. 6-8, Algorithm 2):
        log|det(I + J_g)| = sum_{k>=1} (-1)^(k+1) tr(J_g^k) / k,   tr(A) = E_v[v^T A v], v ~ N(0, I)
    which is biased by the truncation; `exact_logdet` computes the full Jacobian instead."""

    def __init__(self, shape: Shape, hidden: int, coeff: float, power_iterations: int,
                 fixed_point_iterations: int = 200, tol: float = 1e-6):
        super().__init__()
        c, h, w = shape
        k = 3 if h > 1 else 1
        self.g = nn.Sequential(
            SpectralNormConv(c, hidden, k, (c, h, w), coeff, power_iterations), nn.ELU(),
            SpectralNormConv(hidden, hidden, 1, (hidden, h, w), coeff, power_iterations), nn.ELU(),
            SpectralNormConv(hidden, c, k, (hidden, h, w), coeff, power_iterations))
        self.fixed_point_iterations, self.tol = fixed_point_iterations, tol

    def forward(self, x, ctx=None):
        if ctx is None:
            raise GenbenchError("the i-ResNet log-determinant needs a FlowContext (noise generator, series terms)")
        grad_was_on = torch.is_grad_enabled()
        with torch.enable_grad():
            x_in = x if x.requires_grad else x.detach().requires_grad_(True)
            gx = self.g(x_in)
            if ctx.exact_logdet:
                logdet = exact_residual_logdet(gx, x_in, create_graph=grad_was_on and self.training)
            else:
                logdet = power_series_logdet(gx, x_in, ctx.series_terms, ctx.hutchinson_samples, ctx.generator,
                                             create_graph=grad_was_on and self.training)
        y = x_in + gx
        if not grad_was_on:
            y, logdet = y.detach(), logdet.detach()
        return y, logdet

    def inverse(self, y, ctx=None):
        x = y
        for _ in range(self.fixed_point_iterations):
            x_next = y - self.g(x)
            done = (x_next - x).abs().max() < self.tol
            x = x_next
            if done:
                break
        return x


def power_series_logdet(gx: torch.Tensor, x: torch.Tensor, terms: int, samples: int,
                        generator: torch.Generator | None, create_graph: bool) -> torch.Tensor:
    """sum_{k=1}^{terms} (-1)^(k+1)/k v^T J^k v averaged over `samples` probes v ~ N(0, I), per example;
    v^T J^k by k vector-Jacobian products (g acts on each example separately)."""
    total = x.new_zeros(x.shape[0])
    for _ in range(samples):
        v = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        w = v
        for k in range(1, terms + 1):
            w = torch.autograd.grad(gx, x, w, create_graph=create_graph, retain_graph=True)[0]
            total = total + (-1) ** (k + 1) / k * per_example_sum(w * v)
    return total / samples


def exact_residual_logdet(gx: torch.Tensor, x: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """log|det(I + J_g)| per example from the full Jacobian (D vector-Jacobian products)."""
    n, d = x.shape[0], x[0].numel()
    rows = []
    for i in range(d):
        e = torch.zeros(n, d, device=x.device, dtype=x.dtype)
        e[:, i] = 1
        rows.append(torch.autograd.grad(gx, x, e.view_as(x), create_graph=create_graph, retain_graph=True)[0]
                    .reshape(n, d))
    jac = torch.stack(rows, dim=1)  # (n, d_out, d_in)
    return torch.linalg.slogdet(torch.eye(d, dtype=x.dtype, device=x.device) + jac)[1]


# ==================================================================================================
# TARFLOW block (Zhai et al. 2024)
# ==================================================================================================
class AutoregressiveTransformerFlow(Bijector):
    """One TARFLOW block (Zhai et al. 2024, eq. 3-5): in the block's token order (reversed in every
    other block), token i is mapped by an affine transform whose parameters a causal transformer
    computes from tokens < i,
        z_i = (x_i - mu_i(x_<i)) * exp(-alpha_i(x_<i)),    log|det| = -sum_i alpha_i
    The first token has no context: mu_0 = alpha_0 = 0. The inverse runs token by token."""

    def __init__(self, seq_len: int, dim: int, width: int, depth: int, heads: int, reverse: bool):
        super().__init__()
        self.reverse = reverse
        self.embed = nn.Linear(dim, width)
        self.position = nn.Parameter(torch.randn(1, seq_len, width) * 0.02)
        self.layers = nn.ModuleList([CausalTransformerLayer(width, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.out = zero_init(nn.Linear(width, 2 * dim))

    def _params_after(self, prefix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, alpha) for tokens 1..len(prefix) from the prefix (position j predicts token j + 1)."""
        h = self.embed(prefix) + self.position[:, : prefix.shape[1]]
        for layer in self.layers:
            h = layer(h)
        mu, alpha = self.out(self.norm(h)).chunk(2, dim=-1)
        return mu, alpha

    def forward(self, x, ctx=None):
        if self.reverse:
            x = x.flip(1)
        mu, alpha = self._params_after(x[:, :-1])
        z = torch.cat([x[:, :1], (x[:, 1:] - mu) * torch.exp(-alpha)], dim=1)
        if self.reverse:
            z = z.flip(1)
        return z, -per_example_sum(alpha)

    def inverse(self, z, ctx=None):
        if self.reverse:
            z = z.flip(1)
        x = z[:, :1]
        for i in range(1, z.shape[1]):
            mu, alpha = self._params_after(x)
            x = torch.cat([x, z[:, i:i + 1] * torch.exp(alpha[:, -1:]) + mu[:, -1:]], dim=1)
        return x.flip(1) if self.reverse else x


# ==================================================================================================
# the multi-scale network and its priors
# ==================================================================================================
def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor | None = None, log_std: torch.Tensor | None = None):
    if mean is None:
        return per_example_sum(-0.5 * (z**2 + LOG_2PI))
    return per_example_sum(-0.5 * (((z - mean) * torch.exp(-log_std)) ** 2 + LOG_2PI) - log_std)


def logistic_log_prob(z: torch.Tensor) -> torch.Tensor:
    """NICE's standard logistic prior, log p(h) = -(softplus(h) + softplus(-h)) (Dinh et al. 2014, sec. 3.4)."""
    return per_example_sum(-(F.softplus(z) + F.softplus(-z)))


class Split(nn.Module):
    """Factor out the second half of the channels, z ~ N(mu(h), sigma(h)) given the kept half
    (Glow's learnt split prior, sec. 3.4 of its code release) or z ~ N(0, I) (RealNVP sec. 3.6)."""

    def __init__(self, shape: Shape, learned: bool):
        super().__init__()
        c = shape[0]
        self.keep = c - c // 2
        k = 3 if shape[1] > 1 else 1
        self.prior = zero_init(nn.Conv2d(self.keep, 2 * (c - self.keep), k, padding=k // 2)) if learned else None

    def _mean_log_std(self, h: torch.Tensor, z_shape) -> tuple[torch.Tensor, torch.Tensor]:
        if self.prior is None:
            zeros = h.new_zeros((h.shape[0], *z_shape))
            return zeros, zeros
        return self.prior(h).chunk(2, dim=1)

    def forward(self, h):
        kept, z = h[:, : self.keep], h[:, self.keep:]
        mean, log_std = self._mean_log_std(kept, z.shape[1:])
        return kept, z, gaussian_log_prob(z, mean, log_std)

    def sample(self, kept: torch.Tensor, z_shape, generator, temperature: float) -> torch.Tensor:
        mean, log_std = self._mean_log_std(kept, z_shape)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device)
        return mean + torch.exp(log_std) * temperature * eps

    def output_shape(self, shape):
        return (self.keep, *shape[1:])


class FlowNetwork(nn.Module):
    """Stages of (bijector, optional split) and a prior on the last output."""

    def __init__(self, stages: list[tuple[Bijector, Split | None]], in_shape: Shape,
                 prior: Literal["gaussian", "logistic"] = "gaussian"):
        super().__init__()
        self.bijectors = nn.ModuleList([b for b, _ in stages])
        self.splits = nn.ModuleList([s if s is not None else nn.Identity() for _, s in stages])
        self.prior = prior
        self.shapes = []  # (shape after bijector, shape of the factored-out z or None) per stage
        shape = tuple(in_shape)
        for bij, split in stages:
            shape = bij.output_shape(shape)
            if split is not None:
                z_shape = (shape[0] - split.keep, *shape[1:])
                shape = split.output_shape(shape)
                self.shapes.append(z_shape)
            else:
                self.shapes.append(None)
        self.top_shape = shape

    def _stages(self):
        return zip(self.bijectors, self.splits, self.shapes)

    def forward_latents(self, y, ctx=None) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """All latents (factored-out z's, then the top), log p_Z of them, and the total log|det|."""
        latents, log_pz, logdet = [], y.new_zeros(y.shape[0]), y.new_zeros(y.shape[0])
        h = y
        for bij, split, z_shape in self._stages():
            h, ld = bij(h, ctx)
            logdet = logdet + ld
            if z_shape is not None:
                h, z, lp = split(h)
                latents.append(z)
                log_pz = log_pz + lp
        latents.append(h)
        log_pz = log_pz + (gaussian_log_prob(h) if self.prior == "gaussian" else logistic_log_prob(h))
        return latents, log_pz, logdet

    def log_prob(self, y, ctx=None) -> torch.Tensor:
        _, log_pz, logdet = self.forward_latents(y, ctx)
        return log_pz + logdet

    def inverse_latents(self, latents: list[torch.Tensor], ctx=None) -> torch.Tensor:
        factored = iter(reversed(latents[:-1]))
        h = latents[-1]
        for bij, split, z_shape in reversed(list(self._stages())):
            if z_shape is not None:
                h = torch.cat([h, next(factored)], dim=1)
            h = bij.inverse(h, ctx)
        return h

    def sample(self, n: int, generator, temperature: float, ctx=None, device=None) -> torch.Tensor:
        if self.prior == "gaussian":
            h = temperature * torch.randn((n, *self.top_shape), generator=generator, device=device)
        else:
            u = torch.rand((n, *self.top_shape), generator=generator, device=device).clamp(1e-6, 1 - 1e-6)
            h = temperature * (torch.log(u) - torch.log1p(-u))
        for bij, split, z_shape in reversed(list(self._stages())):
            if z_shape is not None:
                h = torch.cat([h, split.sample(h, z_shape, generator, temperature)], dim=1)
            h = bij.inverse(h, ctx)
        return h


# ==================================================================================================
# the registered models
# ==================================================================================================
class Flow(GenerativeModel):
    """Shared training, sampling and likelihood of every flow. Subclasses build `self.network`.

    Images: y = dequantize(x) in [0, 1); loss = -E log p(y) in bits/dim of the discrete data
    (log p(y) - D log 256, see genbench.metrics.likelihood). Points: the density of the raw
    coordinates, loss in nats/dim."""

    likelihood_kinds = ("exact",)

    def __init__(self, config, data_shape: Shape):
        super().__init__(config, data_shape)
        self.points = len(data_shape) == 1
        self.event_shape: Shape = (data_shape[0], 1, 1) if self.points else tuple(data_shape)
        self.num_dims = math.prod(data_shape)
        stages, prior = self.build(self.event_shape)
        if not self.points:
            stages = [(preprocessing(config.preprocess, config.logit_alpha), None)] + stages
        self.network = FlowNetwork(stages, self.event_shape, prior)

    def build(self, shape: Shape) -> tuple[list[tuple[Bijector, Split | None]], str]:
        raise NotImplementedError

    def context(self, generator: torch.Generator | None) -> FlowContext:
        return FlowContext(generator=generator)

    def model_input(self, x: torch.Tensor, generator) -> torch.Tensor:
        if self.points:
            return x.float().view(-1, *self.event_shape)
        return dequantize(x, generator)

    def log_likelihood_of_input(self, y: torch.Tensor, ctx: FlowContext) -> torch.Tensor:
        """log p(y) of the model input, in nats; for images minus D log 256 (of the discrete data)."""
        lp = self.network.log_prob(y, ctx)
        return lp if self.points else lp - self.num_dims * LOG_NUM_BINS

    def training_input(self, x: torch.Tensor, generator) -> torch.Tensor:
        return self.model_input(x, generator)

    def training_step(self, x, step, opt: Optimization, generator):
        ll = self.log_likelihood_of_input(self.training_input(x, generator), self.context(generator))
        per_dim = -ll.mean() / self.num_dims
        loss = per_dim if self.points else per_dim / math.log(2)
        opt.step("model", loss)
        return {"loss": loss.detach(), ("nats_per_dim" if self.points else "bits_per_dim"): loss.detach()}

    @torch.no_grad()
    def validation_loss(self, x, generator):
        return -self.log_likelihood_of_input(self.model_input(x, generator), self.context(generator))

    @torch.no_grad()
    def sample_at_temperature(self, n: int, generator, temperature: float) -> torch.Tensor:
        y = self.network.sample(n, generator, temperature, self.context(generator), device=self.device)
        return self.from_model_input(y)

    def from_model_input(self, y: torch.Tensor) -> torch.Tensor:
        if self.points:
            return y.reshape(y.shape[0], *self.data_shape)
        # y in [0, 1): the bin of x is [x/256, (x+1)/256)
        return torch.floor(y * 256).clamp(0, 255).to(torch.uint8)

    @torch.no_grad()
    def sample(self, n, generator):
        return self.sample_at_temperature(n, generator, getattr(self.config, "temperature", 1.0))

    @torch.no_grad()
    def log_likelihood(self, x, kind, generator, **_):
        if kind not in self.likelihood_kinds:
            return super().log_likelihood(x, kind, generator)
        return self.log_likelihood_of_input(self.model_input(x, generator), self.context(generator))


@dataclass
class NICEConfig:
    coupling_layers: int = 4
    hidden_units: int = 1000
    hidden_layers: int = 5
    prior: Literal["logistic", "gaussian"] = "logistic"
    preprocess: Preprocess = "none"   # NICE models the dequantized data rescaled to [0, 1]
    logit_alpha: float = 0.05
    scale_init: Literal["zero", "data"] = "zero"   # data: the scaling starts at the prior's spread (see DiagonalScaling)


@register_model("nice", config=NICEConfig, data_kinds=("image", "points"),
                paper="Dinh, Krueger & Bengio 2014, NICE: Non-linear Independent Components Estimation")
class NICE(Flow):
    """Additive couplings on alternating halves (odd/even coordinates) of the flattened input, each
    coupling function an MLP (eq. 7), then a diagonal scaling (sec. 3.3); logistic prior (sec. 3.4).
    log|det| = sum of the log-scales: the couplings are volume preserving."""

    def build(self, shape):
        c = self.config
        d = math.prod(shape)
        layers: list[Bijector] = [Flatten(shape)]
        for i in range(c.coupling_layers):
            mask = (torch.arange(d) % 2 == i % 2).float().view(1, d)
            layers.append(Coupling(mask, mlp(d, c.hidden_units, c.hidden_layers, d), "additive"))
        prior_std = math.pi / math.sqrt(3) if c.prior == "logistic" else 1.0
        layers.append(DiagonalScaling(d, prior_std if c.scale_init == "data" else None))
        return [(Chain(layers), None)], c.prior


@dataclass
class RealNVPConfig:
    levels: int = 2                 # scales; each but the last factors out half the dimensions
    hidden_channels: int = 64
    res_blocks: int = 2             # residual blocks in each coupling network
    point_couplings: int = 6        # on 2-D points (no spatial structure): channel couplings only
    preprocess: Preprocess = "logit"
    logit_alpha: float = 0.05


@register_model("realnvp", config=RealNVPConfig, data_kinds=("image", "points"),
                paper="Dinh, Sohl-Dickstein & Bengio 2016, Density estimation using Real NVP")
class RealNVP(Flow):
    """Affine couplings (eq. 6-9, scale = a learnt factor times tanh) in the multi-scale architecture
    of sec. 3.6: per scale 3 checkerboard couplings, squeeze, 3 channel-wise couplings, then half the
    channels are factored out to N(0, I); the last scale has 4 checkerboard couplings. Normalisation:
    an ActNorm after each coupling instead of the paper's batch normalisation (sec. 3.7): the same
    per-channel affine with an exact Jacobian, but no batch statistics, so a test example's
    likelihood does not depend on its batch."""

    def build(self, shape):
        c = self.config
        stages = []

        def coupling(mask, shp):
            return [Coupling(mask, conv_net(shp[0], c.hidden_channels, 2 * shp[0], shp[1], c.res_blocks), "tanh"),
                    ActNorm(shp[0])]

        if shape[1] == 1:  # points
            layers = [m for i in range(c.point_couplings) for m in coupling(channel_mask(shape, i % 2), shape)]
            return [(Chain(layers), None)], "gaussian"
        for level in range(c.levels):
            last = level == c.levels - 1
            layers = [m for i in range(4 if last else 3) for m in coupling(checkerboard_mask(shape, i % 2), shape)]
            if not last:
                layers.append(Squeeze())
                shape = Squeeze().output_shape(shape)
                layers += [m for i in range(3) for m in coupling(channel_mask(shape, i % 2), shape)]
            split = None if last else Split(shape, learned=False)
            stages.append((Chain(layers), split))
            if split is not None:
                shape = split.output_shape(shape)
        return stages, "gaussian"


@dataclass
class GlowConfig:
    levels: int = 2                 # L; each level starts with a squeeze
    steps_per_level: int = 8        # K steps of (actnorm, invertible 1x1 conv, affine coupling)
    hidden_channels: int = 128
    res_blocks: int = 0
    learned_split_prior: bool = True
    temperature: float = 1.0        # sampling temperature T (sec. 5, Fig. 8)
    sweep_temperatures: list[float] = field(default_factory=lambda: [0.0, 0.5, 0.7, 0.85, 1.0])
    preprocess: Preprocess = "shift"  # Glow models y - 1/2
    logit_alpha: float = 0.05
    invconv: InvConv = "lu"         # W of the 1x1 convolution: LU (eq. 10), plain (eq. 9) or exp(A)


@register_model("glow", config=GlowConfig, data_kinds=("image", "points"),
                paper="Kingma & Dhariwal 2018, Glow: Generative Flow with Invertible 1x1 Convolutions")
class Glow(Flow):
    """Multi-scale (L levels: squeeze, K flow steps, split with a learnt prior) of the step
    actnorm -> invertible 1x1 conv -> affine coupling (Table 1). Samples at temperature T scale
    every prior's standard deviation. `invconv` chooses the 1x1 convolution's W: "lu" (the paper's LU
    form, eq. 10; the default), "plain" (a full matrix, log|det W| by slogdet, eq. 9) or "exp"
    (W = exp(A), log|det W| = tr A, inverse exp(-A); see ExpConv1x1)."""

    def build(self, shape):
        c = self.config
        stages = []
        levels = 1 if shape[1] == 1 else c.levels
        for level in range(levels):
            layers: list[Bijector] = []
            if shape[1] > 1:
                layers.append(Squeeze())
                shape = Squeeze().output_shape(shape)
            for _ in range(c.steps_per_level):
                layers += [ActNorm(shape[0]), CONV_1X1[c.invconv](shape[0]),
                           Coupling(channel_mask(shape, 0),
                                    conv_net(shape[0], c.hidden_channels, 2 * shape[0], shape[1], c.res_blocks),
                                    "sigmoid")]
            split = Split(shape, c.learned_split_prior) if level < levels - 1 else None
            stages.append((Chain(layers), split))
            if split is not None:
                shape = split.output_shape(shape)
        return stages, "gaussian"


@dataclass
class IResNetConfig:
    levels: int = 2                 # each level: squeeze, then blocks; no dimension is factored out
    blocks_per_level: int = 4
    hidden_channels: int = 64
    lipschitz_coeff: float = 0.9    # c < 1 of the spectral normalisation
    power_iterations: int = 1       # per training pass
    series_terms_train: int = 5     # truncation n of the log-det power series while training
    series_terms_eval: int = 20     # ... at evaluation (the reported `estimate`)
    hutchinson_samples_eval: int = 4
    fixed_point_iterations: int = 200
    preprocess: Preprocess = "shift"
    logit_alpha: float = 0.05
    # at most this many of the test examples the evaluation gives the log-det truncation study (full
    # Jacobians; None: all it gives, 64 points or 8 images)
    logdet_study_examples: int | None = None


@register_model("iresnet", config=IResNetConfig, data_kinds=("image", "points"),
                paper="Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen 2019, Invertible Residual Networks")
class IResNet(Flow):
    """Invertible residual blocks with ActNorm between them (as the paper's image models), squeezes
    for downsampling, N(0, I) prior. The likelihood is an estimate: the log-determinant's power
    series truncated at `series_terms_eval` terms with `hutchinson_samples_eval` probes."""

    likelihood_kinds = ("estimate",)

    def build(self, shape):
        c = self.config
        if c.logdet_study_examples is not None and c.logdet_study_examples < 1:
            raise GenbenchError(f"model_config.logdet_study_examples must be >= 1 (or null), got {c.logdet_study_examples}")
        levels = 1 if shape[1] == 1 else c.levels
        stages = []
        for _ in range(levels):
            layers: list[Bijector] = []
            if shape[1] > 1:
                layers.append(Squeeze())
                shape = Squeeze().output_shape(shape)
            for _ in range(c.blocks_per_level):
                layers += [ActNorm(shape[0]), InvertibleResidualBlock(
                    shape, c.hidden_channels, c.lipschitz_coeff, c.power_iterations, c.fixed_point_iterations)]
            stages.append((Chain(layers), None))
        return stages, "gaussian"

    def context(self, generator):
        c = self.config
        if self.training:
            return FlowContext(generator, series_terms=c.series_terms_train, hutchinson_samples=1)
        return FlowContext(generator, series_terms=c.series_terms_eval, hutchinson_samples=c.hutchinson_samples_eval)

    @torch.no_grad()
    def validation_loss(self, x, generator):
        """Checkpoint selection uses the cheap training estimator (series_terms_train, one probe): the
        same truncation bias for every checkpoint compared."""
        ctx = FlowContext(generator, series_terms=self.config.series_terms_train, hutchinson_samples=1)
        return -self.log_likelihood_of_input(self.model_input(x, generator), ctx)

    @torch.no_grad()
    def logdet_truncation_study(self, x: torch.Tensor, terms: tuple[int, ...], generator: torch.Generator
                                ) -> list[dict[str, Any]]:
        """How truncating the log-det power series at n terms biases the estimate, on the examples x
        (Behrmann et al. 2019, sec. 3.2: Theorem 3 bounds the error by -d (ln(1 - Lip g) + sum_{k<=n} Lip(g)^k / k),
        which falls with n). Exact, in float64 on a copy of the model: each block's full Jacobian J of g at
        its input gives
          truncation bias(n) = sum_{k<=n} (-1)^(k+1) tr(J^k) / k - log det(I + J)     (summed over blocks)
          Hutchinson std(n)  = sqrt(sum over blocks of 2 ||sym(A_n)||_F^2),  A_n = sum_{k<=n} (-1)^(k+1) J^k / k
        (the spread of v^T A_n v for one Gaussian probe v per block). Per n: the mean and standard error
        over the examples of the bias and of its absolute value."""
        x = x[: self.config.logdet_study_examples]   # None: all of them
        model = copy.deepcopy(self).double().eval()
        inputs: list[tuple[InvertibleResidualBlock, torch.Tensor]] = []
        hooks = [m.register_forward_hook(lambda mod, args, out: inputs.append((mod, args[0].detach())))
                 for m in model.modules() if isinstance(m, InvertibleResidualBlock)]
        try:
            model.network.log_prob(model.model_input(x, generator).double(), FlowContext(generator, series_terms=1))
        finally:
            for h in hooks:
                h.remove()
        n_max, count = max(terms), len(x)
        bias = {n: torch.zeros(count, dtype=torch.float64) for n in terms}
        var = {n: torch.zeros(count, dtype=torch.float64) for n in terms}
        exact_total = torch.zeros(count, dtype=torch.float64)
        for block, h in inputs:
            for i, hi in enumerate(h):
                with torch.enable_grad():
                    jac = torch.autograd.functional.jacobian(lambda v: block.g(v.unsqueeze(0)).flatten(), hi,
                                                             vectorize=True)
                jac = jac.reshape(jac.shape[0], -1).cpu()
                exact = torch.linalg.slogdet(torch.eye(len(jac), dtype=jac.dtype) + jac)[1]
                exact_total[i] += exact
                power, series = torch.eye(len(jac), dtype=jac.dtype), torch.zeros_like(jac)
                for k in range(1, n_max + 1):
                    power = power @ jac
                    series = series + (-1) ** (k + 1) / k * power
                    if k in bias:
                        bias[k][i] += torch.trace(series) - exact
                        var[k][i] += 2 * ((series + series.T) / 2).pow(2).sum()

        def mean_stderr(v: torch.Tensor) -> tuple[float, float]:
            return float(v.mean()), float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")

        rows = []
        for n in terms:
            (b, b_se), (a, a_se) = mean_stderr(bias[n]), mean_stderr(bias[n].abs())
            rows.append({"terms": n, "truncation_bias": b, "truncation_bias_stderr": b_se,
                         "abs_truncation_bias": a, "abs_truncation_bias_stderr": a_se,
                         "hutchinson_std_one_probe": float(var[n].sqrt().mean()),
                         "exact_logdet_mean": float(exact_total.mean()), "examples": count,
                         "blocks": len({id(b) for b, _ in inputs}), "dims_per_block": int(inputs[0][1][0].numel())})
        return rows


@dataclass
class TARFlowConfig:
    patch_size: int = 4
    blocks: int = 4                 # autoregressive flow blocks, alternating token order
    width: int = 128                # transformer channels
    layers_per_block: int = 2
    heads: int = 4
    noise_std: float = 0.05         # Gaussian noise augmentation, in the [-1, 1] pixel scale (sec. 2.4)
    denoise: bool = True            # one score-based denoising step after sampling (sec. 2.5)
    temperature: float = 1.0
    preprocess: Preprocess = "signed"  # the paper's [-1, 1] pixels
    logit_alpha: float = 0.05


@register_model("tarflow", config=TARFlowConfig, data_kinds=("image", "points"),
                paper="Zhai et al. 2024, Normalizing Flows are Capable Generative Models (TARFLOW)")
class TARFlow(Flow):
    """Patches -> `blocks` transformer autoregressive flows with alternating order -> N(0, I).
    Training data carry Gaussian noise of std sigma (in [-1, 1] units, sigma / 2 on y in [0, 1));
    samples are denoised with one step of Tweedie's formula, y <- y + (sigma/2)^2 grad_y log p(y)
    (sec. 2.5). The reported likelihood is that of the noise-trained model on uniformly
    dequantized test data (a valid bound, looser than a model trained for likelihood)."""

    def build(self, shape):
        c = self.config
        patch = PatchifyTo(c.patch_size, shape)
        seq_len, dim = patch.output_shape(shape)
        blocks = [AutoregressiveTransformerFlow(seq_len, dim, c.width, c.layers_per_block, c.heads, reverse=i % 2 == 1)
                  for i in range(c.blocks)]
        return [(Chain([patch, *blocks]), None)], "gaussian"

    def _noise_scale(self) -> float:
        """sigma in the model-input space (y in [0, 1) for images: half the [-1, 1] value)."""
        return self.config.noise_std if self.points else self.config.noise_std / 2

    def training_input(self, x, generator):
        y = self.model_input(x, generator)
        noise = torch.randn(y.shape, generator=generator, device=y.device)
        return y + self._noise_scale() * noise

    @torch.no_grad()
    def sample_at_temperature(self, n, generator, temperature):
        return self.draw(n, generator, temperature, denoise=self.config.denoise)

    def sample_variants(self, hubness) -> dict[str, SamplerVariant]:
        """Sec. 2.5's claim as a row of its own: the same draws (same sampling seed) without the
        denoising step, when the main sampler denoises."""
        if not (self.config.denoise and self.config.noise_std > 0):
            return {}
        return {"no-denoise": SamplerVariant(
            lambda n, g: (self.draw(n, g, self.config.temperature, denoise=False), {}), info={"denoise": False})}

    @torch.no_grad()
    def draw(self, n, generator, temperature, denoise: bool):
        ctx = self.context(generator)
        y = self.network.sample(n, generator, temperature, ctx, device=self.device)
        if denoise and self.config.noise_std > 0:
            with torch.enable_grad():
                y = y.detach().requires_grad_(True)
                score = torch.autograd.grad(self.network.log_prob(y, ctx).sum(), y)[0]
            y = (y + self._noise_scale() ** 2 * score).detach()
        if not self.points:
            y = y.clamp(0.0, 1.0 - 1e-6)
        return self.from_model_input(y)
