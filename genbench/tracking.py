"""MLflow tracking: one MLflow run per stage execution, recorded locally first, then sent to the store.

Layout in the store, for comparing: one MLflow experiment per experiment family (`experiment_name`:
`genbench/images-<dataset>`, `genbench/toy2d`, `genbench/accuracy`, `genbench/sts`, `genbench/discrete`,
`genbench/codebook`, `genbench/representation`, `genbench/theory`; the data and report stages go to
`genbench/pipeline`). A job's (run, seed) stages are nested child runs (`mlflow.parentRunId`) of one parent
run per job, named after the job; the parent holds the job's results as metrics (evaluate's figures, the score
stages' accuracies and probes, `wall_s.<stage>`), its sample grid and metrics file as artifacts, and the job's
tags. Every run carries the tags `model`, `dataset`, `profile`, `seed`, `run`, `job`, `stage` (`job` on a
parent), `family` (the model's family module: gans, flows, vae, ...) where they apply, and `genbench.role`
(`job` or `stage`). The parent is found again by a tag search (job, profile), so stages run in separate
processes, by DVC or Snakemake, nest under the same parent.

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

EXPERIMENT = "genbench"  # the experiment of runs recorded before the families (their records name none)
PIPELINE_EXPERIMENT = "genbench/pipeline"  # prepare, weights, classifier, refstats, report
PARENT_TAG = "mlflow.parentRunId"  # what mlflow.start_run(nested=True) sets
CREATED_TAG = "genbench.parent_created_ms"  # a parent's creation time: the oldest of duplicates wins
PENDING = Path("mlruns/pending")
BATCH_PARAMS_TAGS = 100  # MLflow's limits per log_batch call
BATCH_METRICS = 1000
# seconds this process spent recording its runs, and inside them (the stage's own work); reset by genbench.cli.main
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


def experiment_name(model_module: str | None = None, task_module: str | None = None, dataset: str | None = None,
                    stage: str | None = None) -> str:
    """The MLflow experiment of a run: one per experiment family (see the module doc). `model_module`: the
    model's family module (genbench.resolve.family_module), `task_module`: genbench.resolve.task_module."""
    if stage == "theory":
        return "genbench/theory"
    if model_module is None:
        return PIPELINE_EXPERIMENT
    by_task = {"genbench.score": "accuracy", "genbench.sts": "sts", "genbench.representation": "representation"}
    if task_module in by_task:
        return f"genbench/{by_task[task_module]}"
    family = model_module.rsplit(".", 1)[-1]
    if family == "catvae":
        return "genbench/discrete"
    if family == "vq":
        return "genbench/codebook"
    if dataset and dataset.startswith("toy_"):
        return "genbench/toy2d"
    return f"genbench/images-{dataset}"


