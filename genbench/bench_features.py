"""How fast genbench extracts Inception features, against torch-fidelity called directly.

Both sides get the same uint8 28 x 28 MNIST-like images and the same weights file
(``artifacts/weights/inception-v3-tf2015.pt``, from ``genbench weights``):

genbench        ``fid.extract_features(images, "inception-v3-tf2015", weights, batch_size)``: the call the
                evaluate and refstats stages make (grey input, 2048-d pool3 features).
torch-fidelity  what ``torch_fidelity.calculate_metrics`` does for a Dataset input: its
                ``create_feature_extractor("inception-v3-compat", ["2048"], ...)`` (its own
                FeatureExtractorInceptionV3 class) and ``get_featuresdict_from_dataset`` over the images as
                3 x 28 x 28 RGB (torch-fidelity's input), built anew per call as calculate_metrics does.

For each batch size the two alternate (which goes first alternates too); the table gives medians with
[min-max] of images/s (wall clock; `cpu` is images per CPU-second of this process, steadier on a shared
machine) and the median of the paired per-repeat ratios. Batch sizes run one after another: on a shared
machine the load can change between rows, so compare within a row (the ratio) and the cpu columns.
Run ``python -m genbench.bench_features`` (``--help`` for the options).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch_fidelity
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

from genbench import GenbenchError
from genbench.metrics import fid

TORCH_FIDELITY_INCEPTION = "inception-v3-compat"  # torch-fidelity's own Inception-v3 class


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def mnist_like(n: int, seed: int = 0) -> torch.Tensor:
    """n uint8 1 x 28 x 28 images: a dark background with ~20% bright, noisy pixels (fixed by `seed`)."""
    gen = torch.Generator().manual_seed(seed)
    on = torch.rand(n, 1, 28, 28, generator=gen) < 0.2
    return (on * torch.randint(128, 256, (n, 1, 28, 28), generator=gen)).to(torch.uint8)


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def feature_benchmark(n_images: int, repeats: int, batch_sizes: list[int],
                      weights_path: str | Path = fid.DEFAULT_INCEPTION_WEIGHTS) -> dict[str, Any]:
    """Images/s of genbench's Inception features vs torch-fidelity direct, per batch size (see module doc)."""
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise GenbenchError(f"Inception weights {weights_path} are missing: run `genbench weights` first.")
    if n_images < 1 or repeats < 1 or not batch_sizes:
        raise GenbenchError("feature_benchmark needs n_images >= 1, repeats >= 1 and at least one batch size.")
    images = mnist_like(n_images)
    rgb = _Images(images.expand(-1, 3, -1, -1))

    def genbench(batch_size: int) -> np.ndarray:
        return fid.extract_features(images, fid.INCEPTION_EXTRACTOR, weights_path, batch_size=batch_size,
                                    progress=False)

    def direct(batch_size: int) -> np.ndarray:
        extractor = create_feature_extractor(TORCH_FIDELITY_INCEPTION, ["2048"], cuda=False, verbose=False,
                                             feature_extractor_weights_path=str(weights_path))
        features = get_featuresdict_from_dataset(rgb, extractor, batch_size, cuda=False, save_cpu_ram=True,
                                                 verbose=False)["2048"]
        return features.double().numpy()

    genbench(1)  # the first call in a process may build genbench's extractor; later calls are what evaluation pays
    rows, max_diff = [], 0.0
    for batch_size in batch_sizes:
        rates: dict[str, list[float]] = {"genbench": [], "torch_fidelity": [], "genbench_cpu": [],
                                         "torch_fidelity_cpu": []}
        ratios = []
        for repeat in range(repeats):
            order = [("genbench", genbench), ("torch_fidelity", direct)]
            features = {}
            for name, fn in order if repeat % 2 == 0 else order[::-1]:
                features[name], wall, cpu = _timed(fn, batch_size)
                rates[name].append(n_images / wall)
                rates[f"{name}_cpu"].append(n_images / cpu)
            ratios.append(rates["genbench"][-1] / rates["torch_fidelity"][-1])
            max_diff = max(max_diff, float(np.abs(features["genbench"] - features["torch_fidelity"]).max()))
        rows.append({"batch_size": batch_size, **{k: _summary(v) for k, v in rates.items()},
                     "ratio": _summary(ratios)})
    construction = {
        "torch_fidelity": _summary([_timed(lambda: create_feature_extractor(
            TORCH_FIDELITY_INCEPTION, ["2048"], cuda=False, verbose=False,
            feature_extractor_weights_path=str(weights_path)))[1] for _ in range(repeats)]),
        "genbench": _summary([_timed(lambda: fid.feature_extractor(fid.INCEPTION_EXTRACTOR, weights_path))[1]
                              for _ in range(repeats)]),
    }
    best = max(rows, key=lambda row: row["genbench"]["median"])["batch_size"]
    return {"n_images": n_images, "repeats": repeats, "batch_sizes": list(batch_sizes), "rows": rows,
            "construction_s": construction, "max_abs_feature_diff": max_diff, "best_batch_size": best,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "torch_fidelity": torch_fidelity.__version__, "machine": platform.processor() or platform.machine()}


def format_feature_benchmark(result: dict[str, Any]) -> str:
    """The benchmark as a plain-text table."""

    def cell(s: dict[str, Any], digits: int = 2) -> str:
        return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"

    lines = [
        (f"Inception-v3 features ({fid.INCEPTION_EXTRACTOR}), {result['n_images']} uint8 28x28 grey images, "
         f"{result['repeats']} alternated repeats, {result['torch_threads']} torch threads "
         f"(torch {result['torch']}, torch-fidelity {result['torch_fidelity']})"),
        ("images/s: median [min-max]; cpu = images per process CPU-second; "
         "ratio = genbench / torch-fidelity (wall, paired per repeat)"),
        (f"{'batch':>5}  {'genbench':>20}  {'torch-fidelity':>20}  {'ratio':>18}  {'genbench cpu':>18}  "
         f"{'torch-fidelity cpu':>18}"),
    ]
    for row in result["rows"]:
        lines.append(f"{row['batch_size']:>5}  {cell(row['genbench']):>20}  {cell(row['torch_fidelity']):>20}  "
                     f"{cell(row['ratio']):>18}  {cell(row['genbench_cpu']):>18}  {cell(row['torch_fidelity_cpu']):>18}")
    built = result["construction_s"]
    lines.append(f"extractor construction, s: torch-fidelity {cell(built['torch_fidelity'])} (every call); "
                 f"genbench {cell(built['genbench'], 3)} (fid.feature_extractor, cached per process)")
    lines.append(f"max |genbench - torch-fidelity| over all features: {result['max_abs_feature_diff']:.3g}; "
                 f"fastest genbench batch size (median wall): {result['best_batch_size']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genbench.bench_features", description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--weights", type=Path, default=fid.DEFAULT_INCEPTION_WEIGHTS)
    args = parser.parse_args(argv)
    print(format_feature_benchmark(feature_benchmark(args.n_images, args.repeats, args.batch_sizes, args.weights)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
