"""What a dataset loader receives and returns; shared by the per-source modules.

Conventions: images are uint8 arrays N x C x H x W with values 0..255; points are float arrays
N x 2; labels are int64 (all zeros for unlabelled points). ``test`` is the official test set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class LoadRequest:
    """Arguments of one load; each loader uses the fields that concern it."""

    local_dir: Path | None = None
    allow_download: bool = True
    seed: int = 0  # generated datasets only (the 2-D toys)
    toy_train_size: int = 50000
    toy_test_size: int = 10000


@dataclass(frozen=True)
class RawData:
    """A dataset's official train and test sets, and where they came from (for the manifest)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    provenance: dict = field(default_factory=dict)  # source, source_dir, raw_files: {name: {path, sha256}}
    # (prepare writes only the sha256s: where the files were found is this machine's business)
