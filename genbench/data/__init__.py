"""Datasets: a registry, ``prepare`` (raw files -> verified, split npz files) and ``load_split``.

A prepared directory holds ``train.npz``, ``val.npz``, ``test.npz`` and ``manifest.json``:

- each npz has ``x`` (images: uint8 N x C x H x W, values 0..255; points: float32 N x 2) and ``y``
  (int64 labels; zeros for points);
- ``val`` is carved from the official training set by a seeded permutation; ``test`` is the
  official test set, never touched by the split;
- the npz files are uncompressed zips with fixed timestamps, so the same arguments give
  byte-identical files; the manifest records their sha256, checked by ``load_split``.

Raw files come from a local directory, an offline package or a download, each checked against a
pinned hash (see ``genbench.data.sources``).
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import genbench
from genbench import GenbenchError
from genbench.data import cifar10, digits, fashion_mnist, mnist, sts, toy2d
from genbench.data.base import LoadRequest, RawData
from genbench.io import atomic_dir, read_json, sha256_file, write_json

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
KINDS = ("image", "points", "pairs")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str  # "image" | "points" | "pairs"
    shape: tuple[int, ...]  # (C, H, W) for images, (2,) for points and sentence pairs
    num_classes: int  # 0: unlabelled
    description: str
    loader: Callable[[LoadRequest], RawData]


DATASETS: dict[str, DatasetInfo] = {}


def register(dataset: DatasetInfo) -> DatasetInfo:
    """Add ``dataset`` to DATASETS; a name registered twice is a programming error."""
    if dataset.name in DATASETS:
        raise ValueError(f"dataset {dataset.name!r} is already registered")
    if dataset.kind not in KINDS:
        raise ValueError(f"dataset {dataset.name!r}: kind must be one of {', '.join(KINDS)}")
    DATASETS[dataset.name] = dataset
    return dataset


register(DatasetInfo("mnist", "image", (1, 28, 28), 10,
                     "MNIST handwritten digits, 60k train / 10k test", mnist.load))
register(DatasetInfo("fashion_mnist", "image", (1, 28, 28), 10,
                     "Fashion-MNIST clothing images, 60k train / 10k test", fashion_mnist.load))
register(DatasetInfo("cifar10", "image", (3, 32, 32), 10,
                     "CIFAR-10 colour images, 50k train / 10k test", cifar10.load))
register(DatasetInfo("digits", "image", (1, 8, 8), 10,
                     "scikit-learn 8x8 digits, 1500 train / 297 test (fixed split)", digits.load))
_TOY_DESCRIPTIONS = {
    "ring8": "8 Gaussians (std 0.02) on a circle of radius 2",
    "grid25": "25 Gaussians (std 0.05) on the grid {-4,-2,0,2,4}^2",
    "moons": "two moons",
    "swissroll": "2-D swiss roll",
    "checkerboard": "uniform on the black squares of a 4x4 board on [-4,4]^2",
}
for _toy in toy2d.TOYS:
    register(DatasetInfo(f"toy_{_toy}", "points", (2,), 0, "2-D toy: " + _TOY_DESCRIPTIONS[_toy],
                         toy2d.loader(_toy)))
register(DatasetInfo("stsbenchmark", "pairs", (2,), 0,
                     "STS Benchmark sentence pairs with gold similarity 0..5: 5749 train / 1500 dev / 1379 test",
                     sts.load))


def info(name: str) -> DatasetInfo:
    """The registered dataset ``name``; unknown: GenbenchError listing the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise GenbenchError(f"unknown dataset {name!r}; known datasets: "
                            f"{', '.join(sorted(DATASETS))}") from None


