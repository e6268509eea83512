rule prepare:
    output:
        directory(f"{DATA_ROOT}/{{dataset}}"),
    log:
        "logs/prepare/{dataset}.log",
    resources:
        mem_mb=4000,
        runtime=20,
        gpu=0,
    shell:
        "genbench prepare --dataset {wildcards.dataset} > {log} 2>&1"
