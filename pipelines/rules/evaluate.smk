# Samples from each trained job, then its FID/KID/precision/recall and bits/dim.


rule sample:
    input:
        "runs/{run}-s{seed}/outcome.json",
        run_dataset,  # the 2-D toys' density figures read the test split
        code("sample"),
    output:
        directory("samples/{run}-s{seed}"),
    params:
        config=sample_params,
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
        "runs/{run}-s{seed}/outcome.json",
        "samples/{run}-s{seed}",
        run_dataset,
        eval_features,
        code("evaluate"),
    output:
        "metrics/{run}-s{seed}.json",
    params:
        config=evaluate_params,
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
