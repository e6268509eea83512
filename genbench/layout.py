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


# The FID[classifier-<dataset>] rulers: trained once, shipped inside the package and pinned here, so the
# column means the same on every machine (as the Inception weights do). `genbench classifier --rebuild`
# retrains one with params.yaml's `classifier` settings and says whether it matches its pin.
RULERS_DIR = Path(__file__).resolve().parent / "rulers"
SHIPPED_CLASSIFIERS = {
    "mnist": "657ff00297a24b75dfbc33cfc3f734d15fd50d2cc5e467bd1c64df9500f936b1",
    "fashion_mnist": "d25ad2728679c49febe9ee273533302dd701341b34b83305cd6341a37ed0f970",
}


def shipped_classifier(dataset: str) -> tuple[Path, str] | None:
    """(weights file, pinned sha256) of the dataset's shipped classifier, or None when none is shipped."""
    pin = SHIPPED_CLASSIFIERS.get(dataset)
    return None if pin is None else (RULERS_DIR / f"classifier-{dataset}.pt", pin)


def refstats_path(dataset: str, extractor: str) -> Path:
    return Path("artifacts/refstats") / dataset / f"{extractor}.npz"


def run_dir(run: str, seed: int) -> Path:
    return Path("runs") / job_name(run, seed)


def samples_dir(run: str, seed: int) -> Path:
    return Path("samples") / job_name(run, seed)


def metrics_path(run: str, seed: int) -> Path:
    return Path("metrics") / f"{job_name(run, seed)}.json"


def theory_metrics_path(check: str) -> Path:
    """A theory check's figures (genbench/theory.py): one file per check beside the jobs' metrics."""
    return Path("metrics") / f"theory-{check}.json"
