# Feature extractors for FID/KID/precision/recall, and their features of each reference split.


rule weights:
    input:
        resolved("weights"),
    output:
        "artifacts/weights/inception-v3-tf2015.pt",
    log:
        "logs/weights.log",
    conda:
        "../envs/genbench.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
        gpu=0,
    shell:
        "genbench weights > {log} 2>&1"


rule classifier:
    input:
        resolved_dataset("classifier"),
        f"{DATA_ROOT}/{{dataset}}",
    output:
        "artifacts/classifiers/{dataset}.pt",
        "artifacts/classifiers/{dataset}.json",
    log:
        "logs/classifier/{dataset}.log",
    conda:
        "../envs/genbench.yaml"
    threads: TORCH_THREADS
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=0,
    shell:
        "genbench classifier --dataset {wildcards.dataset} > {log} 2>&1"


rule refstats:
    input:
        resolved_dataset("refstats"),
        f"{DATA_ROOT}/{{dataset}}",
        extractor_weights,
    output:
        directory("artifacts/refstats/{dataset}"),
    log:
        "logs/refstats/{dataset}.log",
    conda:
        "../envs/genbench.yaml"
    threads: TORCH_THREADS
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=0,
    shell:
        "genbench refstats --dataset {wildcards.dataset} > {log} 2>&1"
