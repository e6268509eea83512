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

from genbench.tracking import PENDING, PIPELINE_EXPERIMENT, flush_pending, stage_run


def _runs_by_name(client, *experiments: str) -> dict:
    ids = [e.experiment_id for e in map(client.get_experiment_by_name, experiments) if e is not None]
    return {r.info.run_name: r for r in client.search_runs(ids)} if ids else {}


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
        experiment = client.get_experiment_by_name("genbench/images-mnist")
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
    assert {k: run.data.tags[k] for k in ("stage", "job", "run", "seed", "model", "dataset", "profile", "family")} \
        == {"stage": "train", "job": "vae_mnist-s0", "run": "vae_mnist", "seed": "0", "model": "vae",
            "dataset": "mnist", "profile": "tiny", "family": "vae"}
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])  # nested under the job's run
    assert parent.info.run_name == "vae_mnist-s0" and parent.data.tags["stage"] == "job"
    assert parent.data.params["spec.train.lr"] == "0.001" and parent.data.metrics["wall_s.train"] > 0
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
    runs = _runs_by_name(client, PIPELINE_EXPERIMENT)
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
    runs = _runs_by_name(client, "genbench", PIPELINE_EXPERIMENT)  # records of before the families: "genbench"
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
    runs = client.search_runs([client.get_experiment_by_name(PIPELINE_EXPERIMENT).experiment_id])
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
    run = _runs_by_name(client, PIPELINE_EXPERIMENT)["train:job-dead"]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [2.0, 1.0]


# --------------------------------------------------------------------------------------------------
# For comparing: one experiment per family, one parent run per job, the job's figures on the parent
# --------------------------------------------------------------------------------------------------
def test_fid_of_every_gan_on_mnist_seed_by_seed_is_one_query_and_matches_the_metrics_files(workdir, monkeypatch):
    """Tiny jobs' stages, run as the pipelines run them, tracked into a temporary SQLite store: each job is one
    parent run (found again across flushes, as by stages in separate processes) with its stages nested under
    it; re-running a stage adds a child, not a parent; `mlflow.search_runs` filtered by tags gives each GAN's
    FID on MNIST seed by seed, the very figures of metrics/<job>.json that the leaderboard reads."""
    import json

    import mlflow
    from mlflow.tracking import MlflowClient

    from genbench.cli import main

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    monkeypatch.setenv("GENBENCH_TRACKING", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["classifier", "--dataset", "mnist"]) == 0
    assert main(["refstats", "--dataset", "mnist"]) == 0
    jobs = [("sgan_mnist", 0), ("sgan_mnist", 1), ("vae_mnist", 0)]
    for i, (run, seed) in enumerate(jobs):
        for stage in ("train", "evaluate"):  # the pipeline's stages: evaluate draws the samples first
            assert main([stage, "--run", run, "--seed", str(seed)]) == 0
        if i == 0:  # the first job reaches the store before the others: its parent is found again below
            assert flush_pending(workdir)["kept"] == 0
    assert main(["evaluate", "--run", "sgan_mnist", "--seed", "0"]) == 0  # a re-run: a second child, no second parent
    assert flush_pending(workdir) == {"sent": 5, "running": 0, "kept": 0}

    client = MlflowClient(tracking_uri=uri)
    assert {e.name for e in client.search_experiments()} >= {"genbench/images-mnist", PIPELINE_EXPERIMENT}
    pipeline = _runs_by_name(client, PIPELINE_EXPERIMENT)
    assert {"classifier:mnist", "refstats:mnist"} <= set(pipeline)
    assert pipeline["refstats:mnist"].data.tags["dataset"] == "mnist"

    experiment = client.get_experiment_by_name("genbench/images-mnist").experiment_id
    for run, seed in jobs:
        job = f"{run}-s{seed}"
        parents = client.search_runs([experiment], f"tags.`genbench.role` = 'job' and tags.job = '{job}'")
        assert len(parents) == 1, job
        parent = parents[0]
        assert parent.info.run_name == job and parent.info.status == "FINISHED"
        assert {k: parent.data.tags[k] for k in ("stage", "run", "seed", "profile", "dataset")} == \
            {"stage": "job", "run": run, "seed": str(seed), "profile": "tiny", "dataset": "mnist"}
        children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        stages = sorted(c.data.tags["stage"] for c in children)
        assert stages == sorted(["train", "evaluate"] + (["evaluate"] if job == "sgan_mnist-s0" else []))
        assert all(c.data.tags["job"] == job and c.data.tags["model"] == parent.data.tags["model"] for c in children)
        assert {"wall_s.train", "wall_s.evaluate", "sample_images_per_s"} <= set(parent.data.metrics)
        assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"grid.png", f"{job}.json"}
        figures = json.loads((workdir / "metrics" / f"{job}.json").read_text())
        assert parent.data.metrics["classifier.fid"] == figures["scores"]["classifier"]["fid"]

    mlflow.set_tracking_uri(uri)
    board = mlflow.search_runs(experiment_names=["genbench/images-mnist"],
                               filter_string="tags.family = 'gans' and tags.dataset = 'mnist' and tags.stage = 'job'",
                               order_by=["tags.model", "tags.seed"])
    assert list(zip(board["tags.model"], board["tags.seed"])) == [("sgan", "0"), ("sgan", "1")]
    files = [json.loads((workdir / "metrics" / f"sgan_mnist-s{s}.json").read_text()) for s in (0, 1)]
    for figure in ("fid", "kid_mean", "precision", "recall"):
        assert list(board[f"metrics.classifier.{figure}"]) == [f["scores"]["classifier"][figure] for f in files]
    assert list(board["metrics.hubness.classifier.fid"]) == \
        [f["variants"]["hubness"]["scores"]["classifier"]["fid"] for f in files]


