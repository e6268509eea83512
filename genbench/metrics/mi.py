"""Mutual-information lower bounds from critic scores (the objectives of genbench/models/dim.py).

Every function takes a score matrix S (N x N) of a critic T: S[i, j] = T(x_i, y_j), the positives (pairs drawn
from the joint p(x, y)) on the diagonal, the off-diagonal entries pairs from the product of the marginals
p(x) p(y). A batch of several score matrices (..., N, N) gives one estimate per matrix.

jsd          f-GAN's Jensen-Shannon objective (Nowozin et al. 2016; as used by Hjelm et al. 2019, eq. 4):
                 E_P[-sp(-T)] - E_{PxM}[sp(T)],   sp = softplus.
             It is maximised by T* = log p(x, y) / (p(x) p(y)), where it equals 2 JSD(P || PxM) - 2 log 2: a
             lower bound of a divergence monotone in the MI, not of the MI itself in nats. A critic trained on it
             estimates the log density ratio, so `donsker_varadhan` of its scores estimates the MI.
infonce      van den Oord et al. 2018 (InfoNCE): log N + mean_i log softmax_j(S[i, :])_i  (the positive among
             the N candidates of its row). I >= InfoNCE, and InfoNCE <= log N for every critic.
donsker_varadhan  Belghazi et al. 2018 (MINE): E_P[T] - log E_{PxM}[e^T]; tight at T* (+ any constant).
nwj          Nguyen, Wainwright & Jordan 2010: E_P[T] - e^{-1} E_{PxM}[e^T]; tight at T* + 1.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check(scores: torch.Tensor) -> int:
    if scores.dim() < 2 or scores.shape[-1] != scores.shape[-2] or scores.shape[-1] < 2:
        raise ValueError(f"expected square score matrices (..., N, N) with N >= 2, got {tuple(scores.shape)}")
    return scores.shape[-1]


def _split(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positives (..., N), negatives (..., N*(N-1))): the diagonal and the off-diagonal entries."""
    n = _check(scores)
    eye = torch.eye(n, dtype=torch.bool, device=scores.device)
    positives = scores.diagonal(dim1=-2, dim2=-1)
    negatives = scores[..., ~eye]
    return positives, negatives


def jsd(scores: torch.Tensor) -> torch.Tensor:
    """E_P[-softplus(-T)] - E_{PxM}[softplus(T)] (the positives' and the negatives' means)."""
    positives, negatives = _split(scores)
    return (-F.softplus(-positives)).mean(dim=-1) - F.softplus(negatives).mean(dim=-1)


def infonce(scores: torch.Tensor) -> torch.Tensor:
    """log N + mean_i log( e^{S_ii} / sum_j e^{S_ij} ), in nats; at most log N."""
    n = _check(scores)
    log_softmax = scores.log_softmax(dim=-1).diagonal(dim1=-2, dim2=-1)
    return math.log(n) + log_softmax.mean(dim=-1)


def donsker_varadhan(scores: torch.Tensor) -> torch.Tensor:
    """E_P[T] - log E_{PxM}[e^T] (MINE's bound), the negatives the off-diagonal pairs, in nats."""
    positives, negatives = _split(scores)
    return positives.mean(dim=-1) - (torch.logsumexp(negatives, dim=-1) - math.log(negatives.shape[-1]))


def nwj(scores: torch.Tensor) -> torch.Tensor:
    """E_P[T] - E_{PxM}[e^{T - 1}] (f-divergence bound of the KL), in nats."""
    positives, negatives = _split(scores)
    return positives.mean(dim=-1) - torch.exp(negatives - 1.0).mean(dim=-1)


ESTIMATORS = {"jsd": jsd, "infonce": infonce, "dv": donsker_varadhan, "nwj": nwj}


def estimate(name: str, scores: torch.Tensor) -> torch.Tensor:
    if name not in ESTIMATORS:
        raise ValueError(f"unknown MI estimator {name!r}; expected one of: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](scores)
