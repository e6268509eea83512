"""The refstats stage: features of a dataset's reference split for every feature extractor, cached under
artifacts/refstats/ and read by every evaluate stage of that dataset."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from genbench.config import Params
from genbench.data import load_split
from genbench.io import sha256_file
from genbench.layout import INCEPTION_WEIGHTS, classifier_path, prepared_dir, refstats_path
from genbench.tracking import Tracker
from genbench.train import select_device


class _FidModule:
    """genbench.metrics.fid, imported on first use: torch-fidelity pulls in torchvision (seconds of
    start-up), which the sample stage and the likelihood-only evaluations never need."""

    def __getattr__(self, name: str):
        from genbench.metrics import fid

        return getattr(fid, name)


fidlib = _FidModule()


def extractor_weights(extractor: str, dataset: str) -> Path:
    return classifier_path(dataset) if extractor == "classifier" else INCEPTION_WEIGHTS


def extractor_label(extractor: str, dataset: str) -> str:
    """The name shown in reports: the classifier is dataset-specific."""
    return f"classifier-{dataset}" if extractor == "classifier" else extractor


def compute_refstats(params: Params, dataset: str, tracker: Tracker) -> dict[str, Any]:
    """Features of the reference split for every extractor, cached under artifacts/refstats/."""
    split = params.eval.reference_split
    x_all, _ = load_split(prepared_dir(params.data.root, dataset), split)
    manifest_sha = sha256_file(prepared_dir(params.data.root, dataset) / "manifest.json")
    summary = {}
    for extractor, opts in params.eval.extractors.items():
        x = x_all if opts.n_ref is None else x_all[: opts.n_ref]
        weights = extractor_weights(extractor, dataset)
        t0 = time.perf_counter()
        feats = fidlib.extract_features(x, extractor, weights, batch_size=params.eval.feature_batch_size,
                                        device=select_device(params.harness))
        meta = {"dataset": dataset, "split": split, "n_ref": len(x), "prepared_manifest_sha256": manifest_sha,
                **fidlib.extractor_info(extractor, weights), "label": extractor_label(extractor, dataset)}
        fidlib.save_reference(refstats_path(dataset, extractor), feats, meta)
        summary[extractor] = {"n_ref": len(x), "seconds": time.perf_counter() - t0}
        tracker.log_metrics({f"{extractor}.seconds": summary[extractor]["seconds"]})
    return summary
