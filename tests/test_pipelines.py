"""DVC (dvc.yaml) and Snakemake (Snakefile + pipelines/) are two spellings of one DAG.

Fast: both describe the same jobs — (stage, wildcards) — with the same `genbench` commands, the paths
of genbench.layout as outputs, and dependencies that agree; `snakemake --lint` is clean; the Slurm
profile's dry run names every job's resources.
Slow: one copy of the repository runs the `ci` profile under `dvc repro`, then (outputs removed) under
Snakemake, and both give the same metrics files with identical numbers (training is deterministic on
CPU).

Every command runs in a copy of the working tree (tracked and untracked, non-ignored files), never in
the repository itself.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: dvc, snakemake, genbench
PROFILES = sorted(yaml.safe_load((REPO / "params.yaml").read_text())["profiles"])
STAGES = ("prepare", "weights", "classifier", "refstats", "train", "evaluate", "fit", "theory", "report")
# DVC's first stage writes pipelines/resolved/ (what each stage uses); Snakemake writes the same files
# when it reads the workflow, so it has no rule for it
DVC_ONLY = ("resolve",)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def copy_repo(dst: Path) -> Path:
    """The working tree (tracked + untracked non-ignored files) in dst, as a fresh git repo (DVC needs one)."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO, check=True, capture_output=True).stdout.decode()
    for rel in filter(None, listing.split("\0")):
        src = REPO / rel
        if src.is_file():  # a tracked file deleted in the working tree is left out
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    return dst


