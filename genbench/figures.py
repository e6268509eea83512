"""Sample grids: the one picture drawing shared by the sample stage and the report (matplotlib is
imported on first use, so that stages drawing nothing do not pay for it)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from genbench.io import atomic_path


def save_grid(images, path: Path, title: str | None = None, nrow: int | None = None) -> None:
    """A square grid of uint8 images (N x C x H x W) or a scatter of 2-D points (N x 2) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = np.asarray(images)
    if arr.ndim == 2:
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(arr[:, 0], arr[:, 1], s=2)
        ax.set_aspect("equal")
    else:
        n, c, h, w = arr.shape
        nrow = nrow or int(math.ceil(math.sqrt(n)))
        ncol = int(math.ceil(n / nrow))
        canvas = np.full((ncol * (h + 2) + 2, nrow * (w + 2) + 2, c), 255, dtype=np.uint8)
        for i in range(n):
            r, col = divmod(i, nrow)
            canvas[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + col * (w + 2): 2 + col * (w + 2) + w] = \
                arr[i].transpose(1, 2, 0)
        fig, ax = plt.subplots(figsize=(4, 4 * canvas.shape[0] / canvas.shape[1]))
        ax.imshow(canvas.squeeze(-1) if c == 1 else canvas, cmap="gray" if c == 1 else None,
                  vmin=0, vmax=255, interpolation="nearest")
        ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
