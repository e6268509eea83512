# Raw files (local folder, offline package or download; sha256-checked) -> checked splits.


rule prepare:
    input:
        resolved_dataset("prepare"),
    output:
        directory(f"{DATA_ROOT}/{{dataset}}"),
    log:
        "logs/prepare/{dataset}.log",
    conda:
        "../envs/genbench.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
        gpu=0,
    shell:
        "genbench prepare --dataset {wildcards.dataset} > {log} 2>&1"
