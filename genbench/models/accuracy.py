"""Training for accuracy: classification objectives as a model family (supervised; `task_data` marks it).

Every objective scores the same small network's outputs s = mu(x) (an MLP for 8 x 8 digits, a small CNN
for 28 x 28 images) and defines the predictive distribution its test cross-entropy and calibration are
measured with. The trainer hands these models (inputs, targets) batches; the checkpoint kept is the one
with the lowest validation error; `genbench score` picks the learning rate on validation too.

==================================================================================================
The argmax-of-noise construction of discrete distributions — Su, "从重参数的角度看离散概率分布的构建"
==================================================================================================
For scores mu and i.i.d. noise eps_j with density f and CDF F, the class argmax_j (mu_j + eps_j) has

    p_i = P(argmax_j (mu_j + eps_j) = i) = integral f(t) prod_{j != i} F(t + mu_i - mu_j) dt,

non-negative, summing to one, and ordered as mu is. Gumbel noise gives softmax(mu) in closed form;
Gaussian noise (EXACT's case) and logistic noise are integrated here by the trapezoid rule in log space
on a per-example grid that covers the integrand's mass (`log_argmax_prob`). Each law is an output layer
with loss -log p_y (`gaussian-nll`, `logistic-nll`; `cross-entropy` is the Gumbel one).

==================================================================================================
Objectives
==================================================================================================
cross-entropy     -log softmax(s)_y
hinge             Crammer & Singer 2001, "On the algorithmic implementation of multiclass kernel-based
                  vector machines": max(0, 1 + max_{j != y} s_j - s_y)   (predictive: softmax(s), stated)
gumbel-accuracy   1 - P(argmax(s + g) = y) = 1 - softmax(s)_y with Gumbel g: the expected accuracy of a
                  Gumbel-noise classifier, maximised directly (Su, "How to train your accuracy?")
exact             Karpukhin, Dereka & Kolesnikov 2022, "EXACT: How to Train Your Accuracy": the expected
                  accuracy of the stochastic classifier argmax(mu + sigma eps), eps ~ N(0, I), is the orthant
                  probability P(z > 0), z ~ N(Delta / sigma, I + 1 1^T), Delta_j = min(mu_y - mu_j, r) for
                  j != y (r: the margin, which clips the gaps from above, as in the authors' code). Here it
                  is computed exactly as the 1-D integral (condition on eps_y)
                      P = integral phi(t) prod_{j != y} Phi(t + Delta_j / sigma) dt,
                  and its gradient is the paper's (the marginal density times the conditional orthant
                  probability of the others) on the same quadrature:
                      dP/dDelta_k = (1/sigma) integral phi(t) phi(t + Delta_k/sigma) prod_{j != y,k} Phi(t + Delta_j/sigma) dt
                  (the paper estimates both with Genz's algorithm from 16 quasi-random draws). As in the
                  authors' code: the logits of a batch are standardised by one scalar mean and std (no
                  affine, running statistics at evaluation), sigma decays log-linearly from `start_sigma`
                  (variance 100) to `end_sigma` (variance 1) over `sigma_steps` steps (they step it per epoch),
                  and every gradient is divided by a moving average (momentum 0.9, floor 0.01) of the
                  gradients' global norm instead of clipping it.
gaussian-nll /    -log p_y of the argmax-of-noise layer with Gaussian / logistic noise.
logistic-nll

==================================================================================================
Multi-label: Su, "将“softmax+交叉熵”推广到多标签分类问题" (multilabel softmax cross-entropy)
==================================================================================================
    L = log(1 + sum_{i in neg} e^{s_i}) + log(1 + sum_{j in pos} e^{-s_j}),   predict i when s_i > 0,
against per-label binary cross-entropy (predict when sigmoid(s_i) > 1/2, the same threshold). The task:
MNIST composites on a 2 x 2 canvas holding 1-4 distinct digits (`composite_task`), drawn once per split
from a fixed seed, the same for every loss and training seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genbench import GenbenchError
from genbench.models import GenerativeModel, Optimization, register_model
from genbench.models.nn import labelled_split

# --------------------------------------------------------------------------------------------------
# The argmax-of-noise construction
# --------------------------------------------------------------------------------------------------
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class NoiseLaw:
    """A noise law by its log-density and log-CDF; the grid spans [low, high] around the integrand."""

    name: str
    log_pdf: Callable[[torch.Tensor], torch.Tensor]
    log_cdf: Callable[[torch.Tensor], torch.Tensor]
    low: float
    high: float


NOISE_LAWS = {
    "gaussian": NoiseLaw("gaussian", lambda t: -0.5 * t * t - LOG_SQRT_2PI, torch.special.log_ndtr, -9.0, 9.0),
    "logistic": NoiseLaw("logistic", lambda t: -t - 2 * F.softplus(-t), lambda t: -F.softplus(-t), -40.0, 40.0),
    "gumbel": NoiseLaw("gumbel", lambda t: -t - torch.exp(-t), lambda t: -torch.exp(-t), -6.0, 40.0),
}
QUADRATURE_NODES = 257


def log_orthant(gap: torch.Tensor, others: torch.Tensor, law: NoiseLaw | str,
                nodes: int = QUADRATURE_NODES) -> torch.Tensor:
    """log integral f(t) prod_{j in others} F(t + gap_j) dt per row (B, C gaps, boolean mask of the j that
    count), by the trapezoid rule in log space. A row's grid runs from law.low to law.high + m,
    m = max_j (-gap_j, 0): the integrand's mass lies where no t + gap_j is far below zero."""
    law = NOISE_LAWS[law] if isinstance(law, str) else law
    deficit = (-gap).masked_fill(~others, 0.0).clamp(min=0).amax(dim=1)    # m, (B,)
    frac = torch.linspace(0.0, 1.0, nodes, dtype=gap.dtype, device=gap.device)
    span = law.high - law.low + deficit                                     # (B,)
    t = law.low + span[:, None] * frac                                      # (B, K)
    log_cdf = law.log_cdf(t[:, :, None] + gap[:, None, :])                  # (B, K, C)
    log_integrand = law.log_pdf(t) + log_cdf.masked_fill(~others[:, None, :], 0.0).sum(dim=2)
    log_w = torch.zeros(nodes, dtype=gap.dtype, device=gap.device)
    log_w[0] = log_w[-1] = -math.log(2.0)                                   # trapezoid end weights
    return torch.logsumexp(log_integrand + log_w, dim=1) + torch.log(span / (nodes - 1))


