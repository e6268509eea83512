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

from genbench.tracking import stage_run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
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


def test_train_stage_is_tracked_on_a_real_server(workdir, mlflow_server):
    from mlflow.tracking import MlflowClient

    env = {**os.environ, "GENBENCH_TRACKING": "on", "MLFLOW_TRACKING_URI": mlflow_server}
    proc = subprocess.run([sys.executable, "-m", "genbench.cli", "train", "--run", "vae_mnist", "--seed", "0"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("genbench")
    (run,) = client.search_runs([experiment.experiment_id], "attributes.run_name = 'train:vae_mnist-s0'")
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
    assert (tmp_path / "mlflow.db").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("genbench").experiment_id])}
    assert runs["evaluate:job-ok"].info.status == "FINISHED"
    assert runs["evaluate:job-ok"].data.params["a.b"] == "1"
    assert runs["evaluate:job-ok"].data.tags["protocol.n_gen"] == "10"
    assert runs["evaluate:job-ok"].data.metrics["fid"] == 1.5
    assert runs["evaluate:job-bad"].info.status == "FAILED"
