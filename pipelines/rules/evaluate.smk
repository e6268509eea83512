# Each trained generative job: its samples, then their FID/KID/precision/recall and the job's bits/dim, in one
# job (as dvc.yaml's evaluate stage); a supervised job is trained and scored by `fit` instead.


rule evaluate:
    wildcard_constraints:
        run=GENERATIVE_RUNS,
    input:
        resolved_job("evaluate"),
        "runs/{run}-s{seed}/outcome.json",
        run_dataset,  # (the 2-D toys' density figures read the test split)
        eval_features,
    output:
        directory("samples/{run}-s{seed}"),
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


# A supervised job (accuracy experiments, sentence embeddings, representations): its training, then the learning
# rate chosen on validation and its test figures, in one job (as dvc.yaml's fit stage). The declared run output
# is outcome.json, as in the train rule: the rest of the run folder stays for a resumed training.
rule fit:
    wildcard_constraints:
        run=SUPERVISED_RUNS,
    input:
        resolved_job("fit"),
        run_dataset,
    output:
        "runs/{run}-s{seed}/outcome.json",
        "metrics/{run}-s{seed}.json",
    log:
        "logs/fit/{run}-s{seed}.log",
    conda:
        "../envs/genbench.yaml"
    threads: TORCH_THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    shell:
        "genbench fit --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"
