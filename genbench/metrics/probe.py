"""Probes of a frozen representation: how much of the labels a linear map / a small MLP reads off its features.

`probe_scores(train_f, train_y, test_f, test_y, seed)` fits, on the train features,
  linear  multinomial logistic regression (softmax of W f + b), and
  mlp     one hidden ReLU layer (`hidden` units, 200 by default) and a softmax output,
each by full-batch L-BFGS (strong-Wolfe line search) on the mean cross-entropy plus an L2 penalty
(`weight_decay` x the squared weights, biases free), for a fixed number of iterations, in float64. The features
are standardised with the train split's per-dimension mean and standard deviation (a constant dimension is
left centred, not scaled), so the result does not depend on the features' scale. The MLP's initial weights are
drawn from `seed` (PyTorch's default initialisation laws); the linear probe starts at zero (its problem is
convex). Reported per probe: test accuracy with its binomial standard error sqrt(a (1 - a) / n), train accuracy,
n of each split and the final training loss. Deterministic given the inputs and the seed (CPU).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LINEAR_ITERATIONS = 300
MLP_ITERATIONS = 300
PROBE_TRAIN_N = 10000   # train-split examples the probes are fitted on (a fixed subset: `probe_subset`)
PROBE_HIDDEN = 200      # the MLP probe's hidden units
PROBE_SUBSET_SEED = 0   # which train examples the probes see: the same for every run and seed


def standardise(train_f: torch.Tensor, test_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = train_f.mean(dim=0, keepdim=True)
    std = train_f.std(dim=0, keepdim=True) if len(train_f) > 1 else torch.ones_like(mean)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return (train_f - mean) / std, (test_f - mean) / std


def _fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor, weight_decay: float, iterations: int) -> float:
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    optimizer = torch.optim.LBFGS(net.parameters(), lr=1.0, max_iter=iterations, history_size=20,
                                  tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(net(x), y) + weight_decay * sum((w * w).sum() for w in weights)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float(F.cross_entropy(net(x), y))


def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(x).argmax(dim=1) == y).double().mean())


def probe_scores(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
                 seed: int, *, classes: int | None = None, hidden: int = 200, weight_decay: float = 1e-4,
                 linear_iterations: int = LINEAR_ITERATIONS, mlp_iterations: int = MLP_ITERATIONS) -> dict[str, Any]:
    """{"linear": figures, "mlp": figures, "settings": ...}: test accuracy (and its standard error) of each probe
    fitted on (train_f, train_y); features (N, D) of any dtype, integer labels."""
    if train_f.dim() != 2 or test_f.dim() != 2 or train_f.shape[1] != test_f.shape[1]:
        raise ValueError(f"expected (N, D) features of the same D, got {tuple(train_f.shape)} and {tuple(test_f.shape)}")
    if len(train_f) != len(train_y) or len(test_f) != len(test_y) or len(train_f) == 0 or len(test_f) == 0:
        raise ValueError("features and labels differ in length, or a split is empty")
    train_y, test_y = train_y.long().cpu(), test_y.long().cpu()
    classes = classes or int(max(train_y.max(), test_y.max())) + 1
    x_train, x_test = standardise(train_f.detach().double().cpu(), test_f.detach().double().cpu())
    dim = x_train.shape[1]
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the MLP's init from `seed` alone, the global RNG untouched
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, classes)).double()
    linear = nn.Linear(dim, classes).double()
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
    out: dict[str, Any] = {"settings": {"standardised": "train mean and std", "optimizer": "full-batch L-BFGS",
                                        "weight_decay": weight_decay, "hidden": hidden, "classes": classes,
                                        "linear_iterations": linear_iterations, "mlp_iterations": mlp_iterations,
                                        "seed": seed, "dim": dim}}
    for name, net, iterations in (("linear", linear, linear_iterations), ("mlp", mlp, mlp_iterations)):
        train_loss = _fit(net, x_train, train_y, weight_decay, iterations)
        accuracy = _accuracy(net, x_test, test_y)
        n = len(test_y)
        out[name] = {"accuracy": accuracy, "accuracy_stderr": math.sqrt(accuracy * (1 - accuracy) / n),
                     "error_percent": 100 * (1 - accuracy), "train_accuracy": _accuracy(net, x_train, train_y),
                     "train_loss": train_loss, "n_train": len(train_y), "n_test": n}
    return out


def probe_subset(n_total: int, n: int) -> torch.Tensor:
    """Indices of the train examples the probes are fitted on: all of them, or `n` drawn by a fixed seed."""
    if n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(PROBE_SUBSET_SEED))[:n].sort().values


@torch.no_grad()
def batched_features(features, x: torch.Tensor, device, batch: int = 1000) -> torch.Tensor:
    return torch.cat([features(x[i:i + batch].to(device)).double().cpu() for i in range(0, len(x), batch)])


def probe_representation(features, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                         seed: int, device, *, train_n: int = PROBE_TRAIN_N, hidden: int = PROBE_HIDDEN,
                         classes: int | None = None) -> dict[str, Any]:
    """The representation metric of a frozen feature map `features` (a batch of data-space inputs -> (N, D)):
    features of a fixed subset of `train_n` train examples (`probe_subset`) and of the whole test split, then
    `probe_scores`. Used by the representation runs (genbench.representation) and by every model with an encoder
    worth probing (O-GAN's discriminator: genbench.evaluate.model_studies), so their rows compare."""
    (train_x, train_y), (test_x, test_y) = train, test
    index = probe_subset(len(train_x), train_n)
    train_f = batched_features(features, train_x[index], device)
    test_f = batched_features(features, test_x, device)
    probes = probe_scores(train_f, train_y[index], test_f, test_y, seed, classes=classes, hidden=hidden)
    return {"feature_dim": int(train_f.shape[1]), "probe_train_n": len(index), "probe_test_n": len(test_x),
            "linear_probe": probes["linear"], "mlp_probe": probes["mlp"], "probe_settings": probes["settings"]}
