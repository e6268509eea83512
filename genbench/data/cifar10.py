"""CIFAR-10 (Krizhevsky, 2009): 60k 32 x 32 colour images in 10 classes, 50k train / 10k test.

Raw files: the canonical python version, either the archive ``cifar-10-python.tar.gz`` (pinned by
its sha256; read without extracting) or its extracted batches ``data_batch_1``..``5`` and
``test_batch``, inside ``cifar-10-batches-py/`` or directly in the directory given. No sha256 of
the extracted batches is published; they are pinned by the publisher's md5 (also torchvision's).
No offline package ships CIFAR-10: it comes from a local directory or the canonical address.

Each batch is a pickle of a dict with ``b'data'`` (uint8 N x 3072: the 1024 red, then green, then
blue values of a 32 x 32 image in row-major order) and ``b'labels'`` (N ints 0..9). It is
unpickled only after its pin matched, and then with an unpickler that builds numpy arrays only.
"""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from genbench import GenbenchError
from genbench.data.base import LoadRequest, RawData
from genbench.data.sources import RawFile, Source, resolve

BASE_URL = "https://www.cs.toronto.edu/~kriz/"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
FOLDER = "cifar-10-batches-py"
BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"

SOURCE = Source("cifar10", base_url=BASE_URL, layouts=(
    (RawFile(ARCHIVE, sha256=ARCHIVE_SHA256),),
    tuple(RawFile(f"{FOLDER}/{name}", md5=md5) for name, md5 in BATCH_MD5.items()),
    tuple(RawFile(name, md5=md5) for name, md5 in BATCH_MD5.items()),
))


def load(request: LoadRequest) -> RawData:
    resolved = resolve(SOURCE, local_dir=request.local_dir, allow_download=request.allow_download)
    if ARCHIVE in resolved.paths:
        batches = _read_archive(resolved.paths[ARCHIVE])
    else:
        batches = {Path(name).name: (path.read_bytes(), path) for name, path in resolved.paths.items()}
    train = [_parse_batch(*batches[name]) for name in TRAIN_BATCHES]
    x_test, y_test = _parse_batch(*batches[TEST_BATCH])
    return RawData(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                   x_test, y_test, provenance=resolved.manifest())


def _read_archive(path: Path) -> dict[str, tuple[bytes, str]]:
    """The batches inside the archive, by name: (pickle bytes, where they were read from)."""
    out = {}
    with tarfile.open(path, "r:gz") as archive:
        for name in (*TRAIN_BATCHES, TEST_BATCH):
            member = f"{FOLDER}/{name}"
            try:
                out[name] = (archive.extractfile(member).read(), f"{path}:{member}")
            except (KeyError, AttributeError) as exc:
                raise GenbenchError(f"{path} has no file {member}; replace it with the canonical "
                                    f"{ARCHIVE}") from exc
    return out


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batch dicts: builds numpy arrays and nothing else."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR-10 batch")
        if module == "numpy.core.multiarray":  # pickled by numpy 1.x, renamed numpy._core in 2.0
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def _parse_batch(raw: bytes, where) -> tuple[np.ndarray, np.ndarray]:
    """One batch: images N x 3 x 32 x 32 uint8, labels int64."""
    fix = f"replace it with the canonical file ({BASE_URL}{ARCHIVE})"
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as exc:  # a corrupt pickle fails in many ways; all mean the same to the user
        raise GenbenchError(f"corrupt CIFAR-10 batch {where}: {exc!r}; {fix}") from exc
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise GenbenchError(f"corrupt CIFAR-10 batch {where}: data is {data.dtype} {data.shape}, "
                            f"expected uint8 N x 3072; {fix}")
    if labels.shape != (len(data),) or (labels.size and not 0 <= labels.min() <= labels.max() <= 9):
        raise GenbenchError(f"corrupt CIFAR-10 batch {where}: {labels.shape[0]} labels for "
                            f"{len(data)} images or a label outside 0..9; {fix}")
    return data.reshape(-1, 3, 32, 32), labels
