rule sample:
    input:
        "runs/{run}-s{seed}",
    output:
        directory("samples/{run}-s{seed}"),
    log:
        "logs/sample/{run}-s{seed}.log",
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    shell:
        "genbench sample --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"


rule evaluate:
    input:
        "runs/{run}-s{seed}",
        "samples/{run}-s{seed}",
        run_dataset,
        eval_inputs,
    output:
        "metrics/{run}-s{seed}.json",
    log:
        "logs/evaluate/{run}-s{seed}.log",
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    shell:
        "genbench evaluate --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"
