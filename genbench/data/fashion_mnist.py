"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 70k 28 x 28 clothing images, 60k train / 10k test.

Raw files: the four canonical IDX files. Pins are the sha256 of the *decompressed* files: the
Debian package dataset-fashion-mnist (usr/share/datasets/fashion-mnist, see
scripts/fetch_data_packages.sh) ships them gzipped with other gzip headers than the publisher's
``.gz`` files at BASE_URL, but both decompress to these bytes.
"""
from __future__ import annotations

from genbench.data import idx
from genbench.data.base import LoadRequest, RawData
from genbench.data.sources import resolve

BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SOURCE = idx.idx_source("fashion_mnist", {
    idx.TRAIN_IMAGES: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    idx.TRAIN_LABELS: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    idx.TEST_IMAGES: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    idx.TEST_LABELS: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}, BASE_URL)


def load(request: LoadRequest) -> RawData:
    resolved = resolve(SOURCE, local_dir=request.local_dir, allow_download=request.allow_download)
    return idx.load_idx_dataset(resolved)
