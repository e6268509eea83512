"""Shared fixtures: a tiny prepared MNIST and a tiny params file, tracking off unless a test turns it on."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = Path(__file__).parent / "configs"


@pytest.fixture(autouse=True)
def _no_tracking(monkeypatch):
    monkeypatch.setenv("GENBENCH_TRACKING", "off")


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    """MNIST prepared once per session with the tiny limits of tests/configs/tiny.yaml."""
    from genbench import data

    root = tmp_path_factory.mktemp("prepared")
    opts = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())["data"]["datasets"]["mnist"]
    data.prepare("mnist", root / "mnist", val_size=opts["val_size"], train_limit=opts["train_limit"],
                 test_limit=opts["test_limit"], seed=0, allow_download=False)
    return root


@pytest.fixture
def workdir(tmp_path, tiny_mnist, monkeypatch) -> Path:
    """A working directory holding params.yaml (tiny) and data/prepared/mnist; cwd is set to it."""
    shutil.copytree(tiny_mnist, tmp_path / "data" / "prepared")
    shutil.copy(CONFIGS / "tiny.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load_tiny(path: Path | None = None):
    from genbench.config import load

    return load(path or CONFIGS / "tiny.yaml")