def test_stages_of_two_jobs_sending_at_once_nest_under_one_parent_each(tmp_path):
    """Live mode, four stage processes (two jobs, two stages each) ending at once on a fresh store: one
    parent per job, each stage a child of its job's parent."""
    from mlflow.tracking import MlflowClient

    code = ("import sys\n"
            "from genbench.tracking import stage_run\n"
            "job, stage = sys.argv[1], sys.argv[2]\n"
            "with stage_run(stage, job, params={'lr': 0.1}, tags={'run': job, 'seed': 0, 'profile': 'p'},\n"
            "               experiment='genbench/test', parent=True, results_to_parent=True) as t:\n"
            "    t.log_metrics({'fid': float(len(job))})\n")
    env = {**os.environ, "GENBENCH_TRACKING": "live", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = [subprocess.Popen([sys.executable, "-c", code, job, stage], cwd=tmp_path, env=env,
                              stderr=subprocess.PIPE, text=True)
             for job in ("job-a", "job-bb") for stage in ("sample", "evaluate")]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("genbench/test").experiment_id])
    parents = {r.info.run_name: r for r in runs if r.data.tags["genbench.role"] == "job"}
    assert sorted(parents) == ["job-a", "job-bb"]
    for job, parent in parents.items():
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.info.run_name for r in children) == [f"evaluate:{job}", f"sample:{job}"]
        assert parent.data.metrics["fid"] == float(len(job)) and parent.data.params["lr"] == "0.1"


def test_two_creators_of_one_jobs_parent_keep_the_oldest(tmp_path, monkeypatch):
    """Repositories sharing a tracking server can both miss a job's parent and create one: the creator that
    finds an older parent on its second look deletes its own and nests under the older one."""
    from mlflow.tracking import MlflowClient

    from genbench import tracking

    client = tracking._client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = tracking._experiment_id(client, f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path, "genbench/test")
    parent = {"name": "job-x", "tags": {"genbench.job": "job-x", "genbench.role": "job", "profile": "p"}}
    older = client.create_run(experiment, run_name="job-x", tags={**parent["tags"], tracking.CREATED_TAG: "1"})
    real = tracking._parents
    calls = []

    def first_look_misses(*args):
        calls.append(1)
        return [] if len(calls) == 1 else real(*args)

    monkeypatch.setattr(tracking, "_parents", first_look_misses)
    assert tracking._parent_run_id(client, experiment, parent, 0) == older.info.run_id
    live = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs([experiment])
    assert [r.info.run_id for r in live] == [older.info.run_id]  # the newer one was deleted


def test_a_representation_jobs_probe_accuracies_are_metrics_of_its_parent_run(workdir, monkeypatch):
    """The score stages' figures (here the representation probes) go to the job's parent run in its family's
    experiment, with the metrics file as an artifact."""
    import json

    import yaml
    from mlflow.tracking import MlflowClient

    from genbench.cli import main
    from tests.test_dim import DIM_RUN

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    monkeypatch.setenv("GENBENCH_TRACKING", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    raw = yaml.safe_load((workdir / "params.yaml").read_text())
    raw["runs"]["rep"] = DIM_RUN
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw))
    assert main(["train", "--run", "rep", "--seed", "0"]) == 0
    assert main(["score", "--run", "rep", "--seed", "0"]) == 0
    assert flush_pending(workdir) == {"sent": 2, "running": 0, "kept": 0}
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("genbench/representation").experiment_id
    [parent] = client.search_runs([experiment], "tags.stage = 'job' and tags.run = 'rep'")
    figures = json.loads((workdir / "metrics" / "rep-s0.json").read_text())
    for probe in ("linear", "mlp"):
        assert parent.data.metrics[f"{probe}_probe_accuracy"] == figures[f"{probe}_probe"]["accuracy"]
    assert parent.data.tags["family"] == "dim" and "train_loss" not in parent.data.metrics
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"rep-s0.json"}


@pytest.mark.parametrize("lr", [1e-3, 0.02, 3e-4, 1.0])
def test_a_learning_rate_trials_metric_names_are_names_mlflow_accepts(lr):
    """The accuracy family's trials log `<prefix><metric>`; `lr=0.001/loss` was refused and left in pending/."""
    from mlflow.utils.validation import _validate_metric_name
    from genbench.score import trial_prefix
    for metric in ("loss", "val/accuracy", "train/loss"):
        _validate_metric_name(trial_prefix(lr) + metric)  # raises MlflowException on a refused name
