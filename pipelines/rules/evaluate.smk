# Samples from each trained job, then its FID/KID/precision/recall and bits/dim.


rule sample:
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
