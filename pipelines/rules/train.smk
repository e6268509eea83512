rule train:
    input:
        run_dataset,
    output:
        directory("runs/{run}-s{seed}"),
    log:
        "logs/train/{run}-s{seed}.log",
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    shell:
        "genbench train --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"
