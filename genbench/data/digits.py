"""scikit-learn's 8 x 8 digits (UCI optical recognition of handwritten digits, test part): 1797 images.

Source: ``sklearn.datasets.load_digits``, whose file ships inside scikit-learn (offline). Values
0..16 become uint8 0..255 by round(v * 255 / 16). There is no official split: the test set is the
last TEST_SIZE images of a fixed permutation (numpy ``default_rng(SPLIT_SEED)``), the train set the
rest; both keep the original order. The pin is the sha256 of the decompressed digits.csv.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genbench.data.base import LoadRequest, RawData
from genbench.data.sources import RawFile, check_file

TEST_SIZE = 297
SPLIT_SEED = 0
RAW = RawFile("digits.csv", sha256="6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8",
              gz=True)


def load(request: LoadRequest) -> RawData:
    import sklearn.datasets

    path = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
    sha = check_file(path, RAW, fix="Reinstall scikit-learn (pyproject.toml pins its version)")
    digits = sklearn.datasets.load_digits()
    images = np.floor(digits.images * 255 / 16 + 0.5).astype(np.uint8)[:, None]  # N x 1 x 8 x 8
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    train, test = np.sort(order[:-TEST_SIZE]), np.sort(order[-TEST_SIZE:])
    provenance = {"source": "package", "source_dir": str(path.parent),
                  "raw_files": {RAW.name: {"path": str(path), "sha256": sha}}}
    return RawData(images[train], labels[train], images[test], labels[test], provenance)
