# Config validation, the resolved configuration and files, and the input functions the rules share.
# dvc.yaml is the other spelling of the same DAG; tests/test_pipelines.py checks that both describe
# the same jobs, commands, outputs and dependencies.

import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from genbench import GenbenchError
from genbench.config import from_raw, resolve
from genbench.resolve import job_table, resolved_path, write_resolved

# Structure of params.yaml; the path is relative to this file. Every stage also runs the full strict
# check (`genbench validate`) before doing anything.
validate(config, "../schemas/params.schema.yaml")

# The selected profile deep-merged over the base, exactly as every `genbench` stage sees it.
try:
    CFG = resolve(config)
except GenbenchError as exc:
    raise WorkflowError(str(exc)) from None

DATA_ROOT = CFG["data"]["root"]
EXTRACTORS = list(CFG["eval"]["extractors"])
REPORT_DIR = CFG["report"]["dir"]

# CPU threads of the torch stages. Snakemake exports OMP_NUM_THREADS=<threads> to each job and torch
# uses that many unless genbench sets harness.num_threads; the thread count changes the last bits of
# CPU results (DVC leaves torch's default: every core), so pin harness.num_threads to compare numbers
# across tools or machines. Locally the request is capped to --cores; on Slurm, --cpus-per-task.
TORCH_THREADS = CFG["harness"].get("num_threads") or 4


wildcard_constraints:
    dataset="[A-Za-z0-9_]+",
    run="[A-Za-z0-9_]+",
    seed="[0-9]+",


# --------------------------------------------------------------------------------------------------
# What each stage instance uses: pipelines/resolved/<stage>/<name>.json (genbench/resolve.py), the same
# files dvc.yaml's stages depend on. They are brought in line with the configuration here, when the
# workflow is read (only changed files are rewritten, so an unchanged file keeps its time stamp and
# Snakemake's mtime trigger re-runs exactly the jobs whose settings or source files changed).
# --------------------------------------------------------------------------------------------------
try:
    PARAMS = from_raw(config)
    write_resolved(PARAMS)
except GenbenchError as exc:
    raise WorkflowError(str(exc)) from None
TABLE = job_table(PARAMS)
# the datasets some job trains on or the evaluation scores (as dvc.yaml's foreach over `prepared`)
DATASETS = TABLE["prepared"]
EVAL_DATASETS = TABLE["scored"]
# every (run, seed) job (as Params.jobs, less the profile's `leave_out`); the generative ones are evaluated
# (sampled, then scored), the supervised ones (accuracy experiments) fitted (trained, then scored)
JOBS = [f"{job['run']}-s{job['seed']}" for job in TABLE["jobs"].values()]
GENERATIVE_JOBS = [f"{job['run']}-s{job['seed']}" for job in TABLE["generative"].values()]
# the theory checks (genbench/theory.py), one `theory` job each
CHECKS = TABLE["checks"]


def one_of(names):
    """A wildcard pattern matching exactly these names (none: a pattern that never matches)."""
    return "|".join(re.escape(n) for n in sorted(set(names))) or "(?!)"


GENERATIVE_RUNS = one_of(job["run"] for job in TABLE["generative"].values())
SUPERVISED_RUNS = one_of(job["run"] for job in TABLE["supervised"].values())


def resolved(stage, name=None):
    return str(resolved_path(stage, name))


def resolved_job(stage):
    return lambda wildcards: resolved(stage, f"{wildcards.run}-s{wildcards.seed}")


def resolved_dataset(stage):
    return lambda wildcards: resolved(stage, wildcards.dataset)


# --------------------------------------------------------------------------------------------------
# Input functions
# --------------------------------------------------------------------------------------------------
def run_dataset(wildcards):
    """The prepared dataset a (run, seed) job trains and is evaluated on."""
    return f"{DATA_ROOT}/{CFG['runs'][wildcards.run]['dataset']}"


def weights_file(extractor, dataset):
    """The weights a feature extractor reads (as genbench.refstats.extractor_weights)."""
    if extractor == "classifier":
        return f"artifacts/classifiers/{dataset}.pt"
    return "artifacts/weights/inception-v3-tf2015.pt"


def extractor_weights(wildcards):
    """Weights of every configured feature extractor, for a dataset's reference features."""
    return [weights_file(e, wildcards.dataset) for e in EXTRACTORS]


def eval_features(wildcards):
    """For an image dataset: its cached reference features and the extractors' weights; a 2-D toy has none."""
    dataset = CFG["runs"][wildcards.run]["dataset"]
    if dataset not in EVAL_DATASETS:
        return []
    return [f"artifacts/refstats/{dataset}"] + [weights_file(e, dataset) for e in EXTRACTORS]
