"""Hubness: the k-occurrence N_k of a point set (Radovanovic, Nanopoulos & Ivanovic 2010, "Hubs in Space").

Shared by the hubness latent sampler of the image GANs (genbench.models.gans.hubness_latents) and the
hubness-against-dimension theory check (genbench.theory.hubness_check), so the sampler is tested by the check.
"""
from __future__ import annotations

import math

import torch


@torch.no_grad()
def k_occurrence(points: torch.Tensor, k: int, chunk: int = 1000) -> torch.Tensor:
    """N_k(x) for every row x of `points`: how many OTHER rows count x among their k nearest (Euclidean)
    neighbours; a point is never its own neighbour (Radovanovic et al. 2010, eq. 1; Liang et al. 2022,
    section 3.2). Float counts summing to len(points) * k; distances are computed `chunk` rows at a time."""
    n = len(points)
    occurrences = torch.zeros(n, device=points.device)
    for start in range(0, n, chunk):
        d = torch.cdist(points[start:start + chunk], points)
        d[torch.arange(len(d)), torch.arange(start, start + len(d))] = math.inf  # not its own neighbour
        occurrences += torch.bincount(d.topk(k, dim=1, largest=False).indices.flatten(), minlength=n)
    return occurrences
