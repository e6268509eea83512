# Samples from each trained generative job, then its FID/KID/precision/recall and bits/dim; a supervised
# job is scored instead.


rule sample:
    wildcard_constraints:
        run=GENERATIVE_RUNS,
    input:
        resolved_job("sample"),
        "runs/{run}-s{seed}/outcome.json",
        run_dataset,  # the 2-D toys' density figures read the test split
    output:
        directory("samples/{run}-s{seed}"),
    log:
        "logs/sample/{run}-s{seed}.log",
    conda:
        "../envs/genbench.yaml"
    threads: TORCH_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    shell:
        "genbench sample --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"


rule evaluate:
    wildcard_constraints:
        run=GENERATIVE_RUNS,
    input:
        resolved_job("evaluate"),
        "runs/{run}-s{seed}/outcome.json",
        "samples/{run}-s{seed}",
        run_dataset,
        eval_features,
    output:
        "metrics/{run}-s{seed}.json",
    log:
        "logs/evaluate/{run}-s{seed}.log",
    conda:
        "../envs/genbench.yaml"
    threads: TORCH_THREADS
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    shell:
        "genbench evaluate --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"


# A supervised job (accuracy experiments): the learning rate chosen on validation, its test figures.
rule score:
    wildcard_constraints:
        run=SUPERVISED_RUNS,
    input:
        resolved_job("score"),
        "runs/{run}-s{seed}/outcome.json",
        run_dataset,
    output:
        "metrics/{run}-s{seed}.json",
    log:
        "logs/score/{run}-s{seed}.log",
    conda:
        "../envs/genbench.yaml"
    threads: TORCH_THREADS
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=0,  # a small classifier on the test split: CPU is enough
    shell:
        "genbench score --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"
