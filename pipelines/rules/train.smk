# One training job per generative (run, seed).
#
# The declared output is outcome.json, which genbench writes last, not the whole run folder: Snakemake
# deletes a job's outputs before running it, and keeping checkpoint.pt, model.pt and stats.jsonl
# lets a killed or preempted job resume from its last checkpoint (DVC's `persist: true`). A checkpoint
# from another configuration is discarded by genbench itself.


rule train:
    wildcard_constraints:
        run=GENERATIVE_RUNS,  # a supervised job trains in its `fit` job (pipelines/rules/evaluate.smk)
    input:
        resolved_job("train"),
        run_dataset,
    output:
        "runs/{run}-s{seed}/outcome.json",
    log:
        "logs/train/{run}-s{seed}.log",
    conda:
        "../envs/genbench.yaml"
    threads: TORCH_THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    shell:
        "genbench train --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"
