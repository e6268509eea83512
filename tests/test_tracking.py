"""MLflow tracking: a real `mlflow server` on loopback and the embedded SQLite default."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from genbench.tracking import PENDING, flush_pending, stage_run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not start on loopback within 90 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("mode", ["on", "live"])
def test_train_stage_is_tracked_on_a_real_server(workdir, mlflow_server, mode):
    """`on`: the stage records its run under mlruns/pending/ and `genbench track` sends it; `live`: the
    stage sends it itself as it ends."""
    from mlflow.tracking import MlflowClient

    env = {**os.environ, "GENBENCH_TRACKING": mode, "MLFLOW_TRACKING_URI": mlflow_server}
    proc = subprocess.run([sys.executable, "-m", "genbench.cli", "train", "--run", "vae_mnist", "--seed", "0"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(tracking_uri=mlflow_server)

    def runs():
        experiment = client.get_experiment_by_name("genbench")
        return [] if experiment is None else client.search_runs(
            [experiment.experiment_id], "attributes.run_name = 'train:vae_mnist-s0'",
            order_by=["attributes.start_time DESC"])

    before = len(runs())
    if mode == "on":
        assert len(list((workdir / PENDING).iterdir())) == 1  # recorded, not sent yet
        proc = subprocess.run([sys.executable, "-m", "genbench.cli", "track"], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "1 stage run(s) sent" in proc.stdout, proc.stdout + proc.stderr
        assert len(runs()) == before + 1
    assert not list((workdir / PENDING).iterdir())
    run = runs()[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["spec.train.lr"] == "0.001"
    assert run.data.params["spec.model_config.latent_dim"] == "4"
    assert run.data.tags["genbench.stage"] == "train" and run.data.tags["outcome"] == "completed"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(2, 13, 2))  # every log_every=2 steps of 12
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"stats.jsonl", "outcome.json"} <= artifacts
    assert not (workdir / "mlflow.db").exists()  # MLFLOW_TRACKING_URI wins over the embedded store


def test_default_store_is_sqlite_in_the_repo_and_failures_are_marked(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENBENCH_TRACKING", "on")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with stage_run("evaluate", "job-ok", params={"a": {"b": 1}}, tags={"protocol": {"n_gen": 10}}) as t:
        t.log_metrics({"fid": 1.5}, step=3)
    with pytest.raises(RuntimeError):
        with stage_run("evaluate", "job-bad"):
            raise RuntimeError("boom")
    assert flush_pending(tmp_path) == {"sent": 2, "running": 0, "kept": 0}
    assert (tmp_path / "mlflow.db").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("genbench").experiment_id])}
    assert runs["evaluate:job-ok"].info.status == "FINISHED"
    assert runs["evaluate:job-ok"].data.params["a.b"] == "1"
    assert runs["evaluate:job-ok"].data.tags["protocol.n_gen"] == "10"
    assert runs["evaluate:job-ok"].data.metrics["fid"] == 1.5
    assert runs["evaluate:job-bad"].info.status == "FAILED"


def test_an_unreachable_store_loses_no_run_and_a_killed_stage_is_sent_as_failed(tmp_path, monkeypatch):
    """Outage: the flush keeps every pending run and says so; the next flush sends them. A stage whose
    process died with its run open (kill -9) is sent as FAILED, marked interrupted; one still running is kept."""
    import json

    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENBENCH_TRACKING", "on")
    (tmp_path / "a-file").write_text("")  # a store under a regular file cannot be created: the store is down
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}")
    with stage_run("train", "job-a", params={"lr": 0.1}) as t:
        t.log_rows([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}])
        (tmp_path / "stats.jsonl").write_text("{}\n")
        t.log_artifact(tmp_path / "stats.jsonl")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / PENDING / "0-killed"
    killed.mkdir()
    record = {"run_name": "train:job-b", "status": "RUNNING", "pid": dead.pid, "host": os.uname().nodename,
              "start_time": 1, "end_time": None, "params": {}, "tags": {}, "metrics": [], "artifacts": []}
    (killed / "run.json").write_text(json.dumps(record))
    alive = tmp_path / PENDING / "1-alive"
    alive.mkdir()
    (alive / "run.json").write_text(json.dumps({**record, "run_name": "train:job-c", "pid": os.getpid()}))

    assert flush_pending(tmp_path) == {"sent": 0, "running": 0, "kept": 3}
    assert len(list((tmp_path / PENDING).iterdir())) == 3

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert flush_pending(tmp_path) == {"sent": 2, "running": 1, "kept": 0}
    client = MlflowClient(tracking_uri=uri)
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("genbench").experiment_id])}
    assert set(runs) == {"train:job-a", "train:job-b"}
    assert runs["train:job-a"].info.status == "FINISHED" and runs["train:job-a"].data.params["lr"] == "0.1"
    assert [m.value for m in client.get_metric_history(runs["train:job-a"].info.run_id, "loss")] == [2.0, 1.0]
    assert {a.path for a in client.list_artifacts(runs["train:job-a"].info.run_id)} == {"stats.jsonl"}
    assert runs["train:job-b"].info.status == "FAILED" and "genbench.interrupted" in runs["train:job-b"].data.tags
    assert [p.name for p in (tmp_path / PENDING).iterdir()] == ["1-alive"]


def test_four_stages_starting_at_once_on_a_fresh_store_all_arrive(tmp_path):
    """Four processes in live mode (each sends its own run as it ends) on a store that does not exist yet:
    the flushes are serialised, the store is created once, and every run arrives FINISHED."""
    from mlflow.tracking import MlflowClient

    code = ("import sys\n"
            "from genbench.tracking import stage_run\n"
            "with stage_run('train', sys.argv[1], params={'lr': 0.1}) as t:\n"
            "    t.log_metrics({'loss': 1.0}, step=1)\n")
    env = {**os.environ, "GENBENCH_TRACKING": "live", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = [subprocess.Popen([sys.executable, "-c", code, f"job-{i}"], cwd=tmp_path, env=env,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert not any("already exists" in e or "not reachable" in e for e in errors), errors
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("genbench").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"train:job-{i}" for i in range(4)]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert not list((tmp_path / PENDING).iterdir())


def test_a_dead_tracking_server_costs_a_bounded_wait_and_the_runs_reach_it_later(tmp_path, monkeypatch,
                                                                                  mlflow_server):
    """MLFLOW_TRACKING_URI pointing at a port where nothing answers: a live-mode stage finishes within a
    bound (60 s, not MLflow's minutes of retries), keeps its run on disk and says so once; `genbench track`
    sends it when a server answers, metric history included."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENBENCH_TRACKING", "live")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    t0 = time.monotonic()
    with stage_run("train", "job-dead", params={"lr": 0.1}) as t:
        t.log_rows([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}])
    assert time.monotonic() - t0 < 60
    assert len(list((tmp_path / PENDING).iterdir())) == 1
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    assert flush_pending(tmp_path) == {"sent": 1, "running": 0, "kept": 0}
    client = MlflowClient(tracking_uri=mlflow_server)
    run = [r for r in client.search_runs([client.get_experiment_by_name("genbench").experiment_id])
           if r.info.run_name == "train:job-dead"][0]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [2.0, 1.0]
