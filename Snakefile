# The genbench DAG for Snakemake: the same stages and `genbench` commands as dvc.yaml, from the same
# params.yaml (its `profile` selects the profile, e.g. `--config profile=ci`).
#   Local:   snakemake -c2 --profile pipelines/profiles/local
#   Cluster: snakemake --profile pipelines/profiles/slurm   (one job per rule instance, i.e. per
#            (run, seed) for train/evaluate, or fit; each rule declares mem_mb, runtime and gpu)
# Rules: pipelines/rules/<stage>.smk; input and params functions: pipelines/rules/common.smk.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "pipelines/rules/common.smk"
include: "pipelines/rules/prepare.smk"
include: "pipelines/rules/features.smk"
include: "pipelines/rules/train.smk"
include: "pipelines/rules/evaluate.smk"
include: "pipelines/rules/report.smk"


localrules:
    all,


onsuccess:
    # the report rule sends every stage's run to MLflow; this sends what a partial target recorded
    shell("genbench track")


# Everything `dvc repro` builds: the leaderboard, every dataset a job or the evaluation uses, and the
# reference features of every evaluated dataset.
rule all:
    input:
        f"{REPORT_DIR}/leaderboard.md",
        expand(f"{DATA_ROOT}/{{dataset}}", dataset=DATASETS),
        expand("artifacts/refstats/{dataset}", dataset=EVAL_DATASETS),
    default_target: True