def target_gaps(scores: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(s_y - s_j for every j, mask of j != y)."""
    gap = scores.gather(1, target[:, None]) - scores
    return gap, torch.ones_like(gap, dtype=torch.bool).scatter_(1, target[:, None], False)


def log_argmax_prob(scores: torch.Tensor, target: torch.Tensor, law: NoiseLaw | str,
                    nodes: int = QUADRATURE_NODES) -> torch.Tensor:
    """log P(argmax_j (s_j + eps_j) = target) per row, eps_j i.i.d. from `law`."""
    return log_orthant(*target_gaps(scores, target), law, nodes)


def argmax_probs(scores: torch.Tensor, law: NoiseLaw | str, nodes: int = QUADRATURE_NODES) -> torch.Tensor:
    """The whole distribution p (B, C) of the argmax-of-noise construction (Gumbel: softmax, exactly)."""
    name = law if isinstance(law, str) else law.name
    if name == "gumbel":
        return scores.softmax(dim=1)
    rows = [log_argmax_prob(scores, torch.full((len(scores),), i, dtype=torch.long, device=scores.device), law,
                            nodes) for i in range(scores.shape[1])]
    return torch.stack(rows, dim=1).exp()


# --------------------------------------------------------------------------------------------------
# Objectives (per-example losses of scores s and labels y)
# --------------------------------------------------------------------------------------------------
OBJECTIVES = ("cross-entropy", "hinge", "gumbel-accuracy", "exact", "gaussian-nll", "logistic-nll")


def hinge_loss(scores: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Crammer & Singer's multiclass hinge: max(0, margin + max_{j != y} s_j - s_y)."""
    true = scores.gather(1, target[:, None]).squeeze(1)
    rival = scores.scatter(1, target[:, None], float("-inf")).amax(dim=1)
    return F.relu(margin + rival - true)


def expected_accuracy(scores: torch.Tensor, target: torch.Tensor, sigma: float,
                      margin: float | None = None) -> torch.Tensor:
    """EXACT's P(argmax(s + sigma eps) = y), eps ~ N(0, I), with the gaps s_y - s_j clipped from above
    at the margin r (a pair separated by more than r no longer moves the objective)."""
    gap, others = target_gaps(scores, target)
    if margin is not None:
        gap = gap.clamp(max=margin)
    return log_orthant(gap / sigma, others, "gaussian").exp()


def multilabel_softmax_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Su's multi-label softmax cross-entropy: log(1 + sum_neg e^{s_i}) + log(1 + sum_pos e^{-s_j})."""
    pos = targets.bool()
    zero = torch.zeros_like(scores[:, :1])
    neg_part = torch.cat([zero, scores.masked_fill(pos, float("-inf"))], dim=1).logsumexp(dim=1)
    pos_part = torch.cat([zero, (-scores).masked_fill(~pos, float("-inf"))], dim=1).logsumexp(dim=1)
    return neg_part + pos_part


# --------------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------------
def build_network(kind: str, data_shape: tuple[int, ...], outputs: int, width: int) -> nn.Module:
    """`mlp`: two hidden ReLU layers of `width`; `cnn`: conv(3x3)-ReLU-maxpool blocks of width, 2 x width, ...
    until the side is 7 or less, then a ReLU layer of 2 x width units."""
    c, h, w = data_shape
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                             nn.Linear(width, outputs))
    layers, channels, side, out = [], c, h, width
    while side > 7:
        layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        channels, side, out = out, side // 2, min(2 * out, 2 * width)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * side * side, 2 * width), nn.ReLU(),
                         nn.Linear(2 * width, outputs))


