"""The representation runs' stages (genbench.models.dim: Deep InfoMax and baseline objectives of its encoder).

train (`train_job`): one training through the one trainer (genbench.train.train) with train.lr (no
learning-rate trials: an unsupervised objective has no validation error to choose one by); the trainer hands
the model (images, labels) batches (`task_data`), which only the supervised baseline uses. The last checkpoint
is kept.

score (`score_job`): the frozen encoder's features (genbench.models.dim.DeepInfoMax.features) of a fixed
subset of the train split (`model_config.probe_train_n` examples, drawn by a fixed seed, the same for every
objective and training seed) and of the whole test split; a linear (multinomial logistic) and an MLP probe
(genbench.metrics.probe) are fitted on the train features, seeded by the job's seed, and their test accuracies
(with binomial standard errors) -> metrics/<job>.json.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from genbench.config import Params
from genbench.data import load_split
from genbench.evaluate import code_version, library_versions
from genbench.io import write_json
from genbench.layout import job_name, metrics_path, prepared_dir, run_dir
from genbench.metrics.probe import probe_representation
from genbench.tracking import Tracker
from genbench.train import Job, load_trained, read_outcome, select_device, train

def train_job(job: Job, run_folder: Path, tracker: Tracker) -> dict[str, Any]:
    outcome = train(job, run_folder, tracker=tracker)
    tracker.log_history(Path(run_folder) / "stats.jsonl")
    return outcome


def score_job(params: Params, run: str, seed: int, tracker: Tracker) -> dict[str, Any]:
    spec = params.run(run)
    folder = run_dir(run, seed)
    t0 = time.perf_counter()
    outcome = read_outcome(folder)
    record: dict[str, Any] = {"job": job_name(run, seed), "run": run, "seed": seed, "model": spec.model,
                              "dataset": spec.dataset, "profile": params.profile, "code_version": code_version(),
                              "versions": library_versions()}
    if outcome["status"] != "completed":
        record.update(status=outcome["status"], train=outcome,
                      message=f"the training of {run} seed {seed} ended {outcome['status']}: no representation "
                              f"to probe")
        write_json(metrics_path(run, seed), record)
        return record
    device = select_device(params.harness)
    model, meta = load_trained(folder, device)
    config = model.config
    data = prepared_dir(params.data.root, spec.dataset)
    train_x, train_y = model.task_data(*load_split(data, "train"), "train")
    test_x, test_y = model.task_data(*load_split(data, "test"), "test")
    probe = probe_representation(model.features, (train_x, train_y), (test_x, test_y), seed, device,
                                 train_n=config.probe_train_n, hidden=config.probe_hidden, classes=config.classes)
    record.update(status="completed", kind="representation", objective=config.objective,
                  estimator=config.estimator if config.objective in ("local", "global") else None, **probe,
                  train=outcome, parameters=sum(p.numel() for p in model.parameters()),
                  score_time_s=time.perf_counter() - t0)
    write_json(metrics_path(run, seed), record)
    for name in ("linear", "mlp"):
        tracker.log_metrics({f"{name}_probe_{k}": v for k, v in probe[f"{name}_probe"].items()
                             if isinstance(v, (int, float))})
    return record