def tool_env(copy: Path) -> dict[str, str]:
    """The venv's tools, the copy's genbench package, MLflow on with its default store (in the copy)."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(copy)
    for key in ("GENBENCH_TRACKING", "MLFLOW_TRACKING_URI", "PYTHONDONTWRITEBYTECODE"):
        env.pop(key, None)
    return env


def run(args: list[str], cwd: Path, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=tool_env(cwd), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}"
                             f"\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def set_profile(copy: Path, profile: str) -> None:
    """Switch the copy to `profile`. Switched away from the committed profile, it also drops dvc.lock: every
    entry describes a stage of the committed profile, all of which the new one re-runs, and DVC re-parses and
    rewrites the whole lock (~10 000 lines, seconds) around every stage and `dvc status`."""
    path = copy / "params.yaml"
    committed = re.search(r"(?m)^profile: (.*)$", path.read_text())
    assert committed, "params.yaml has no top-level `profile:` line"
    path.write_text(path.read_text().replace(committed.group(0), f"profile: {profile}", 1))
    if committed.group(1).strip() != profile:
        (copy / "dvc.lock").unlink(missing_ok=True)


def covers(parent: str, path: str) -> bool:
    """path is parent or lies under it."""
    return PurePosixPath(path) == PurePosixPath(parent) or PurePosixPath(parent) in PurePosixPath(path).parents


def canonical_from_cmd(cmd: str) -> tuple[str, frozenset]:
    """`genbench <stage> [--key value ...]` -> (stage, {(key, value)})."""
    words = cmd.split()
    assert words[:1] == ["genbench"] and words[1] in STAGES + DVC_ONLY, f"not a genbench stage command: {cmd!r}"
    if words[1] in DVC_ONLY:
        return words[1], frozenset()
    args = words[2:]
    assert len(args) % 2 == 0 and all(a.startswith("--") for a in args[::2]), f"unexpected arguments: {cmd!r}"
    return words[1], frozenset((k[2:], v) for k, v in zip(args[::2], args[1::2]))


def canonical_from_dvc_name(name: str) -> tuple[str, frozenset]:
    """`prepare@mnist` -> (prepare, {dataset: mnist}); `train@vae_mnist-0` -> (train, {run, seed}); `report`."""
    stage, _, key = name.partition("@")
    if not key:
        return stage, frozenset()
    if stage in ("train", "evaluate", "fit"):
        run_name, seed = key.rsplit("-", 1)
        return stage, frozenset({("run", run_name), ("seed", seed)})
    if stage == "theory":
        return stage, frozenset({("check", key)})
    return stage, frozenset({("dataset", key)})


def dvc_jobs(copy: Path) -> dict[tuple, dict]:
    """(stage, wildcards) -> {name, cmd, deps, outs, upstream (transitive)} from dvc.yaml."""
    names = run([str(BIN / "dvc"), "stage", "list", "--all", "--name-only"], copy).stdout.split()
    script = (
        "import json, sys\n"
        "from dvc.repo import Repo\n"
        "from dvc.dependency.param import ParamsDependency\n"
        "repo = Repo(sys.argv[1])\n"
        "stages = [{'name': s.addressing, 'cmd': s.cmd, 'outs': [o.def_path for o in s.outs],\n"
        "           'deps': [d.def_path for d in s.deps if not isinstance(d, ParamsDependency)]}\n"
        "          for s in repo.index.stages]\n"
        "edges = [[u.addressing, v.addressing] for u, v in repo.index.graph.edges]  # consumer -> producer\n"
        "print(json.dumps({'stages': stages, 'edges': edges}))\n"
    )
    data = json.loads(run([sys.executable, "-c", script, str(copy)], copy).stdout)
    assert sorted(names) == sorted(s["name"] for s in data["stages"])
    parents: dict[str, set[str]] = {}
    for consumer, producer in data["edges"]:
        parents.setdefault(consumer, set()).add(producer)

    def upstream(name: str) -> set[str]:
        seen, todo = set(), [name]
        while todo:
            for p in parents.get(todo.pop(), ()):
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
        return seen

    jobs = {}
    for s in data["stages"]:
        key = canonical_from_dvc_name(s["name"])
        assert canonical_from_cmd(s["cmd"]) == key, f"DVC stage {s['name']} runs {s['cmd']!r}"
        jobs[key] = {**s, "upstream": upstream(s["name"])}
    return jobs


def parse_snakemake_jobs(text: str) -> list[dict]:
    """The job blocks of `snakemake -n -p` output: rule, input, output, log, wildcards, resources, shell."""
    jobs, job = [], None
    for line in text.splitlines():
        head = re.match(r"^(?:local)?rule (\w+):$", line)
        if head:
            job = {"rule": head.group(1), "input": [], "output": [], "log": [], "wildcards": {}, "resources": {},
                   "shell": None}
            jobs.append(job)
        elif job is not None and line.startswith("Shell command: "):
            job["shell"] = line[len("Shell command: "):].strip()
        elif job is not None and re.match(r"^    \w+: ", line):
            key, value = line.strip().split(": ", 1)
            if key in ("input", "output", "log"):
                job[key] = [p.strip() for p in value.split(",")]
            elif key in ("wildcards", "resources"):
                job[key] = dict(item.split("=", 1) for item in value.split(", "))
    return jobs


def snakemake_jobs(copy: Path, profile: str) -> dict[tuple, dict]:
    """(stage, wildcards) -> job block, for every job of the DAG (forced: nothing is up to date)."""
    proc = run([str(BIN / "snakemake"), "-n", "-p", "--forceall", "--config", f"profile={profile}"], copy)
    jobs = {}
    for job in parse_snakemake_jobs(proc.stdout + proc.stderr):
        if job["rule"] == "all":
            continue
        key = (job["rule"], frozenset(job["wildcards"].items()))
        assert key not in jobs, f"two Snakemake jobs for {key}"
        jobs[key] = job
    assert jobs, f"no jobs parsed from:\n{proc.stdout}\n{proc.stderr}"
    return jobs


def fmt(keys) -> list[str]:
    return sorted(f"{stage}[{', '.join(f'{k}={v}' for k, v in sorted(wc))}]" for stage, wc in keys)


# --------------------------------------------------------------------------------------------------
# fast: the two DAGs agree
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("pipelines") / "repo")


@pytest.fixture(scope="module")
def dvc_dag(repo_copy) -> dict:
    return dvc_jobs(repo_copy)


@pytest.mark.parametrize("profile", PROFILES)
def test_dvc_and_snakemake_describe_the_same_jobs(tmp_path, profile):
    """Same (stage, wildcards) set, same commands, same outputs, and dependencies that agree, for every
    profile (a profile may set its own seeds and repeat runs: both tools read the resolved job list)."""
    copy = copy_repo(tmp_path / "repo")
    set_profile(copy, profile)
    run(["genbench", "resolve"], copy)  # as scripts/run.sh does before `dvc repro`
    dvc_dag = dvc_jobs(copy)
    snake = snakemake_jobs(copy, profile)
    dvc_dag = {key: job for key, job in dvc_dag.items() if key[0] not in DVC_ONLY}
    assert fmt(snake) == fmt(dvc_dag), "DVC and Snakemake describe different jobs"

    producers = {out: key for key, job in snake.items() for out in job["output"]}
    for key, job in snake.items():
        dvc = dvc_dag[key]
        where = f"{fmt([key])[0]} (DVC stage {dvc['name']})"
        # the same command; Snakemake only adds the log redirection
        assert job["shell"] == f"{dvc['cmd']} > {job['log'][0]} 2>&1", where
        assert canonical_from_cmd(dvc["cmd"]) == key, where
        # the same outputs: each Snakemake output is (under) a DVC out, each DVC out holds one
        for out in job["output"]:
            assert any(covers(o, out) for o in dvc["outs"]), f"{where}: output {out} is no DVC out {dvc['outs']}"
        for o in dvc["outs"]:
            assert any(covers(o, out) for out in job["output"]), f"{where}: DVC out {o} is not a Snakemake output"
        # the same resolved settings and source hashes (pipelines/resolved/<stage>/<name>.json), and no
        # dependency on whole code folders or params sections
        resolved = [d for d in dvc["deps"] if d.startswith("pipelines/resolved/")]
        assert len(resolved) == 1 and resolved == [i for i in job["input"] if i.startswith("pipelines/resolved/")], where
        assert not any(d.startswith("genbench") for d in dvc["deps"] + job["input"]), where
        # every DVC dep feeds the Snakemake job; every Snakemake input is a DVC dep of the stage or an
        # output of a stage DVC runs before it (so neither tool can run a job on stale or missing data)
        for d in dvc["deps"]:
            assert any(covers(d, i) for i in job["input"]), f"{where}: DVC dep {d} is not a Snakemake input"
        upstream_outs = [o for name in dvc["upstream"] for j in dvc_dag.values() if j["name"] == name
                         for o in j["outs"]]
        for i in job["input"]:
            assert any(covers(d, i) for d in dvc["deps"] + upstream_outs), \
                f"{where}: Snakemake input {i} is neither a DVC dep nor an output of an upstream DVC stage"
            if i in producers:
                assert dvc_dag[producers[i]]["name"] in dvc["upstream"], f"{where}: {i} is produced downstream"


def test_outputs_are_the_paths_of_genbench_layout(dvc_dag):
    """dvc.yaml spells the paths that genbench.layout gives the stages (Snakemake's are checked against
    dvc.yaml above)."""
    from genbench import layout
    from genbench.config import load

    params = load(REPO / "params.yaml")
    expected = {}
    used = {params.run(run).dataset for run, _ in params.jobs()} | set(params.eval.datasets)
    for ds in used:  # a configured dataset that no job uses and nothing scores is not prepared
        expected[("prepare", frozenset({("dataset", ds)}))] = [layout.prepared_dir(params.data.root, ds)]
    assert not {key for key in dvc_dag if key[0] == "prepare"} - set(expected), "an unused dataset is prepared"

    expected[("weights", frozenset())] = [layout.INCEPTION_WEIGHTS]
    for ds in params.eval.datasets:
        wc = frozenset({("dataset", ds)})
        expected[("classifier", wc)] = [layout.classifier_path(ds), layout.classifier_metrics_path(ds)]
        expected[("refstats", wc)] = sorted({layout.refstats_path(ds, e).parent for e in params.eval.extractors})
    from genbench.resolve import is_supervised

    for run_name, seed in params.jobs():
        wc = frozenset({("run", run_name), ("seed", str(seed))})
        if is_supervised(params, run_name):  # the accuracy experiments: trained and scored in one stage
            expected[("fit", wc)] = [layout.run_dir(run_name, seed), layout.metrics_path(run_name, seed)]
            continue
        expected[("train", wc)] = [layout.run_dir(run_name, seed)]
        expected[("evaluate", wc)] = [layout.samples_dir(run_name, seed), layout.metrics_path(run_name, seed)]
    for key, paths in expected.items():
        assert key in dvc_dag, f"no DVC stage for {fmt([key])[0]}"
        assert [str(p) for p in paths] == dvc_dag[key]["outs"], fmt([key])[0]
    for check in params.theory:
        expected[("theory", frozenset({("check", check)}))] = [layout.theory_metrics_path(check)]
    report_dir = params.report.dir
    assert {f"{report_dir}/{n}" for n in ("leaderboard.md", "leaderboard.csv", "index.html")} <= \
        set(dvc_dag[("report", frozenset())]["outs"])


def test_a_2d_row_needs_only_its_own_data_and_stages(repo_copy):
    """From a clean copy (no data, no outputs), the plan for one 2-D run's figures is its dataset's
    `prepare` and its own stages: no image data, no feature extractor, no reference features.
    (`--force`: DVC's plain `--dry` stops at the first dependency that an earlier stage would have made,
    a limitation of DVC 3.67, treeverse/dvc#9021; on a clean copy every stage is due anyway.)"""
    proc = run([str(BIN / "dvc"), "repro", "--dry", "--force", "evaluate@nice_ring8-0"], repo_copy)
    planned = re.findall(r"Running stage '([^']+)'", proc.stdout)
    assert planned == ["resolve", "prepare@toy_ring8", "train@nice_ring8-0", "evaluate@nice_ring8-0"], proc.stdout


def test_the_committed_lock_describes_the_committed_pipeline(tmp_path):
    """`dvc status` on the committed state: no stage has a changed command, setting or dependency. A
    clean copy has no DVC cache, so the outputs of stages (and dependencies made by them) are absent;
    that is the only difference allowed. (Its own copy: Snakemake runs with another profile rewrite
    pipelines/resolved/ when they read the workflow.)"""
    from genbench.resolve import stale_jobs

    proc = run([str(BIN / "dvc"), "status", "--json"], copy_repo(tmp_path / "repo"))
    # pipelines/stale.yaml names the stages whose committed figures await a re-run: exactly those may
    # (and must) differ; the report marks their rows
    listed = {stage for entry in stale_jobs(REPO / "pipelines/stale.yaml").values() for stage in entry["stages"]}
    problems, stale = [], set()
    for stage, changes in json.loads(proc.stdout).items():
        for change in changes:
            if stage in listed:
                stale.add(stage)
                continue
            if not isinstance(change, dict):  # "changed checksum" / "always changed"
                problems.append(f"{stage}: {change}")
                continue
            for kind, entries in change.items():
                if kind not in ("changed deps", "changed outs"):
                    problems.append(f"{stage}: {kind} {entries}")
                    continue
                for path, state in entries.items():
                    if state not in ("deleted", "not in cache"):
                        problems.append(f"{stage}: {kind}: {path} {state}")
    assert not problems, "dvc.lock does not describe dvc.yaml + params.yaml + the code:\n" + "\n".join(problems)
    assert stale == listed, f"pipelines/stale.yaml lists stages that are up to date: {sorted(listed - stale)}"


def test_snakemake_lint_is_clean(repo_copy):
    proc = run([str(BIN / "snakemake"), "--lint"], repo_copy)
    text = proc.stdout + proc.stderr
    assert "Lints for" not in text, text


def test_snakemake_validates_params_against_the_schema(repo_copy, tmp_path):
    """The schema path resolves from pipelines/rules/, whatever the current directory; a bad value is refused."""
    snakemake = str(BIN / "snakemake")
    run([snakemake, "-n", "--snakefile", str(repo_copy / "Snakefile"), "--directory", str(repo_copy)], tmp_path)
    (tmp_path / "bad.yaml").write_text("seeds: [-1]\n")
    bad = run([snakemake, "-n", "--configfile", str(tmp_path / "bad.yaml")], repo_copy, check=False)
    assert bad.returncode != 0 and "-1 is less than the minimum of 0" in bad.stdout + bad.stderr, \
        bad.stdout + bad.stderr
    unknown = run([snakemake, "-n", "--config", "profile=nope"], repo_copy, check=False)
    assert unknown.returncode != 0 and "nope" in unknown.stdout + unknown.stderr, unknown.stdout + unknown.stderr


def test_slurm_profile_dry_run_names_the_resources(repo_copy):
    # the theory checks' committed figures are up to date in the copy: forced, so that every rule is listed
    proc = run([str(BIN / "snakemake"), "--profile", "pipelines/profiles/slurm", "-n", "-p", "--forcerun", "theory"],
               repo_copy)
    text = proc.stdout + proc.stderr
    assert "This was a dry-run" in text
    jobs = [j for j in parse_snakemake_jobs(text) if j["rule"] != "all"]
    assert {j["rule"] for j in jobs} == set(STAGES)
    for job in jobs:
        res = job["resources"]
        assert {"mem_mb", "runtime", "gpu"} <= set(res), f"{job['rule']}: {res}"
        assert int(res["gpu"]) == (1 if job["rule"] in ("train", "evaluate", "fit") else 0), job["rule"]
        if int(res["gpu"]):
            assert res.get("slurm_partition"), f"{job['rule']}: no partition for a GPU job"
    # options the executor plugin manages itself (GPUs come from the `gpu` resource) are refused in
    # slurm_extra at submission time, after a dry run has passed
    from snakemake_executor_plugin_slurm.validation import get_forbidden_slurm_options

    profile = yaml.safe_load((repo_copy / "pipelines/profiles/slurm/config.yaml").read_text())
    extras = [r.get("slurm_extra", "") for r in (profile.get("set-resources") or {}).values()]
    extras.append((profile.get("default-resources") or {}).get("slurm_extra", ""))
    for extra in filter(None, extras):
        for pattern, option in get_forbidden_slurm_options().items():
            assert not re.search(pattern, extra), f"slurm_extra {extra!r} sets the {option}"


FAKE_SLURM = {  # test doubles: sbatch records its arguments and refuses the job; the rest answer nothing
    "sbatch": '#!/bin/sh\necho "$@" >> "$FAKE_SLURM_LOG"\ncat > /dev/null\necho "sbatch: test double" >&2\nexit 1\n',
    "sacct": "#!/bin/sh\nexit 0\n",
    "squeue": "#!/bin/sh\nexit 0\n",
    "sinfo": "#!/bin/sh\nexit 0\n",
    "scancel": "#!/bin/sh\nexit 0\n",
}


def test_slurm_profile_submits_one_job_per_rule_instance_with_its_resources(tmp_path):
    """What the Slurm executor plugin hands to sbatch (stand-in commands record it): a GPU job gets a
    GPU partition and --gpus, every job its memory, time limit and CPUs."""
    copy = copy_repo(tmp_path / "repo")
    fakes = tmp_path / "fakebin"
    fakes.mkdir()
    for name, body in FAKE_SLURM.items():
        (fakes / name).write_text(body)
        (fakes / name).chmod(0o755)
    (copy / "data/prepared/mnist").mkdir(parents=True)  # so that train is submitted without prepare
    (copy / "data/prepared/mnist/manifest.json").write_text("{}")
    env = tool_env(copy)
    env["PATH"] = f"{fakes}{os.pathsep}{env['PATH']}"
    env["FAKE_SLURM_LOG"] = str(tmp_path / "sbatch.log")
    proc = subprocess.run([str(BIN / "snakemake"), "--profile", "pipelines/profiles/slurm",
                           "--slurm-init-seconds-before-status-checks", "1",
                           "runs/vae_mnist-s0/outcome.json", "data/prepared/toy_moons"],
                          cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "test double" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    calls = {}
    for line in (tmp_path / "sbatch.log").read_text().splitlines():
        rule = re.search(r"--comment rule_(\w+?)_wildcards", line).group(1)
        calls[rule] = line.split(" --wrap")[0].split()
    assert set(calls) == {"train", "prepare"}, calls
    train, prepare = calls["train"], calls["prepare"]
    assert ["-p", "gpu"] == train[train.index("-p"):train.index("-p") + 2] and "--gpus=1" in train, train
    assert train[train.index("--mem") + 1] == "8000" and train[train.index("-t") + 1] == "240", train
    assert any(a.startswith("--cpus-per-task=") for a in train), train
    assert "-p" not in prepare and not any(a.startswith("--gpus") for a in prepare), prepare
    assert prepare[prepare.index("--mem") + 1] == "4000" and prepare[prepare.index("-t") + 1] == "20", prepare


# --------------------------------------------------------------------------------------------------
# slow: both tools run the ci profile, in one copy, to the same numbers
# --------------------------------------------------------------------------------------------------


def _leaves(value, path: str = "") -> dict:
    """Every number of a nested JSON value by its path (strings kept for an exact comparison)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(item, f"{path}[{i}]").items()}
    return {path: value}


def _numbers(metrics: dict) -> dict:
    """The deterministic numbers of a metrics file (timings, throughput and versions left out)."""
    if "trials" in metrics:  # a supervised job: the chosen trial, every trial's validation error, the test figures
        return {"selected_lr": metrics["selected_lr"], **{f"val_error[{t['lr']}]": t["val_error"] for t in metrics["trials"]},
                **{f"test[{k}]": v for k, v in metrics["test"].items()}, "parameters": metrics["parameters"]}
    out = {f"{key}[{kind}]": v[key] for kind, v in metrics["likelihood"].items()
           for key in ("bits_per_dim", "nll_nats", "kl_nats") if key in v}
    for extractor, s in metrics["scores"].items():
        for key in ("fid", "kid_mean", "kid_std", "precision", "recall"):
            if key in s:
                out[f"{key}[{extractor}]"] = s[key]
    out["selected_step"] = metrics["train"]["selected_step"]
    out["parameters"] = metrics["train"]["parameters"]
    return out


def _hashes(metrics: dict) -> dict:
    """The protocol's identities: extractor weights and cached reference features (content hashes)."""
    return {f"{key}[{extractor}]": s["protocol"][key] for extractor, s in metrics.get("scores", {}).items()
            if "protocol" in s for key in ("weights_sha256", "reference_sha256")}  # 2-D modes have none


# the runs both tools execute here: an image model with likelihood bounds (FID with both extractors), a
# flow on a 2-D toy (density figure), an image GAN with a variant row and an encoder, a 2-D GAN over three
# seeds, and a supervised job (train once per learning rate, then score). GENBENCH_E2E_RUNS=all runs every run
# of the ci profile instead (CI's leaderboard lane, scripts/ci_leaderboard.sh: one DVC run is both this test
# and the ci leaderboard, which GENBENCH_E2E_OUT receives with the stage times).
E2E_RUNS = ("vae_mnist", "glow_ring8", "ogan_mnist", "wgan_gp_ring8", "exact_digits")
E2E_REPEAT = ("wgan_gp_ring8",)  # trained with the repeat seeds too (mean ± std in the leaderboard)
# Snakemake re-runs these jobs (each stage kind: an image model's train, sample and evaluate with both
# extractors; a repeat seed; a supervised train and score) and the report, from DVC's prepared data and rulers,
# and finds every other job's outputs up to date
SNAKEMAKE_JOBS = ("vae_mnist-s0", "wgan_gp_ring8-s1", "exact_digits-s0")
SNAKEMAKE_CHECK = "variance"  # and a theory check (metrics/theory-NAME.json)


def e2e_runs(copy: Path) -> tuple[str, ...]:
    if os.environ.get("GENBENCH_E2E_RUNS", "") == "all":
        return tuple(yaml.safe_load((copy / "params.yaml").read_text())["runs"])
    return E2E_RUNS


def declared_stages(copy: Path, source: str) -> set[str]:
    """The DVC stages whose resolved file (pipelines/resolved/, what DVC hashes) lists `source` among its code."""
    stages = set()
    for path in (copy / "pipelines" / "resolved").rglob("*.json"):
        if source in json.loads(path.read_text()).get("code", {}):
            key = re.sub(r"-s(\d+)$", r"-\1", path.stem)
            stages.add(key if path.parent.name == "resolved" else f"{path.parent.name}@{key}")
    return stages


def keep_runs(copy: Path, keep: tuple[str, ...], repeat: tuple[str, ...] = ()) -> None:
    path = copy / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["runs"] = {k: v for k, v in raw["runs"].items() if k in keep}
    raw["repeat"]["runs"] = list(repeat)
    used = {run["dataset"] for run in raw["runs"].values()}  # and only the datasets they use
    raw["data"]["datasets"] = {k: v for k, v in raw["data"]["datasets"].items() if k in used}
    raw["eval"]["datasets"] = [d for d in raw["eval"]["datasets"] if d in used]
    for prof in raw["profiles"].values():
        if prof and "datasets" in prof.get("eval", {}):
            prof["eval"]["datasets"] = [d for d in prof["eval"]["datasets"] if d in used]
        for options in (prof or {}).get("eval", {}).get("extractors", {}).values():
            if options.get("runs") is not None:  # the runs an extractor scores
                options["runs"] = [r for r in options["runs"] if r in keep]
        if prof and "runs" in prof:
            prof["runs"] = {k: v for k, v in prof["runs"].items() if k in keep}
        if prof and "repeat" in prof:
            prof["repeat"]["runs"] = list(repeat)
        if prof and "leave_out" in prof:
            prof["leave_out"] = [r for r in prof["leave_out"] if r in keep]
        if prof and "datasets" in prof.get("data", {}):
            prof["data"]["datasets"] = {k: v for k, v in prof["data"]["datasets"].items() if k in used}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    for metrics in (copy / "metrics").glob("*.json"):  # the committed figures of the dropped jobs
        job = re.fullmatch(r"(.+)-s(\d+)", metrics.stem)
        if job is None:  # not a training job's figures (the theory checks: metrics/theory-NAME.json)
            continue
        run, seed = job.group(1), job.group(2)
        if run not in keep or int(seed) not in raw["seeds"] + (raw["repeat"]["seeds"] if run in repeat else []):
            metrics.unlink()


@pytest.mark.slow
def test_dvc_and_snakemake_run_the_ci_profile_to_the_same_numbers(tmp_path):
    copy = copy_repo(tmp_path / "repo")
    runs = e2e_runs(copy)
    keep_runs(copy, runs, E2E_REPEAT)
    set_profile(copy, "ci")  # and no dvc.lock: the cpu profile's entries would all be stale
    dvc, snakemake = str(BIN / "dvc"), str(BIN / "snakemake")
    # the job list changed: without this, DVC's `resolve` stage stops and asks for `dvc repro` again
    run(["genbench", "resolve"], copy)

    # --- DVC: the whole DAG
    started = time.monotonic()
    run([dvc, "repro"], copy, timeout=3600)
    repro_s = time.monotonic() - started
    reports = copy / "reports"
    for name in ("leaderboard.md", "leaderboard.csv", "index.html"):
        assert (reports / name).is_file(), name
    assert "Profile `ci`" in (reports / "leaderboard.md").read_text()
    dvc_metrics = {p.name: json.loads(p.read_text()) for p in sorted((copy / "metrics").glob("*.json"))}
    m = dvc_metrics["vae_mnist-s0.json"]
    assert m["status"] == "completed" and m["profile"] == "ci"
    assert m["scores"]["classifier"]["fid"] >= 0 and m["scores"]["inception-v3-tf2015"]["fid"] >= 0
    assert m["likelihood"] and all(v["bits_per_dim"] > 0 for v in m["likelihood"].values())
    assert (copy / "mlflow.db").is_file(), "MLflow's default store (SQLite in the repository) was not written"
    unsent = sorted(p.parent.name for p in (copy / "mlruns" / "pending").glob("*/run.json"))
    assert not unsent, f"stage runs MLflow refused (kept in mlruns/pending/): {unsent}"
    toy = dvc_metrics["glow_ring8-s0.json"]["likelihood"]["exact"]
    assert toy["kl_nats"] > 0 and "true_nll_nats" in toy  # the 2-D toy: NLL in nats and KL to the truth
    assert (copy / "reports/figures/glow_ring8-s0-density.png").is_file()
    gan = dvc_metrics["ogan_mnist-s0.json"]  # a GAN: the last checkpoint, a hubness-prior row, O-GAN's encoder
    assert gan["checkpoint_selection"] == "last" and gan["variants"]["hubness"]["scores"]["classifier"]["fid"] >= 0
    assert (copy / "reports/figures/ogan_mnist-s0-reconstructions.png").is_file()
    probe = gan["studies"]["representation"]  # its discriminator probed as a representation, tabled with DIM's
    assert 0 <= probe["linear_probe"]["accuracy"] <= 1 and probe["probe_test_n"] == 1000
    assert {f"wgan_gp_ring8-s{s}.json" for s in (0, 1, 2)} <= set(dvc_metrics)
    assert dvc_metrics["wgan_gp_ring8-s1.json"]["scores"]["modes"]["modes_total"] == 8
    board = (reports / "leaderboard.md").read_text()
    assert "ogan_mnist [hubness]" in board and "| wgan_gp_ring8 | wgan_gp | 3 |" in board
    assert "| mnist | ogan_mnist | ogan (encoder) | 1 |" in board  # the representation table
    assert (copy / "reports/figures/wgan_gp_ring8-s0-scatter.png").is_file()
    acc = dvc_metrics["exact_digits-s0.json"]  # the accuracy family: scored, tabled, claimed
    assert acc["kind"] == "classification" and acc["objective"] == "exact" and 0 <= acc["test"]["accuracy"] <= 1
    assert "| exact | exact_digits |" in board and (reports / "accuracy.csv").read_text().count("exact_digits") == 1
    out = os.environ.get("GENBENCH_E2E_OUT")
    if out:  # CI's leaderboard: the reports DVC made, and where the time went
        shutil.copytree(reports, out, dirs_exist_ok=True)
        (Path(out) / "timing").mkdir(exist_ok=True)
        shutil.copy(copy / "logs" / "stage-times.jsonl", Path(out) / "timing")
        (Path(out) / "timing" / "dvc-repro-seconds").write_text(f"{repro_s:.1f}\n")

    # nothing re-runs
    again = run([dvc, "repro"], copy)
    assert "Running stage" not in again.stdout, again.stdout
    status = run([dvc, "status"], copy)
    assert "up to date" in status.stdout, status.stdout
    run([dvc, "metrics", "show"], copy)
    run([dvc, "plots", "show"], copy)

    # precise dependencies: after `genbench resolve` (what DVC's first stage runs), exactly the stages
    # whose settings or source files changed are stale; restoring the change makes all up to date again
    params_path = copy / "params.yaml"
    original = params_path.read_text()

    resolved = copy / "pipelines" / "resolved"
    as_dvc_left = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in resolved.rglob("*") if p.is_file()}

    def stale_after(path: Path, edit) -> set[str]:
        """The edit, `genbench resolve` (which also undoes the previous edit's resolved files), `dvc status`;
        then the edit is undone (its resolved files at the next call, or at the end)."""
        before = path.read_text()
        path.write_text(edit(before))
        assert path.read_text() != before, f"the edit of {path} changed nothing"
        run(["genbench", "resolve"], copy)
        stale = set(json.loads(run([dvc, "status", "--json"], copy).stdout))
        path.write_text(before)
        return stale

    def stale_after_code(path: Path, expected: set[str]) -> None:
        """A comment in a source file: exactly the stages that declare it stale (every run of its family, in
        all modes), and among the five runs of the default mode exactly `expected`."""
        stale = stale_after(path, lambda text: text + "\n# a comment\n")
        assert stale == {"resolve"} | declared_stages(copy, path.relative_to(copy).as_posix()), path
        assert {s for s in stale if s.partition("@")[2].rsplit("-", 1)[0] in E2E_RUNS + ("",)} == expected, path

    def job_stages(*jobs: str) -> set[str]:
        return {f"{stage}@{job}" for stage in ("train", "evaluate") for job in jobs}

    latent = lambda text: text.replace("      latent_dim: 32\n", "      latent_dim: 16\n", 1)  # noqa: E731
    assert stale_after(params_path, latent) == {"resolve"} | job_stages("vae_mnist-0")

    def ci_override(text: str) -> str:  # one run's override in the ci profile
        raw = yaml.safe_load(text)
        runs = raw["profiles"]["ci"]["runs"]
        train = runs["glow_ring8"]["train"]  # a YAML alias: other runs share this mapping
        runs["glow_ring8"]["train"] = {**train, "steps": train["steps"] + 1}
        return yaml.safe_dump(raw, sort_keys=False)

    # a training setting: that run's train stage (its evaluate follows once it re-ran)
    assert stale_after(params_path, ci_override) == {"resolve", "train@glow_ring8-0"}
    stale_after_code(copy / "genbench/models/flows.py", {"resolve"} | job_stages("glow_ring8-0"))  # one family's jobs
    stale_after_code(copy / "genbench/report.py", {"resolve", "report"})
    stale_after_code(copy / "genbench/models/accuracy.py", {"resolve", "fit@exact_digits-0"})
    stale_after_code(copy / "genbench/models/gans.py",
                     {"resolve"} | job_stages("ogan_mnist-0", *(f"wgan_gp_ring8-{s}" for s in (0, 1, 2))))
    run(["genbench", "resolve"], copy)
    for p, (content, mtime) in as_dvc_left.items():  # every edit undone byte for byte; and the files' times put
        assert p.read_bytes() == content, p            # back, so that Snakemake, which compares times, sees what
        os.utime(p, ns=(mtime, mtime))                 # DVC left
    assert "up to date" in run([dvc, "status"], copy).stdout

    # --- Snakemake: some of the same jobs again in the same copy, from the prepared data and rulers DVC made
    # (its rules run the same commands on the same inputs: test_dvc_and_snakemake_describe_the_same_jobs); the
    # other jobs' outputs it finds up to date
    for job in SNAKEMAKE_JOBS:
        for name in ("runs", "samples"):
            shutil.rmtree(copy / name / job, ignore_errors=True)
        (copy / "metrics" / f"{job}.json").unlink()
    (copy / "metrics" / f"theory-{SNAKEMAKE_CHECK}.json").unlink()
    shutil.rmtree(copy / "mlruns", ignore_errors=True)  # and MLflow's store: parallel jobs start on a fresh one
    (copy / "mlflow.db").unlink()
    (reports / "leaderboard.md").unlink()
    log = run([snakemake, "-c2", "--profile", "pipelines/profiles/local"], copy, timeout=1800)
    ran = {(j["rule"], frozenset(j["wildcards"].items())) for j in parse_snakemake_jobs(log.stdout + log.stderr)}
    jobs = [job.rsplit("-s", 1) for job in SNAKEMAKE_JOBS]
    assert fmt(ran) == fmt({(stage, frozenset({("run", r), ("seed", s)})) for r, s in jobs
                            for stage in ("train", "evaluate", "fit")
                            if (copy / "pipelines" / "resolved" / stage / f"{r}-s{s}.json").is_file()}
                           | {("theory", frozenset({("check", SNAKEMAKE_CHECK)})), ("report", frozenset()),
                              ("all", frozenset())}), "Snakemake ran other jobs than those whose outputs were removed"
    snake_metrics = {p.name: json.loads(p.read_text()) for p in sorted((copy / "metrics").glob("*.json"))}
    assert sorted(snake_metrics) == sorted(dvc_metrics)
    name = f"theory-{SNAKEMAKE_CHECK}.json"  # a seeded simulation: the same numbers
    snake, dvc_leaves = _leaves(snake_metrics[name]["result"]), _leaves(dvc_metrics[name]["result"])
    numeric = lambda d: {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}  # noqa: E731
    assert numeric(snake) == pytest.approx(numeric(dvc_leaves), rel=1e-6, nan_ok=True), name
    assert {k: v for k, v in snake.items() if k not in numeric(snake)} == \
        {k: v for k, v in dvc_leaves.items() if k not in numeric(dvc_leaves)}, name
    for name in (f"{job}.json" for job in SNAKEMAKE_JOBS):
        dvc_m = dvc_metrics[name]
        assert snake_metrics[name]["status"] == dvc_m["status"] == "completed", name
        # equal to 1e-3 relative, not bit for bit: one e2e run saw the Snakemake sample job's generator
        # output differ in the last float bits (488 of 392k uint8 pixels off by one; weights equal, not
        # reproduced by rerunning either tool), which moves an FID in its 5th digit
        # (counts such as the selected step and the parameter number stay exact)
        snake, dvc_numbers = _numbers(snake_metrics[name]), _numbers(dvc_m)
        assert snake == pytest.approx(dvc_numbers, rel=1e-3), name
        assert {k: v for k, v in snake.items() if isinstance(v, int)} == \
            {k: v for k, v in dvc_numbers.items() if isinstance(v, int)}, name
        assert _hashes(snake_metrics[name]) == _hashes(dvc_m), \
            f"{name}: equal numbers from different extractor weights/reference files: a file is not byte-deterministic"
    assert "Profile `ci`" in (reports / "leaderboard.md").read_text()

    # Snakemake is up to date, and a model hyperparameter re-runs only that run's jobs and the report
    dry = run([snakemake, "-n", "-c2"], copy)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout + dry.stderr
    params_path.write_text(original.replace("      latent_dim: 32\n", "      latent_dim: 16\n", 1))
    dry = run([snakemake, "-n", "-c2"], copy)
    planned = {j["rule"] for j in parse_snakemake_jobs(dry.stdout + dry.stderr)}
    assert planned == {"train", "evaluate", "report", "all"}, planned
    params_path.write_text(original)


def test_report_keeps_figures_and_curves_of_jobs_whose_outputs_are_not_in_the_workspace(tmp_path, monkeypatch):
    """A clone holds the committed metrics but not runs/ and samples/ (DVC outputs): rebuilding the report
    there keeps the last report's curves and sample figures of those jobs; a job dropped from params loses them."""
    import shutil
    from types import SimpleNamespace

    from genbench.report import sample_figures, write_curves

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "a-s0").mkdir(parents=True)
    (tmp_path / "runs" / "a-s0" / "stats.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n')
    (tmp_path / "samples" / "a-s0").mkdir(parents=True)
    for name in ("grid", "grid-hubness", "scatter"):  # "grid-hubness.png" sorts before "grid.png" as a file name
        (tmp_path / "samples" / "a-s0" / f"{name}.png").write_bytes(name.encode())
    curves, figures = tmp_path / "reports" / "curves", tmp_path / "reports" / "figures"
    figures.mkdir(parents=True)
    params = SimpleNamespace(jobs=lambda: [("a", 0), ("b", 0)], run=lambda name: SimpleNamespace(model="vae"))

    first = write_curves(params, curves)
    made, kept = sample_figures("a", 0, figures)
    assert set(first) == {"a-s0"} and not kept
    assert [(n, p.name) for n, p in made] == [("grid", "a-s0.png"), ("grid-hubness", "a-s0-grid-hubness.png"),
                                              ("scatter", "a-s0-scatter.png")]
    csv = first["a-s0"].read_text()

    shutil.rmtree(tmp_path / "runs")
    shutil.rmtree(tmp_path / "samples")
    again = write_curves(params, curves)
    assert again["a-s0"].read_text() == csv
    assert sample_figures("a", 0, figures) == (made, True)
    assert sample_figures("b", 0, figures) == ([], False)

    assert write_curves(SimpleNamespace(jobs=lambda: [("b", 0)], run=params.run), curves) == {}
    assert not (curves / "a-s0.csv").exists()
