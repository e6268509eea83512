# The genbench DAG for Snakemake: the same stages and commands as dvc.yaml, from the same params.yaml.
# Local:   snakemake -c2 --profile pipelines/profiles/local
# Cluster: snakemake --profile pipelines/profiles/slurm   (one job per (run, seed), resources per rule)
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "pipelines/rules/common.smk"
include: "pipelines/rules/prepare.smk"
include: "pipelines/rules/features.smk"
include: "pipelines/rules/train.smk"
include: "pipelines/rules/evaluate.smk"
include: "pipelines/rules/report.smk"


rule all:
    input:
        "reports/leaderboard.md",
    default_target: True
