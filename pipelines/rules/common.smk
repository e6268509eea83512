# Config validation and input functions shared by the rules.
from snakemake.utils import validate


validate(config, "../schemas/params.schema.yaml")

# The selected profile is merged over the base exactly as genbench.config does.
from genbench.config import resolve as _resolve_profile

CFG = _resolve_profile(config)
DATA_ROOT = CFG["data"]["root"]
DATASETS = list(CFG["data"]["datasets"])
EVAL_DATASETS = list(CFG["eval"]["datasets"])
RUNS = list(CFG["runs"])
SEEDS = [int(s) for s in CFG["seeds"]]
JOBS = [f"{run}-s{seed}" for run in RUNS for seed in SEEDS]


wildcard_constraints:
    dataset="[A-Za-z0-9_]+",
    run="[A-Za-z0-9_]+",
    seed="[0-9]+",


def run_dataset(wildcards):
    return f"{DATA_ROOT}/{CFG['runs'][wildcards.run]['dataset']}"


def eval_inputs(wildcards):
    dataset = CFG["runs"][wildcards.run]["dataset"]
    if dataset not in EVAL_DATASETS:
        return []
    return [f"artifacts/refstats/{dataset}"]
