# Feature extractors for FID/KID/PR and the reference features they give on the reference split.


rule weights:
    output:
        "artifacts/weights/inception-v3-tf2015.pt",
    log:
        "logs/weights.log",
    resources:
        mem_mb=4000,
        runtime=10,
        gpu=0,
    shell:
        "genbench weights > {log} 2>&1"


rule classifier:
    input:
        f"{DATA_ROOT}/{{dataset}}",
    output:
        "artifacts/classifiers/{dataset}.pt",
        "artifacts/classifiers/{dataset}.json",
    log:
        "logs/classifier/{dataset}.log",
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=0,
    shell:
        "genbench classifier --dataset {wildcards.dataset} > {log} 2>&1"


rule refstats:
    input:
        f"{DATA_ROOT}/{{dataset}}",
        "artifacts/classifiers/{dataset}.pt",
        "artifacts/weights/inception-v3-tf2015.pt",
    output:
        directory("artifacts/refstats/{dataset}"),
    log:
        "logs/refstats/{dataset}.log",
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=0,
    shell:
        "genbench refstats --dataset {wildcards.dataset} > {log} 2>&1"
