"""Where each stage reads and writes, relative to the repository root. dvc.yaml and the Snakemake
rules spell the same paths; tests/test_pipelines.py checks that they agree."""
from __future__ import annotations

from pathlib import Path

INCEPTION_WEIGHTS = Path("artifacts/weights/inception-v3-tf2015.pt")
# jobs whose committed figures await a re-run after a code change (read by resolve and report)
STALE_JOBS = Path("pipelines/stale.yaml")


def job_name(run: str, seed: int) -> str:
    return f"{run}-s{seed}"


def prepared_dir(data_root: str, dataset: str) -> Path:
    return Path(data_root) / dataset


def classifier_path(dataset: str) -> Path:
    return Path("artifacts/classifiers") / f"{dataset}.pt"


def classifier_metrics_path(dataset: str) -> Path:
    return Path("artifacts/classifiers") / f"{dataset}.json"


def refstats_path(dataset: str, extractor: str) -> Path:
    return Path("artifacts/refstats") / dataset / f"{extractor}.npz"


def run_dir(run: str, seed: int) -> Path:
    return Path("runs") / job_name(run, seed)


def samples_dir(run: str, seed: int) -> Path:
    return Path("samples") / job_name(run, seed)


def metrics_path(run: str, seed: int) -> Path:
    return Path("metrics") / f"{job_name(run, seed)}.json"
