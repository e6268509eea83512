"""The IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/), plain or gzipped.

A file is: two zero bytes, a type code (0x08 = unsigned byte, the only one these datasets use),
the number of dimensions, each dimension as a big-endian uint32, then the data in C order.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from genbench import GenbenchError
from genbench.data.base import RawData
from genbench.data.sources import RawFile, Resolved, Source

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def idx_source(dataset: str, sha256: dict[str, str], base_url: str) -> Source:
    """The four IDX files, each pinned by the sha256 of its uncompressed bytes, stored plain or .gz."""
    return Source(dataset, layouts=(tuple(RawFile(n, sha256=sha256[n], gz=True) for n in FILES),),
                  base_url=base_url, offline_package=True)


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (``.gz`` is decompressed); a corrupt file: GenbenchError."""
    path = Path(path)
    fix = f"delete or replace {path} with the canonical file, then run again"
    try:
        data = gzip.open(path).read() if path.name.endswith(".gz") else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise GenbenchError(f"corrupt IDX file {path}: not a valid gzip file ({exc}); {fix}") from exc
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise GenbenchError(f"corrupt IDX file {path}: bad magic number {data[:4].hex()} "
                            f"(expected 000008xx, unsigned bytes); {fix}")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise GenbenchError(f"corrupt IDX file {path}: truncated header; {fix}")
    dims = struct.unpack(f">{ndim}I", data[4:offset])
    if len(data) - offset != int(np.prod(dims)):
        raise GenbenchError(f"corrupt IDX file {path}: header says shape {dims} = {int(np.prod(dims))} "
                            f"bytes, the file holds {len(data) - offset}; {fix}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims).copy()


def load_idx_dataset(resolved: Resolved, *, height: int = 28, width: int = 28,
                     num_classes: int = 10) -> RawData:
    """Read the four files of ``resolved``: images N x 1 x H x W uint8, labels int64 0..C-1."""
    splits = []
    for images_name, labels_name in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        images_path, labels_path = resolved.paths[images_name], resolved.paths[labels_name]
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.shape[1:] != (height, width):
            raise GenbenchError(f"{images_path}: images have shape {images.shape}, expected "
                                f"N x {height} x {width}; replace the file with the canonical one")
        if labels.shape != (images.shape[0],):
            raise GenbenchError(f"{labels_path}: labels have shape {labels.shape}, expected "
                                f"({images.shape[0]},) to match {images_path.name}; replace the file")
        if labels.size and labels.max() >= num_classes:
            raise GenbenchError(f"{labels_path}: label {labels.max()} is outside 0..{num_classes - 1}; "
                                f"replace the file with the canonical one")
        splits += [images[:, None], labels.astype(np.int64)]
    return RawData(*splits, provenance=resolved.manifest())