class SupervisedModel(GenerativeModel):
    """Base of the supervised models: scores of uint8 inputs scaled to [0, 1]; no samples, no likelihood."""

    checkpoint_selection = "validation"

    def __init__(self, config, data_shape: tuple[int, ...]):
        super().__init__(config, data_shape)
        self.net = build_network(config.network, self.input_shape(data_shape), config.classes, config.width)

    def input_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(data_shape)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 255.0)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raise GenbenchError(f"{type(self).__name__} is a classifier: it draws no samples (its runs have a score "
                            f"stage, not sample/evaluate)")


# --------------------------------------------------------------------------------------------------
# Single-label classification under every objective
# --------------------------------------------------------------------------------------------------
@dataclass
class ClassifyConfig:
    objective: Literal["cross-entropy", "hinge", "gumbel-accuracy", "exact", "gaussian-nll", "logistic-nll"] = \
        "cross-entropy"
    network: Literal["mlp", "cnn"] = "mlp"
    width: int = 128
    classes: int = 10
    # EXACT (Karpukhin et al. 2022): sigma's schedule, the margin r, per-batch gradient normalisation
    start_sigma: float = 10.0   # variance 100, the authors' start
    end_sigma: float = 1.0      # variance 1, their tuned minimum
    sigma_steps: int = 1000     # set to the run's training steps
    margin: float | None = 0.5  # their MNIST / CIFAR-10 value (None: no clipping)
    normalize_grad: bool = True


@register_model("classify", config=ClassifyConfig, data_kinds=("image",),
                paper="cross-entropy; Crammer & Singer 2001 (hinge); Su (Gumbel expected accuracy, argmax-of-noise "
                      "layers); Karpukhin et al. 2022 (EXACT)")