class Tracker:
    """The run a stage records (a no-op when tracking is off): what it logs is kept in its pending
    folder, written to disk at once, so a killed stage loses nothing it logged."""

    def __init__(self, folder: Path | None = None, record: dict[str, Any] | None = None):
        self.folder = folder
        self.record = record
        self.failed = False  # set by a stage that ends in failure without raising
        # what also goes to the job's parent run: the metrics of log_metrics (a stage's results, not its
        # per-step history), and artifacts of these files (resolved paths)
        self.results_to_parent = False
        self.artifacts_to_parent: set[str] = set()

    def _save(self) -> None:
        from genbench.io import write_json

        write_json(self.folder / "run.json", self.record)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.log_rows([dict(metrics, step=step or 0)])
        if self.results_to_parent:
            self.log_parent_metrics(metrics, step)

    def log_parent_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Metrics of the job's parent run (a no-op outside a job's stage)."""
        if self.folder is None or self.record.get("parent") is None:
            return
        now = _now_ms()
        self.record["parent_metrics"] += [[k, float(v), now, int(step or 0)] for k, v in metrics.items()
                                          if isinstance(v, (int, float)) and not isinstance(v, bool)]
        self._save()

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
        if str(path.resolve()) in self.artifacts_to_parent and self.record.get("parent") is not None:
            self.record["parent_artifacts"].append([stored.name, path.name, artifact_path])
        self._save()


@contextlib.contextmanager
def stage_run(stage: str, job: str, *, params: dict | None = None, tags: dict | None = None,
              root: Path | str = ".", experiment: str | None = None, parent: bool = False,
              results_to_parent: bool = False, artifacts_to_parent: tuple[Path | str, ...] = ()) -> Iterator[Tracker]:
    """Record a run named `<stage>:<job>`; it ends FINISHED, or FAILED if the block raises or sets
    `tracker.failed` (a stage that exits non-zero without an exception: a diverged run under
    `on_divergence: fail`).

    `experiment`: its MLflow experiment (default: by `experiment_name(stage=stage)`). `parent`: a job's stage,
    nested under the job's parent run (named `job`, carrying `tags`), which also gets the stage's wall time as
    `wall_s.<stage>`, its `log_metrics` when `results_to_parent`, and its artifacts of the files
    `artifacts_to_parent`."""
    t0 = time.perf_counter()
    if not tracking_enabled():
        yield Tracker()
        STAGE_TIMES["work_s"] = STAGE_TIMES.get("work_s", 0.0) + time.perf_counter() - t0
        return
    folder = Path(root) / PENDING / f"{_now_ms()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    flat_tags = {k: v[:5000] for k, v in flatten(tags or {}).items()}
    tracker = Tracker(folder, {
        "run_name": f"{stage}:{job}", "status": "RUNNING", "pid": os.getpid(), "host": os.uname().nodename,
        "start_time": _now_ms(), "end_time": None,
        "experiment": experiment or experiment_name(stage=stage),
        "params": {k: v[:6000] for k, v in flatten(params or {}).items()},
        "tags": {"genbench.stage": stage, "genbench.job": job, "genbench.role": "stage", "stage": stage, "job": job,
                 **flat_tags},
        "parent": {"name": job, "tags": {**flat_tags, "genbench.job": job, "genbench.role": "job", "job": job,
                                         "stage": "job"}} if parent else None,
        "parent_metrics": [], "parent_artifacts": [],
        "metrics": [], "artifacts": []})
    tracker.results_to_parent = results_to_parent
    tracker.artifacts_to_parent = {str(Path(p).resolve()) for p in artifacts_to_parent}
    tracker._save()
    STAGE_TIMES["tracking_s"] += time.perf_counter() - t0
    t_work = time.perf_counter()
    status = "FAILED"
    try:
        yield tracker
        status = "FAILED" if tracker.failed else "FINISHED"
    finally:
        t1 = time.perf_counter()
        STAGE_TIMES["work_s"] = STAGE_TIMES.get("work_s", 0.0) + t1 - t_work  # `genbench fit`: two stage runs
        tracker.log_parent_metrics({f"wall_s.{stage}": t1 - t_work})
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


def _experiment_id(client, uri: str, root: Path, name: str = EXPERIMENT) -> str:
    import mlflow

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    folder = name.replace("/", "-")  # mlruns/genbench-images-mnist/<run id>/artifacts
    location = (root.resolve() / "mlruns" / folder).as_uri() if uri.startswith("sqlite:") else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created meanwhile by another process
        return client.get_experiment_by_name(name).experiment_id


def _quoted(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parents(client, experiment_id: str, tags: dict[str, str]) -> list:
    """The live parent runs of a job (by its tags `genbench.job` and `profile`), the oldest first."""
    query = " and ".join([f"tags.`genbench.role` = 'job'", f"tags.`genbench.job` = {_quoted(tags['genbench.job'])}"]
                         + ([f"tags.`profile` = {_quoted(tags['profile'])}"] if "profile" in tags else []))
    runs = client.search_runs([experiment_id], query, max_results=1000)
    return sorted(runs, key=lambda r: (int(r.data.tags.get(CREATED_TAG, r.info.start_time or 0)), r.info.run_id))


def _parent_run_id(client, experiment_id: str, parent: dict[str, Any], start_time: int) -> str:
    """The job's parent run: found by a tag search, else created. Flushes of one repository are serialised
    (_store_lock), so there creation cannot race; repositories (or machines) sharing one tracking server
    can: each creator searches again after creating, and the oldest parent (creation time, then run id)
    wins; a creator that lost deletes its own before nesting anything under it."""
    found = _parents(client, experiment_id, parent["tags"])
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, start_time=start_time, run_name=parent["name"],
                            tags={**parent["tags"], CREATED_TAG: str(_now_ms())})
    run_id = run.info.run_id
    winner = _parents(client, experiment_id, parent["tags"])[0].info.run_id
    if winner != run_id:
        client.delete_run(run_id)
        return winner
    return run_id


def _update_parent(client, parent_id: str, folder: Path, record: dict[str, Any]) -> None:
    """The job's results, tags, new params, artifacts and span go to its parent run."""
    from mlflow.entities import Metric, Param, RunTag

    parent = client.get_run(parent_id)
    params = [Param(k, v) for k, v in record["params"].items() if k not in parent.data.params]
    changed = sorted(k for k, v in record["params"].items() if k in parent.data.params and parent.data.params[k] != v)
    tags = [RunTag(k, v) for k, v in record["parent"]["tags"].items()]
    if changed:  # MLflow params cannot change: the stage runs hold the current values
        tags.append(RunTag("genbench.params_changed", ",".join(changed)[:5000]))
    for start in range(0, max(len(params), len(tags)), BATCH_PARAMS_TAGS):
        client.log_batch(parent_id, params=params[start:start + BATCH_PARAMS_TAGS],
                         tags=tags[start:start + BATCH_PARAMS_TAGS])
    metrics = [Metric(k, v, t, s) for k, v, t, s in record.get("parent_metrics", [])]
    for start in range(0, len(metrics), BATCH_METRICS):
        client.log_batch(parent_id, metrics=metrics[start:start + BATCH_METRICS])
    for stored, name, artifact_path in record.get("parent_artifacts", []):
        _upload(client, parent_id, folder, stored, name, artifact_path)
    # the parent spans its stages; it ends FAILED when the stage sent last failed
    end = max(parent.info.end_time or 0, record["end_time"] or _now_ms())
    client.set_terminated(parent_id, record["status"], end_time=end)


