"""MLflow tracking: one MLflow run per stage execution.

The default store is embedded: a SQLite file `mlflow.db` at the repository root with artifacts under
`mlruns/`; `MLFLOW_TRACKING_URI` (for example a team's `mlflow server`) takes precedence. Set
`GENBENCH_TRACKING=off` to switch tracking off (unit tests only: the pipelines always track).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

EXPERIMENT = "genbench"
BATCH_PARAMS_TAGS = 100  # MLflow's limit of params (and of tags) per log_batch call
# seconds this process spent opening and closing its MLflow run, and inside the run (the stage's work)
STAGE_TIMES: dict[str, float] = {"tracking_s": 0.0}


def tracking_enabled() -> bool:
    return os.environ.get("GENBENCH_TRACKING", "on").lower() not in ("off", "0", "false")


def tracking_uri(root: Path | str = ".") -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """Nested config -> {"a.b.c": "value"} (MLflow params are flat strings)."""
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
    else:
        out[prefix.rstrip(".")] = json.dumps(obj) if isinstance(obj, (list, tuple)) else str(obj)
    return out


class Tracker:
    """A thin handle on the active MLflow run (or a no-op when tracking is off)."""

    def __init__(self, client=None, run_id: str | None = None):
        self.client = client
        self.run_id = run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.log_rows([dict(metrics, step=step or 0)])

    def log_rows(self, rows: list[dict[str, Any]]) -> None:
        """Rows of {"step": N, name: value, ...}, sent in one batch."""
        if self.client is None or not rows:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(row.get("step", 0)))
                   for row in rows for k, v in row.items()
                   if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.client is None or not tags:
            return
        from mlflow.entities import RunTag

        items = [RunTag(k, v[:5000]) for k, v in flatten(tags).items()]
        for start in range(0, len(items), BATCH_PARAMS_TAGS):
            self.client.log_batch(self.run_id, tags=items[start:start + BATCH_PARAMS_TAGS])

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        if self.client is not None and Path(path).exists():
            self.client.log_artifact(self.run_id, str(path), artifact_path)


def _client(uri: str, attempts: int = 5):
    """A client whose store is initialised; two jobs creating a fresh SQLite store at once race on
    its tables ("table ... already exists"), so the loser retries once the winner is done."""
    from mlflow.tracking import MlflowClient

    for attempt in range(attempts):
        try:
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)
            return client
        except Exception:  # noqa: BLE001 - any store error during initialisation
            if attempt == attempts - 1:
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def stage_run(stage: str, job: str, *, params: dict | None = None, tags: dict | None = None,
              root: Path | str = ".") -> Iterator[Tracker]:
    """Open an MLflow run named `<stage>:<job>`; it ends FINISHED, or FAILED if the block raises."""
    t0 = time.perf_counter()
    if not tracking_enabled():
        yield Tracker()
        STAGE_TIMES["work_s"] = time.perf_counter() - t0
        return
    import mlflow

    uri = tracking_uri(root)
    client = _client(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        location = None
        if uri.startswith("sqlite:"):
            location = (Path(root).resolve() / "mlruns").as_uri()
        try:
            experiment_id = client.create_experiment(EXPERIMENT, artifact_location=location)
        except mlflow.exceptions.MlflowException:  # created meanwhile by a parallel job
            experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    else:
        experiment_id = experiment.experiment_id
    from mlflow.entities import Param

    run_tags = {"genbench.stage": stage, "genbench.job": job, **flatten(tags or {})}
    run = client.create_run(experiment_id, run_name=f"{stage}:{job}",
                            tags={k: v[:5000] for k, v in run_tags.items()})
    tracker = Tracker(client, run.info.run_id)
    # one batch (one store transaction) rather than one call per param: each call costs a SQLite commit
    items = [Param(k, v[:6000]) for k, v in flatten(params or {}).items()]
    for start in range(0, len(items), BATCH_PARAMS_TAGS):
        client.log_batch(tracker.run_id, params=items[start:start + BATCH_PARAMS_TAGS])
    STAGE_TIMES["tracking_s"] += time.perf_counter() - t0
    t_work = time.perf_counter()
    try:
        yield tracker
    except BaseException:
        client.set_terminated(tracker.run_id, "FAILED")
        raise
    finally:
        t1 = time.perf_counter()
        STAGE_TIMES["work_s"] = t1 - t_work
    client.set_terminated(tracker.run_id, "FINISHED")
    STAGE_TIMES["tracking_s"] += time.perf_counter() - t1
