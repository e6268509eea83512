"""MLflow tracking: one MLflow run per stage execution, recorded locally first, then sent to the store.

A stage does not talk to MLflow while it runs: importing MLflow and opening its SQLite store cost 2-4 s
per process, more than most `ci` stages' own work. Instead the stage writes its run (params, tags,
metric rows with their wall-clock times, artifacts copied beside them, status, start and end times) to
`mlruns/pending/<run>/`, and `flush_pending` sends every pending run to the store in one process: the
report stage does at its end (so after `dvc repro` or Snakemake every stage's run is in MLflow), and
`genbench track` does on demand. A store that is down loses nothing: the pending runs stay and go with
the next flush. A stage killed mid-way leaves a run marked RUNNING, sent as FAILED once its process is gone.

GENBENCH_TRACKING: `on` (default, as above), `live` (each stage also sends its own run as it ends),
`off` (nothing recorded; unit tests only: the pipelines always track).
The default store is embedded: a SQLite file `mlflow.db` at the repository root with artifacts under
`mlruns/`; `MLFLOW_TRACKING_URI` (for example a team's `mlflow server`) takes precedence.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

EXPERIMENT = "genbench"
PENDING = Path("mlruns/pending")
BATCH_PARAMS_TAGS = 100  # MLflow's limits per log_batch call
BATCH_METRICS = 1000
# seconds this process spent recording its run, and inside the run (the stage's own work)
STAGE_TIMES: dict[str, float] = {"tracking_s": 0.0}


def tracking_mode() -> str:
    mode = os.environ.get("GENBENCH_TRACKING", "on").lower()
    return "off" if mode in ("off", "0", "false") else ("live" if mode == "live" else "on")


def tracking_enabled() -> bool:
    return tracking_mode() != "off"


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


def _now_ms() -> int:
    return int(time.time() * 1000)


class Tracker:
    """The run a stage records (a no-op when tracking is off): what it logs is kept in its pending
    folder, written to disk at once, so a killed stage loses nothing it logged."""

    def __init__(self, folder: Path | None = None, record: dict[str, Any] | None = None):
        self.folder = folder
        self.record = record
        self.failed = False  # set by a stage that ends in failure without raising

    def _save(self) -> None:
        from genbench.io import write_json

        write_json(self.folder / "run.json", self.record)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.log_rows([dict(metrics, step=step or 0)])

    def log_rows(self, rows: list[dict[str, Any]]) -> None:
        """Rows of {"step": N, name: value, ...}; numbers only (bools and strings are left out)."""
        if self.folder is None or not rows:
            return
        now = _now_ms()
        self.record["metrics"] += [[k, float(v), now, int(row.get("step", 0))]
                                   for row in rows for k, v in row.items()
                                   if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)]
        self._save()

    def log_history(self, log: Path) -> None:
        """Log the values of a job's whole log (stats.jsonl) that this run has not logged itself: the
        run of a resumed training then holds the history an uninterrupted run holds, rows of the killed
        invocations included (their own runs, sent as FAILED, keep their part too)."""
        if self.folder is None or not log.is_file():
            return
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        logged = {(key, step) for key, _, _, step in self.record["metrics"]}
        self.log_rows([{"step": row.get("step", 0), **{k: v for k, v in row.items()
                                                        if k != "step" and (k, int(row.get("step", 0))) not in logged}}
                       for row in rows])

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.folder is None or not tags:
            return
        self.record["tags"].update({k: v[:5000] for k, v in flatten(tags).items()})
        self._save()

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        """A copy of the file goes with the run (the workspace's outputs may be gone by the flush)."""
        path = Path(path)
        if self.folder is None or not path.exists():
            return
        stored = self.folder / "artifacts" / f"{len(self.record['artifacts'])}-{path.name}"
        stored.parent.mkdir(exist_ok=True)
        shutil.copy2(path, stored)
        self.record["artifacts"].append([stored.name, path.name, artifact_path])
        self._save()


@contextlib.contextmanager
def stage_run(stage: str, job: str, *, params: dict | None = None, tags: dict | None = None,
              root: Path | str = ".") -> Iterator[Tracker]:
    """Record a run named `<stage>:<job>`; it ends FINISHED, or FAILED if the block raises or sets
    `tracker.failed` (a stage that exits non-zero without an exception: a diverged run under
    `on_divergence: fail`)."""
    t0 = time.perf_counter()
    if not tracking_enabled():
        yield Tracker()
        STAGE_TIMES["work_s"] = time.perf_counter() - t0
        return
    folder = Path(root) / PENDING / f"{_now_ms()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    tracker = Tracker(folder, {
        "run_name": f"{stage}:{job}", "status": "RUNNING", "pid": os.getpid(), "host": os.uname().nodename,
        "start_time": _now_ms(), "end_time": None,
        "params": {k: v[:6000] for k, v in flatten(params or {}).items()},
        "tags": {"genbench.stage": stage, "genbench.job": job,
                 **{k: v[:5000] for k, v in flatten(tags or {}).items()}},
        "metrics": [], "artifacts": []})
    tracker._save()
    STAGE_TIMES["tracking_s"] += time.perf_counter() - t0
    t_work = time.perf_counter()
    status = "FAILED"
    try:
        yield tracker
        status = "FAILED" if tracker.failed else "FINISHED"
    finally:
        t1 = time.perf_counter()
        STAGE_TIMES["work_s"] = t1 - t_work
        tracker.record.update(status=status, end_time=_now_ms())
        tracker._save()
        if tracking_mode() == "live":
            flush_pending(root, only=[folder])
        STAGE_TIMES["tracking_s"] += time.perf_counter() - t1