def _upload(client, run_id: str, folder: Path, stored: str, name: str, artifact_path: str | None) -> None:
    staged = folder / "upload" / name  # MLflow names the artifact after the file
    staged.parent.mkdir(exist_ok=True)
    shutil.copy2(folder / "artifacts" / stored, staged)
    client.log_artifact(run_id, str(staged), artifact_path)
    staged.unlink()


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
    parent_id = None
    if record.get("parent"):
        parent_id = _parent_run_id(client, experiment_id, record["parent"], record["start_time"])
    run = client.create_run(experiment_id, start_time=record["start_time"], run_name=record["run_name"],
                            tags={PARENT_TAG: parent_id} if parent_id else None)
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
        _upload(client, run_id, folder, stored, name, artifact_path)
    client.set_terminated(run_id, record["status"], end_time=record["end_time"] or _now_ms())
    if parent_id:
        _update_parent(client, parent_id, folder, record)


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
    experiments: dict[str, str] = {}
    uri = tracking_uri(root)
    try:
        client = _client(uri)
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
            name = record.get("experiment", EXPERIMENT)
            if name not in experiments:
                experiments[name] = _experiment_id(client, uri, root, name)
            _send(client, experiments[name], folder, record)
        except Exception as exc:  # noqa: BLE001 - keep this run and the rest
            print(f"genbench: sending {record['run_name']} to MLflow failed ({type(exc).__name__}: "
                  f"{str(exc)[:200]}); kept in {folder}", file=sys.stderr)
            counts["kept"] += 1
            continue
        shutil.rmtree(folder)
        counts["sent"] += 1
    return counts