class Classifier(SupervisedModel):
    def __init__(self, config: ClassifyConfig, data_shape: tuple[int, ...]):
        super().__init__(config, data_shape)
        if config.objective == "exact":
            # the batch's logits standardised by one scalar mean and std (no affine: sigma alone sets the scale)
            self.score_norm = nn.BatchNorm1d(1, affine=False)
            # the moving average of the gradient norm (EXACT's normaliser), saved and resumed with the weights
            self.register_buffer("grad_norm_average", torch.tensor(float("nan")))
        else:
            self.score_norm = None

    def task_data(self, x: torch.Tensor, y: torch.Tensor, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        return labelled_split(x, y, self.config.classes, split)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        s = super().scores(x)
        return s if self.score_norm is None else self.score_norm(s.reshape(-1, 1)).view_as(s)

    def sigma(self, step: int) -> float:
        """EXACT's sigma at a training step: log-linear from start_sigma to end_sigma over sigma_steps."""
        c = self.config
        frac = min(step / max(c.sigma_steps, 1), 1.0)
        return math.exp((1 - frac) * math.log(c.start_sigma) + frac * math.log(c.end_sigma))

    def objective_loss(self, s: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        objective = self.config.objective
        if objective == "cross-entropy":
            return F.cross_entropy(s, y, reduction="none")
        if objective == "hinge":
            return hinge_loss(s, y)
        if objective == "gumbel-accuracy":
            return 1.0 - s.softmax(dim=1).gather(1, y[:, None]).squeeze(1)
        if objective == "exact":
            return 1.0 - expected_accuracy(s, y, self.sigma(step), self.config.margin)
        return -log_argmax_prob(s, y, objective.removesuffix("-nll"))

    def training_step(self, batch, step: int, opt: Optimization, generator: torch.Generator) -> dict[str, torch.Tensor]:
        x, y = batch
        s = self.scores(x)
        loss = self.objective_loss(s, y, step).mean()
        if self.config.objective == "exact" and self.config.normalize_grad:
            self.normalized_step(opt, loss)
        else:
            opt.step("model", loss)
        out = {"loss": loss.detach(), "train_error": (s.argmax(dim=1) != y).float().mean().detach()}
        if self.config.objective == "exact":
            out["sigma"] = torch.tensor(self.sigma(step))
        return out

    @torch.no_grad()
    def validation_loss(self, batch, generator: torch.Generator) -> torch.Tensor:
        x, y = batch
        return (self.scores(x).argmax(dim=1) != y).float()

    def normalized_step(self, opt: Optimization, loss: torch.Tensor, momentum: float = 0.9, floor: float = 0.01) -> None:
        """EXACT's gradient normalisation: every gradient divided by a moving average of the global
        gradient norm (initialised to the first norm, floored at 0.01), in place of clipping."""
        optimizer = opt.optimizers["model"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        average = self.grad_norm_average
        average.copy_(norm if torch.isnan(average) else momentum * average + (1 - momentum) * norm)
        scale = average.clamp(min=floor)
        for p in params:
            p.grad.div_(scale)
        optimizer.step()

    @torch.no_grad()
    def predictive(self, s: torch.Tensor) -> torch.Tensor:
        """The class probabilities the objective's own model assigns (test cross-entropy, calibration)."""
        objective = self.config.objective
        if objective == "exact":
            return argmax_probs(s / self.config.end_sigma, "gaussian")
        if objective in ("gaussian-nll", "logistic-nll"):
            return argmax_probs(s, objective.removesuffix("-nll"))
        return s.softmax(dim=1)  # CE, Gumbel expected accuracy; hinge has none of its own: softmax, stated


# --------------------------------------------------------------------------------------------------
# Multi-label classification: MNIST composites
# --------------------------------------------------------------------------------------------------
def composite_task(x: torch.Tensor, y: torch.Tensor, *, seed: int, max_digits: int, classes: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """As many composites as images: a 2 x 2 canvas of the images' size x 2, holding k ~ U{1..max_digits}
    distinct digits (classes drawn without replacement, one random image of each, in random cells; empty
    cells black); targets are the multi-hot class sets. A pure function of (x, y, seed)."""
    rng = np.random.default_rng(seed)
    n, c, h, w = x.shape
    labels = y.numpy()
    by_class = [np.flatnonzero(labels == k) for k in range(classes)]
    present = [k for k in range(classes) if len(by_class[k])]
    canvas = torch.zeros((n, c, 2 * h, 2 * w), dtype=x.dtype)
    targets = torch.zeros((n, classes), dtype=torch.float32)
    for i in range(n):
        k = int(rng.integers(1, min(max_digits, len(present)) + 1))
        chosen = rng.choice(present, size=k, replace=False)
        cells = rng.permutation(4)[:k]
        for cls, cell in zip(chosen, cells):
            src = by_class[cls][rng.integers(len(by_class[cls]))]
            r, q = divmod(int(cell), 2)
            canvas[i, :, r * h:(r + 1) * h, q * w:(q + 1) * w] = x[src]
            targets[i, cls] = 1.0
    return canvas, targets


SPLIT_OFFSETS = {"train": 0, "val": 1, "test": 2}


@dataclass
class MultilabelConfig:
    loss: Literal["softmax-multilabel", "binary-cross-entropy"] = "softmax-multilabel"
    network: Literal["mlp", "cnn"] = "cnn"
    width: int = 16
    classes: int = 10
    max_digits: int = 4
    task_seed: int = 0  # the composites (the same for every loss and training seed)


@register_model("multilabel", config=MultilabelConfig, data_kinds=("image",),
                paper="Su, 将“softmax+交叉熵”推广到多标签分类问题 (multilabel softmax CE) vs per-label BCE")
class MultilabelClassifier(SupervisedModel):
    def input_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = data_shape
        return (c, 2 * h, 2 * w)

    def task_data(self, x: torch.Tensor, y: torch.Tensor, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        if not 1 <= cfg.max_digits <= 4:
            raise GenbenchError(f"model_config.max_digits must be 1..4 (the 2 x 2 canvas), got {cfg.max_digits}")
        bad = (y < 0) | (y >= cfg.classes)
        if bool(bad.any()):
            raise GenbenchError(f"the {split} split holds label {int(y[bad][0])}, outside the {cfg.classes} "
                                f"classes of model_config.classes")
        return composite_task(x, y, seed=cfg.task_seed * 3 + SPLIT_OFFSETS[split], max_digits=cfg.max_digits,
                              classes=cfg.classes)

    def per_example_loss(self, s: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.config.loss == "softmax-multilabel":
            return multilabel_softmax_loss(s, targets)
        return F.binary_cross_entropy_with_logits(s, targets, reduction="none").sum(dim=1)

    def training_step(self, batch, step: int, opt: Optimization, generator: torch.Generator) -> dict[str, torch.Tensor]:
        x, targets = batch
        s = self.scores(x)
        loss = self.per_example_loss(s, targets).mean()
        opt.step("model", loss)
        return {"loss": loss.detach(), "train_hamming": ((s > 0).float() != targets).float().mean().detach()}

    @torch.no_grad()
    def validation_loss(self, batch, generator: torch.Generator) -> torch.Tensor:
        """Per-example Hamming loss of the thresholded scores (s > 0)."""
        x, targets = batch
        return ((self.scores(x) > 0).float() != targets).float().mean(dim=1)
