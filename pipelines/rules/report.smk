rule report:
    input:
        expand("metrics/{job}.json", job=JOBS),
        expand(f"{DATA_ROOT}/{{dataset}}", dataset=DATASETS),
    output:
        "reports/leaderboard.md",
        "reports/leaderboard.csv",
        "reports/index.html",
        directory("reports/figures"),
        directory("reports/curves"),
    log:
        "logs/report.log",
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    shell:
        "genbench report > {log} 2>&1"
