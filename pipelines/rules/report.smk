# The theory checks (genbench/theory.py): seeded simulations whose figures test a stated identity or rate.


rule theory:
    wildcard_constraints:
        check=one_of(CHECKS),
    input:
        resolved("theory", "{check}"),
    output:
        "metrics/theory-{check}.json",
    log:
        "logs/theory/{check}.log",
    conda:
        "../envs/genbench.yaml"
    threads: TORCH_THREADS
    resources:
        mem_mb=4000,
        runtime=10,
        gpu=0,
    shell:
        "genbench theory --check {wildcards.check} > {log} 2>&1"


# The leaderboard, from every job's metrics file, training curves (runs/*/stats.jsonl) and sample grid.


rule report:
    input:
        expand("metrics/{job}.json", job=JOBS),
        expand("runs/{job}/outcome.json", job=JOBS),
        expand("metrics/theory-{check}.json", check=CHECKS),
        expand("samples/{job}", job=GENERATIVE_JOBS),
        resolved("report"),
    output:
        f"{REPORT_DIR}/leaderboard.md",
        f"{REPORT_DIR}/leaderboard.csv",
        f"{REPORT_DIR}/claims.csv",
        f"{REPORT_DIR}/accuracy.csv",
        f"{REPORT_DIR}/sts.csv",
        f"{REPORT_DIR}/discrete.csv",
        f"{REPORT_DIR}/codebook.csv",
        f"{REPORT_DIR}/rate_distortion.csv",
        f"{REPORT_DIR}/representation.csv",
        f"{REPORT_DIR}/theory.csv",
        f"{REPORT_DIR}/index.html",
        directory(f"{REPORT_DIR}/site"),
        directory(f"{REPORT_DIR}/figures"),
        directory(f"{REPORT_DIR}/curves"),
    log:
        "logs/report.log",
    conda:
        "../envs/genbench.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    shell:
        "genbench report > {log} 2>&1"
