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


def bench_objectives(workdir: Path, runs: dict, model: str, key: str):
    """`genbench bench --models MODEL` (a short timing) in `workdir` with `runs` added to its params: the process
    and the rows of bench.json's `key` table by objective."""
    import json
    import subprocess
    import sys

    raw = yaml.safe_load((workdir / "params.yaml").read_text())
    raw["runs"].update(runs)
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "genbench.cli", "bench", "--models", model, "--repeats", "2",
                           "--warmup-s", "0.05", "--segment-s", "0.05", "--out", "bench.json"], cwd=workdir,
                          env={**os.environ, "GENBENCH_TRACKING": "off"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc, {r["objective"]: r for r in json.loads((workdir / "bench.json").read_text())[key]}
