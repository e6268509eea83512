"""The command line: dry runs, clear errors without tracebacks, and the benchmark."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from genbench.cli import main


def test_dry_run_prints_the_resolved_config_and_writes_nothing(workdir, capsys):
    before = sorted(p.name for p in workdir.iterdir())
    assert main(["train", "--run", "vae_mnist", "--seed", "0", "--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["spec"]["train"]["steps"] == 12 and out["job"] == "vae_mnist-s0"
    assert sorted(p.name for p in workdir.iterdir()) == before


def test_unknown_run_is_one_clear_line(workdir, capsys):
    assert main(["train", "--run", "nope", "--seed", "0"]) == 2
    err = capsys.readouterr().err
    assert "run 'nope' is not in params.yaml" in err and "vae_mnist" in err


def test_missing_prepared_data_names_the_stage_to_run(workdir, capsys):
    import shutil

    shutil.rmtree(workdir / "data")
    assert main(["train", "--run", "vae_mnist", "--seed", "0"]) == 2
    err = capsys.readouterr().err
    assert "genbench prepare --dataset mnist" in err
    assert not (workdir / "runs" / "vae_mnist-s0" / "outcome.json").exists()


def test_sample_before_train_is_refused(workdir, capsys):
    assert main(["sample", "--run", "vae_mnist", "--seed", "0"]) == 2
    assert "genbench train" in capsys.readouterr().err
    assert not (workdir / "samples").exists()


def test_divergence_with_fail_policy_exits_3(workdir, monkeypatch):
    import yaml

    raw = yaml.safe_load((workdir / "params.yaml").read_text())
    raw["harness"]["on_divergence"] = "fail"
    raw["runs"]["vae_mnist"]["train"]["lr"] = 1.0e30  # a learning rate that blows the weights up
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("GENBENCH_TRACKING", "on")  # recorded in mlruns/pending/, not sent
    assert main(["train", "--run", "vae_mnist", "--seed", "0"]) == 3
    outcome = json.loads((workdir / "runs" / "vae_mnist-s0" / "outcome.json").read_text())
    assert outcome["status"] == "diverged" and outcome["diverged_at_step"] >= 0
    # its MLflow run ends FAILED (not FINISHED), with the outcome tag
    (record,) = [json.loads(p.read_text()) for p in (workdir / "mlruns" / "pending").glob("*/run.json")]
    assert record["status"] == "FAILED" and record["tags"]["outcome"] == "diverged"


def test_bench_prints_throughput_and_overhead(workdir):
    env = {**os.environ, "GENBENCH_TRACKING": "off"}
    proc = subprocess.run([sys.executable, "-m", "genbench.cli", "bench", "--steps", "5", "--repeats", "2", "--warmup-s", "0.05",
                           "--segment-s", "0.05", "--out", "bench.json"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "overhead" in proc.stdout
    rows = {r["model"]: r for r in json.loads((workdir / "bench.json").read_text())["throughput"]}
    row, gan = rows["vae"], rows["sgan"]
    assert row["model"] == "vae" and row["train_images_per_s_bare"] > 0 and row["sample_images_per_s"] > 0
    assert set(row["eval_seconds_per_example"]) == {"elbo", "iwae"}
    # a GAN: its discriminator and generator updates timed apart
    assert gan["model"] == "sgan" and gan["n_critic"] == 2 and gan["eval_seconds_per_example"] == {}
    assert gan["discriminator_update_images_per_s"] > 0 and gan["generator_update_images_per_s"] > 0
    assert "D update img/s" in proc.stdout
    # iterative samplers: network evaluations per second (diffusion steps, Langevin steps)
    assert rows["ddpm"]["sampling_network_evaluations"] == 5 and rows["ddpm"]["network_evaluations_per_s"] > 0
    assert rows["igebm"]["sampling_network_evaluations"] == 2 and rows["igebm"]["network_evaluations_per_s"] > 0
    assert set(rows["ddpm"]["eval_seconds_per_example"]) == {"vlb", "estimate"}
    assert "image evaluations/s" in proc.stdout


def test_the_classifier_stage_puts_the_shipped_pinned_ruler_in_place(workdir, monkeypatch, capsys):
    """FID[classifier-mnist] uses the same weights on every machine: the stage copies the shipped file
    after checking its sha256 against the pin, and refuses a damaged one (exit 2, nothing written)."""
    import genbench.layout as layout
    from genbench.io import sha256_file

    assert main(["classifier", "--dataset", "mnist"]) == 0
    placed = workdir / "artifacts" / "classifiers" / "mnist.pt"
    assert sha256_file(placed) == layout.SHIPPED_CLASSIFIERS["mnist"]
    record = json.loads((workdir / "artifacts" / "classifiers" / "mnist.json").read_text())
    assert record["source"] == "shipped" and record["val_accuracy"] > 0.98
    placed.unlink()
    monkeypatch.setitem(layout.SHIPPED_CLASSIFIERS, "mnist", "0" * 64)
    assert main(["classifier", "--dataset", "mnist"]) == 2
    assert "pinned 0000" in capsys.readouterr().err and not placed.exists()


def test_the_theory_stage_writes_its_figures_with_their_protocol_and_refuses_an_unknown_check(workdir, capsys):
    """`genbench theory --check <name>`: the check's settings (filled in) and result in metrics/theory-<name>.json,
    the same figures on a second run (seeded); a check not in params.yaml is one line, exit 2, nothing written."""
    import yaml

    raw = yaml.safe_load((workdir / "params.yaml").read_text())
    raw["theory"] = {"variance": {"sizes": [2, 4], "replicates": 2000, "distributions": ["normal"]}}
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["theory", "--check", "hubness"]) == 2
    assert "theory check 'hubness' is not in params.yaml `theory`" in capsys.readouterr().err
    assert not (workdir / "metrics").exists()
    assert main(["theory", "--check", "variance"]) == 0
    first = json.loads((workdir / "metrics" / "theory-variance.json").read_text())
    assert first["settings"]["bernoulli_p"] == 0.3 and first["settings"]["replicates"] == 2000   # defaults filled in
    assert [r["n"] for r in first["result"]["rows"]] == [2, 4] and first["code_version"]["commit"] is not None
    assert main(["theory", "--check", "variance"]) == 0
    assert json.loads((workdir / "metrics" / "theory-variance.json").read_text())["result"] == first["result"]


def test_every_shipped_ruler_matches_its_pin_and_says_how_it_was_trained():
    """genbench/rulers/: one classifier per pinned dataset, its bytes hashing to the pin, with a record of the
    command, settings and validation accuracy that made it (the FID[classifier-<dataset>] column's ruler)."""
    from genbench import layout
    from genbench.io import sha256_file

    assert {"mnist", "fashion_mnist"} <= set(layout.SHIPPED_CLASSIFIERS)
    for dataset in layout.SHIPPED_CLASSIFIERS:
        weights, pin = layout.shipped_classifier(dataset)
        assert sha256_file(weights) == pin, dataset
        record = json.loads(weights.with_suffix(".json").read_text())
        assert f"--dataset {dataset}" in record["trained_with"] and record["val_accuracy"] > 0.9, dataset


def _progress_on(workdir) -> None:
    text = (workdir / "params.yaml").read_text()
    (workdir / "params.yaml").write_text(text.replace("progress: false", "progress: true"))


def test_without_a_terminal_a_stage_draws_no_bar_and_prints_one_line_with_its_wall_time(workdir, capsys):
    """CI logs: stdout not a TTY (here captured), harness.progress true: no tqdm bar (the stages' nor the
    libraries'), one `genbench <stage> <job>: done in N s` line; tqdm is itself again afterwards."""
    import tqdm

    _progress_on(workdir)
    original = tqdm.tqdm.__dict__["__init__"]
    assert main(["train", "--run", "vae_mnist", "--seed", "0"]) == 0
    out, err = capsys.readouterr()
    assert "%|" not in err and "it/s" not in err, err
    lines = [line for line in out.splitlines() if line.startswith("genbench train vae_mnist-s0: done in ")]
    assert len(lines) == 1 and lines[0].endswith(" s)"), out
    assert tqdm.tqdm.__dict__["__init__"] is original
    row = json.loads((workdir / "logs" / "stage-times.jsonl").read_text().splitlines()[-1])
    assert row["stage"] == "train" and row["work_s"] > 0


def test_at_a_terminal_a_stage_draws_its_progress_bar_with_eta(workdir):
    """stdout a terminal (a pseudo-terminal here) and harness.progress true: the training bar, with its ETA,
    on stderr, and no wall-time line; harness.progress false: the line, no bar."""
    import pty

    _progress_on(workdir)

    def run_at_terminal():
        leader, follower = pty.openpty()
        proc = subprocess.run([sys.executable, "-m", "genbench.cli", "train", "--run", "vae_mnist", "--seed", "0"],
                              cwd=workdir, stdout=follower, stderr=subprocess.PIPE, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(leader)
        return proc, out.decode()

    proc, out = run_at_terminal()
    assert proc.returncode == 0, proc.stderr
    assert "train vae_mnist-s0: 100%|" in proc.stderr and "<00:00" in proc.stderr, proc.stderr  # [elapsed<ETA]
    assert "done in" not in out, out
    (workdir / "params.yaml").write_text((workdir / "params.yaml").read_text().replace("progress: true",
                                                                                        "progress: false"))
    proc, out = run_at_terminal()
    assert proc.returncode == 0 and "%|" not in proc.stderr, proc.stderr
    assert "genbench train vae_mnist-s0: done in" in out, out


def test_evaluate_draws_the_samples_unless_those_of_the_same_inputs_are_there(workdir, capsys):
    """The evaluate stage draws a job's samples, then scores them (one DVC stage per job). Run again on the same
    inputs it keeps the samples, and a change to scoring alone does too; a damaged sample file, a changed
    sampling setting or a changed trained run makes it draw again, and the same inputs draw the same samples."""
    import numpy as np
    import yaml

    for args in (["classifier", "--dataset", "mnist"], ["refstats", "--dataset", "mnist"],
                 ["train", "--run", "vae_mnist", "--seed", "0"]):
        assert main(args) == 0
    samples = workdir / "samples" / "vae_mnist-s0" / "samples.npz"
    params = workdir / "params.yaml"

    def evaluate() -> bool:
        """Evaluate; whether the samples were drawn."""
        capsys.readouterr()
        assert main(["evaluate", "--run", "vae_mnist", "--seed", "0"]) == 0
        out = capsys.readouterr().out
        assert (workdir / "metrics" / "vae_mnist-s0.json").is_file()
        return "samples kept" not in out

    def setting(section: str, key: str, value) -> None:
        raw = yaml.safe_load(params.read_text())
        raw[section][key] = value
        params.write_text(yaml.safe_dump(raw))

    drawn = lambda: np.load(samples)["x"]  # noqa: E731
    assert evaluate()
    first, stamp = drawn(), samples.stat().st_mtime_ns
    assert not evaluate() and samples.stat().st_mtime_ns == stamp  # the same inputs: kept
    setting("eval", "kid_subsets", 4)  # scoring only
    assert not evaluate() and samples.stat().st_mtime_ns == stamp
    samples.write_bytes(b"damaged")
    assert evaluate() and np.array_equal(drawn(), first)  # drawn again: the same samples
    setting("eval", "seed", 99)  # the sampling seed
    assert evaluate() and not np.array_equal(drawn(), first)
    setting("eval", "seed", 1234)
    assert evaluate() and np.array_equal(drawn(), first)
    with open(workdir / "runs" / "vae_mnist-s0" / "stats.jsonl", "a") as log:  # the trained run changed
        log.write("\n")
    assert evaluate() and np.array_equal(drawn(), first)
    assert not evaluate()


def test_fit_writes_what_train_then_score_write(workdir):
    """`genbench fit`, a supervised job's one pipeline stage, gives the figures that `genbench train` and then
    `genbench score`, each its own process (the two stages before), give: the same trials, the same choice,
    the same test figures to the last bit (timings aside)."""
    import shutil
    from pathlib import Path

    import yaml

    from tests.test_accuracy import ACC_RUN

    raw = yaml.safe_load((workdir / "params.yaml").read_text())
    raw["runs"]["acc"] = ACC_RUN
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "GENBENCH_TRACKING": "off", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def figures(*stages: str) -> dict:
        shutil.rmtree(workdir / "runs", ignore_errors=True)
        shutil.rmtree(workdir / "metrics", ignore_errors=True)
        for stage in stages:
            done = subprocess.run([sys.executable, "-m", "genbench.cli", stage, "--run", "acc", "--seed", "0"],
                                  cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr
        m = json.loads((workdir / "metrics" / "acc-s0.json").read_text())
        timing = ("score_time_s", "train_time_s", "train_images_per_s")
        for record in [m, m["train"], *m["trials"]]:
            for key in timing:
                record.pop(key, None)
        return m

    apart = figures("train", "score")
    assert apart["status"] == "completed" and len(apart["trials"]) == 2
    assert figures("fit") == apart
    assert subprocess.run([sys.executable, "-m", "genbench.cli", "fit", "--run", "vae_mnist", "--seed", "0"],
                          cwd=workdir, env=env, capture_output=True, text=True).returncode == 2  # a generative run