# --------------------------------------------------------------------------------------------------
# Sending pending runs to the store
# --------------------------------------------------------------------------------------------------
def _client(uri: str, attempts: int = 3):
    """A client whose store is initialised; two processes creating a fresh SQLite store at once race on
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
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _experiment_id(client, uri: str, root: Path) -> str:
    import mlflow

    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    location = (root.resolve() / "mlruns").as_uri() if uri.startswith("sqlite:") else None
    try:
        return client.create_experiment(EXPERIMENT, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created meanwhile by another process
        return client.get_experiment_by_name(EXPERIMENT).experiment_id


def _process_gone(record: dict[str, Any]) -> bool:
    if record.get("host") != os.uname().nodename:
        return False  # another machine's stage: only it can tell
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _send(client, experiment_id: str, folder: Path, record: dict[str, Any]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    marker = folder / "mlflow-run-id"
    if marker.exists():  # an earlier flush died half-way through this run: start it again
        with contextlib.suppress(Exception):
            client.delete_run(marker.read_text().strip())
    run = client.create_run(experiment_id, start_time=record["start_time"], run_name=record["run_name"])
    marker.write_text(run.info.run_id)
    run_id = run.info.run_id
    params = [Param(k, v) for k, v in record["params"].items()]
    tags = [RunTag(k, v) for k, v in record["tags"].items()]
    for start in range(0, max(len(params), len(tags)), BATCH_PARAMS_TAGS):
        client.log_batch(run_id, params=params[start:start + BATCH_PARAMS_TAGS],
                         tags=tags[start:start + BATCH_PARAMS_TAGS])
    metrics = [Metric(k, v, t, s) for k, v, t, s in record["metrics"]]
    for start in range(0, len(metrics), BATCH_METRICS):
        client.log_batch(run_id, metrics=metrics[start:start + BATCH_METRICS])
    for stored, name, artifact_path in record["artifacts"]:
        staged = folder / "upload" / name  # MLflow names the artifact after the file
        staged.parent.mkdir(exist_ok=True)
        shutil.copy2(folder / "artifacts" / stored, staged)
        client.log_artifact(run_id, str(staged), artifact_path)
        staged.unlink()
    client.set_terminated(run_id, record["status"], end_time=record["end_time"] or _now_ms())


# A tracking server that does not answer must not hold a stage for minutes (MLflow's own defaults retry
# for ~2 min per request): at most this many retries of this many seconds each, unless the user set them.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
               "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


@contextlib.contextmanager
def _store_lock(root: Path) -> Iterator[None]:
    """One flush at a time per repository: creating and migrating a fresh SQLite store from several
    processes at once races on its tables (`table _alembic_tmp_latest_metrics already exists`) and can
    leave it broken for every later stage."""
    import fcntl

    lock = root / "mlruns" / ".flush.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def flush_pending(root: Path | str = ".", only: list[Path] | None = None) -> dict[str, int]:
    """Send the pending runs to the store (oldest first) and remove each once sent. A run still
    RUNNING is left for later unless its process is gone (then it is sent as FAILED). If the store
    cannot be reached, nothing is lost: the pending runs stay for the next flush. Flushes of one
    repository are serialised by a file lock; a tracking server's requests are bounded (HTTP_LIMITS)."""
    root = Path(root)
    for key, value in HTTP_LIMITS.items():
        os.environ.setdefault(key, value)
    with _store_lock(root):
        return _flush(root, only)


def _flush(root: Path, only: list[Path] | None) -> dict[str, int]:
    folders = sorted(only if only is not None else (root / PENDING).glob("*/"))
    folders = [f for f in folders if (f / "run.json").is_file()]
    counts = {"sent": 0, "running": 0, "kept": 0}
    if not folders:
        return counts
    uri = tracking_uri(root)
    try:
        client = _client(uri)
        experiment_id = _experiment_id(client, uri, root)
    except Exception as exc:  # noqa: BLE001 - store down: keep everything for the next flush
        print(f"genbench: MLflow store {uri} not reachable ({type(exc).__name__}: {str(exc)[:200]}); "
              f"{len(folders)} run(s) kept in {root / PENDING} for the next flush (`genbench track`)", file=sys.stderr)
        counts["kept"] = len(folders)
        return counts
    for folder in folders:
        record = json.loads((folder / "run.json").read_text())
        if record["status"] == "RUNNING":
            if not _process_gone(record):
                counts["running"] += 1
                continue
            record.update(status="FAILED")
            record["tags"]["genbench.interrupted"] = "the stage's process ended without closing its run"
        try:
            _send(client, experiment_id, folder, record)
        except Exception as exc:  # noqa: BLE001 - keep this run and the rest
            print(f"genbench: sending {record['run_name']} to MLflow failed ({type(exc).__name__}: "
                  f"{str(exc)[:200]}); kept in {folder}", file=sys.stderr)
            counts["kept"] += 1
            continue
        shutil.rmtree(folder)
        counts["sent"] += 1
    return counts
