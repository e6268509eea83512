"""Evaluation metrics.

- `likelihood`: bits/dim and the one dequantization convention (torch only; cheap to import).
- `fid`: FID / KID / precision-recall via torch-fidelity; importing it registers the feature
  extractors `inception-v3-tf2015` and `classifier` with torch-fidelity's registry.
- `classifier`: the per-dataset domain classifier behind the `classifier` extractor.

Names from `fid` and `classifier` are loaded on first use, so that code needing only bits/dim
does not pay for importing torch-fidelity.
"""
from __future__ import annotations

import importlib

from genbench.metrics.likelihood import (
    LIKELIHOOD_KINDS,
    affine_to_unit_cube_nll,
    bits_per_dim,
    continuous_to_discrete_nll,
    dequantize,
    nats_to_bits_per_dim,
)

_LAZY = {
    "fid": (
        "INCEPTION_EXTRACTOR", "DEFAULT_INCEPTION_WEIGHTS", "convert_inception_weights", "extract_features",
        "extractor_info", "save_reference", "load_reference", "reference_hash", "metrics_from_features",
        "fid_from_statistics",
    ),
    "classifier": ("CLASSIFIER_EXTRACTOR", "train_classifier", "save_classifier", "load_classifier"),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "LIKELIHOOD_KINDS", "affine_to_unit_cube_nll", "bits_per_dim", "continuous_to_discrete_nll",
    "dequantize", "nats_to_bits_per_dim", *_MODULE_OF,
]  # fmt: skip


def __getattr__(name: str):
    if name in _MODULE_OF:
        # always through fid, so that using any of these registers the extractors
        importlib.import_module("genbench.metrics.fid")
        return getattr(importlib.import_module(f"genbench.metrics.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module 'genbench.metrics' has no attribute {name!r}")

#: The feature extractors a params file may name under eval.extractors.
EXTRACTOR_NAMES = ("classifier", "inception-v3-tf2015")