def prepare(name: str, out_dir: Path, *, local_dir: Path | None = None, val_size: int,
            train_limit: int | None = None, test_limit: int | None = None, seed: int = 0,
            allow_download: bool = True, toy_train_size: int = 50000,
            toy_test_size: int = 10000) -> dict:
    """Load dataset ``name``, split it and write ``out_dir`` atomically; return the manifest.

    ``val`` is ``val_size`` examples of the official training set picked by
    ``np.random.default_rng(seed).permutation``; ``train`` is the rest in the original order, then
    cut to its first ``train_limit`` examples; ``test`` is the official test set cut to its first
    ``test_limit``. Limits are for tiny CI profiles. The 2-D toys are drawn from ``seed``
    (``toy_train_size`` / ``toy_test_size`` points). On any error nothing is written at ``out_dir``.
    """
    dataset = info(name)
    for key, value in (("train_limit", train_limit), ("test_limit", test_limit)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise GenbenchError(f"{key} must be a positive integer or null, got {value!r}")
    if dataset.kind == "points" and (toy_train_size < 1 or toy_test_size < 1):
        raise GenbenchError(f"toy_train_size and toy_test_size must be positive, got "
                            f"{toy_train_size} and {toy_test_size}")
    raw = dataset.loader(LoadRequest(local_dir=None if local_dir is None else Path(local_dir),
                                     allow_download=allow_download, seed=seed,
                                     toy_train_size=toy_train_size, toy_test_size=toy_test_size))
    n_train = len(raw.x_train)
    if not isinstance(val_size, int) or not 0 <= val_size < n_train:
        raise GenbenchError(f"val_size must be an integer in 0..{n_train - 1} for {name} (its training "
                            f"set has {n_train} examples), got {val_size!r}")

    if dataset.kind == "pairs":  # official train / dev / test files: the dev set is the validation split
        if val_size != 0:
            raise GenbenchError(f"data.datasets.{name}.val_size must be 0: its validation split is the official "
                                f"dev set, got {val_size!r}")
        n_dev = raw.provenance["splits"]["dev"]
        splits = {"train": (raw.x_train[:train_limit], raw.y_train[:train_limit]),
                  "val": (raw.x_test[:n_dev][:test_limit], raw.y_test[:n_dev][:test_limit]),
                  "test": (raw.x_test[n_dev:][:test_limit], raw.y_test[n_dev:][:test_limit])}
    else:
        order = np.random.default_rng(seed).permutation(n_train)
        val_idx, train_idx = np.sort(order[:val_size]), np.sort(order[val_size:])[:train_limit]
        splits = {
            "train": (raw.x_train[train_idx], raw.y_train[train_idx]),
            "val": (raw.x_train[val_idx], raw.y_train[val_idx]),
            "test": (raw.x_test[:test_limit], raw.y_test[:test_limit]),
        }
    dtype = np.float32 if dataset.kind == "points" else np.uint8
    for split, (x, y) in splits.items():
        if x.shape[1:len(dataset.shape) + 1] != dataset.shape or x.dtype != dtype or y.shape != (len(x),):
            raise AssertionError(f"{name} loader returned {split} x {x.dtype} {x.shape}, y {y.shape}")

    manifest = {
        "format_version": FORMAT_VERSION,
        "genbench_version": genbench.__version__,
        "dataset": name,
        "kind": dataset.kind,
        "shape": list(dataset.shape),
        "num_classes": dataset.num_classes,
        # the raw files' content, never where they were found: a clone elsewhere, a download or the offline
        # package must write byte-identical prepared data (and leave dvc.lock unchanged)
        "raw_files": {name: {"sha256": f["sha256"]} for name, f in sorted(raw.provenance["raw_files"].items())},
        "seed": seed,
        "val_size": val_size,
        "train_limit": train_limit,
        "test_limit": test_limit,
        "official_sizes": {"train": n_train, "test": len(raw.x_test)},
        "sizes": {split: len(x) for split, (x, _) in splits.items()},
        "files": {},
    }
    if dataset.kind == "points":
        manifest.update(toy_train_size=toy_train_size, toy_test_size=toy_test_size)
    with atomic_dir(out_dir) as tmp:
        for split, (x, y) in splits.items():
            # labels are int64; a pair's gold similarity stays float32
            _write_npz(tmp / f"{split}.npz", x=x, y=y if dataset.kind == "pairs" else y.astype(np.int64))
            manifest["files"][split] = {"path": f"{split}.npz", "sha256": sha256_file(tmp / f"{split}.npz")}
        write_json(tmp / "manifest.json", manifest)
    located = {key: raw.provenance[key] for key in ("source", "source_dir")}
    located["paths"] = {name: f["path"] for name, f in raw.provenance["raw_files"].items()}
    return {**manifest, "located": located}  # `located`: printed and tagged by the stage, not written


def load_split(prepared_dir: Path, split: str):
    """``(x, y)`` tensors of one split of a prepared directory, after checking its sha256.

    ``x``: uint8 N x C x H x W (images), float32 N x 2 (points) or uint8 N x 2 x L (sentence pairs as
    UTF-8, genbench.data.sts.decode_pairs); ``y``: int64 N (float32 gold similarities for pairs).
    """
    import torch

    prepared_dir = Path(prepared_dir)
    if split not in SPLITS:
        raise GenbenchError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    manifest_path = prepared_dir / "manifest.json"
    if not manifest_path.is_file():
        raise GenbenchError(f"prepared data not found at {prepared_dir} (no manifest.json); run "
                            f"`genbench prepare --dataset {prepared_dir.name}`")
    manifest = read_json(manifest_path)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise GenbenchError(f"{manifest_path} has format version {manifest.get('format_version')}, "
                            f"this genbench reads {FORMAT_VERSION}; re-run `genbench prepare --dataset "
                            f"{manifest.get('dataset', prepared_dir.name)}`")
    path = prepared_dir / manifest["files"][split]["path"]
    rerun = f"re-run `genbench prepare --dataset {manifest['dataset']}`"
    if not path.is_file():
        raise GenbenchError(f"{path} is missing; {rerun}")
    actual, expected = sha256_file(path), manifest["files"][split]["sha256"]
    if actual != expected:
        raise GenbenchError(f"{path} is corrupt: sha256 {actual}, the manifest says {expected}; {rerun}")
    with np.load(path, allow_pickle=False) as npz:
        x, y = npz["x"], npz["y"]
    return torch.from_numpy(x), torch.from_numpy(y)


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez`` but byte-reproducible: stored entries with a fixed timestamp."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            entry = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(entry, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
