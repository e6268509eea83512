"""The supervised runs' stages (genbench.models.accuracy).

train (`train_trials`, called by the train stage): one training per learning rate in train.lr_trials, each
in runs/<job>/lr-<lr>/ through the one trainer (resume, divergence, checkpoint kept on validation error).

score (`score_job`): the trial with the lowest validation error (ties: the first listed) is the run's model;
its test figures -> metrics/<job>.json:
  single-label: accuracy (with its binomial standard error), cross-entropy of the objective's own predictive
  distribution (nats), expected calibration error (15 equal-width confidence bins; Guo et al. 2017, eq. 3);
  multi-label: micro and macro F1, exact-match ratio and Hamming loss of the scores thresholded at 0.
Every trial's validation error is stored beside the selection, so the tuning is visible.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from genbench.config import Params
from genbench.data import load_split
from genbench.evaluate import code_version, library_versions
from genbench.io import write_json
from genbench.layout import job_name, metrics_path, prepared_dir, run_dir
from genbench.tracking import Tracker
from genbench.train import Job, load_trained, read_outcome, select_device, train

ECE_BINS = 15


def learning_rates(spec) -> list[float]:
    return list(spec.train.lr_trials or [spec.train.lr])


def trial_dir(run_folder: Path, lr: float) -> Path:
    return Path(run_folder) / f"lr-{lr:g}"


def trial_prefix(lr: float) -> str:
    """The MLflow metric-name prefix of one learning-rate trial (MLflow refuses `=` in a name)."""
    return f"lr_{lr:g}/"


class TrialTracker(Tracker):
    """The job's MLflow run, with every metric of one of its trainings named `<prefix><metric>` (a learning-rate
    trial: `lr_<lr>/`, MLflow allows no `=` in a name; a sentence-embedding run's flow: `<pooling>/`)."""

    def __init__(self, parent: Tracker, prefix: str):
        super().__init__(parent.folder, parent.record)
        self.prefix = prefix

    def _named(self, row: dict[str, Any]) -> dict[str, Any]:
        return {(k if k == "step" else self.prefix + k): v for k, v in row.items()}

    def log_rows(self, rows: list[dict[str, Any]]) -> None:
        super().log_rows([self._named(row) for row in rows])

    def log_history(self, log: Path) -> None:
        if self.folder is None or not log.is_file():
            return
        logged = {(key, step) for key, _, _, step in self.record["metrics"]}
        rows = [self._named(json.loads(line)) for line in log.read_text().splitlines() if line.strip()]
        Tracker.log_rows(self, [{k: v for k, v in row.items() if k == "step" or (k, int(row.get("step", 0))) not in logged}
                                for row in rows])

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        super().log_artifact(path, artifact_path or self.prefix.rstrip("/"))


def train_trials(job: Job, run_folder: Path, tracker: Tracker) -> dict[str, Any]:
    """Train the job once per learning rate; the summary says how each trial ended."""
    outcomes = {}
    for lr in learning_rates(job.spec):
        trial = replace(job, spec=replace(job.spec, train=replace(job.spec.train, lr=lr, lr_trials=None)))
        print(f"[{job.name}] learning-rate trial {lr:g}")
        trial_tracker = TrialTracker(tracker, trial_prefix(lr))
        outcomes[f"{lr:g}"] = train(trial, trial_dir(run_folder, lr), tracker=trial_tracker)
        trial_tracker.log_history(trial_dir(run_folder, lr) / "stats.jsonl")
    diverged = [lr for lr, o in outcomes.items() if o["status"] == "diverged"]
    status = "diverged" if len(diverged) == len(outcomes) else "completed"
    summary = {"status": status, "trials": {lr: o["status"] for lr, o in outcomes.items()},
               "message": f"every learning-rate trial diverged ({', '.join(diverged)}): lower "
                          f"runs.{job.run}.train.lr_trials" if status == "diverged" else None}
    write_json(Path(run_folder) / "outcome.json", summary)  # last: the job's trials are all done
    return summary


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------
def expected_calibration_error(probs: torch.Tensor, target: torch.Tensor, bins: int = ECE_BINS) -> float:
    """sum_b |B_b|/n |accuracy(B_b) - confidence(B_b)| over equal-width bins of the top probability."""
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == target).double()
    index = (confidence.double() * bins).clamp(max=bins - 1).long()  # confidence 1.0 falls in the last bin
    total = 0.0
    for b in range(bins):
        mask = index == b
        if bool(mask.any()):
            total += float(mask.double().mean() * (correct[mask].mean() - confidence[mask].double().mean()).abs())
    return total


def classification_scores(probs: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
    n = len(target)
    accuracy = float((probs.argmax(dim=1) == target).double().mean())
    nll = -torch.log(probs.gather(1, target[:, None]).squeeze(1).double().clamp_min(1e-300))
    return {"n": n, "accuracy": accuracy, "accuracy_stderr": math.sqrt(accuracy * (1 - accuracy) / n),
            "error_percent": 100 * (1 - accuracy), "cross_entropy": float(nll.mean()),
            "cross_entropy_stderr": float(nll.std() / math.sqrt(n)) if n > 1 else 0.0,
            "ece": expected_calibration_error(probs, target)}


def multilabel_scores(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """Micro F1 (pooled counts), macro F1 (mean of per-class F1; a class never predicted nor present
    counts as 1), exact-match ratio and Hamming loss of the predictions s > 0."""
    predicted, truth = scores > 0, targets.bool()
    tp = (predicted & truth).sum(dim=0).double()
    fp = (predicted & ~truth).sum(dim=0).double()
    fn = (~predicted & truth).sum(dim=0).double()
    micro = float(2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()).clamp_min(1))
    per_class = torch.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn).clamp_min(1), torch.ones_like(tp))
    exact = (predicted == truth).all(dim=1).double()
    n = len(targets)
    return {"n": n, "micro_f1": micro, "macro_f1": float(per_class.mean()), "exact_match": float(exact.mean()),
            "exact_match_stderr": float(exact.std() / math.sqrt(n)) if n > 1 else 0.0,
            "hamming_loss": float((predicted != truth).double().mean())}


@torch.no_grad()
def batched_scores(model, x: torch.Tensor, device, batch: int = 1000) -> torch.Tensor:
    return torch.cat([model.scores(x[i:i + batch].to(device)).double().cpu() for i in range(0, len(x), batch)])


def score_job(params: Params, run: str, seed: int, tracker: Tracker) -> dict[str, Any]:
    spec = params.run(run)
    folder = run_dir(run, seed)
    t0 = time.perf_counter()
    trials = []
    for lr in learning_rates(spec):
        outcome = read_outcome(trial_dir(folder, lr))
        val = outcome.get("selected_val_loss")
        ok = outcome["status"] == "completed" and val is not None and math.isfinite(val)
        trials.append({"lr": lr, "status": outcome["status"], "val_error": val if ok else None,
                       "steps": outcome.get("steps"), "selected_step": outcome.get("selected_step"),
                       "train_time_s": outcome.get("train_time_s")})
    record: dict[str, Any] = {"job": job_name(run, seed), "run": run, "seed": seed, "model": spec.model,
                              "dataset": spec.dataset, "profile": params.profile, "trials": trials,
                              "selection": "the learning rate whose checkpoint has the lowest validation error "
                                           "(multi-label: Hamming loss); its test figures",
                              "code_version": code_version(), "versions": library_versions()}
    usable = [t for t in trials if t["val_error"] is not None]
    if not usable:
        record.update(status="diverged", message=f"every learning-rate trial of {run} seed {seed} diverged")
        write_json(metrics_path(run, seed), record)
        return record
    best = min(usable, key=lambda t: t["val_error"])  # min keeps the first of equals: the order listed
    device = select_device(params.harness)
    model, meta = load_trained(trial_dir(folder, best["lr"]), device)
    x, y = load_split(prepared_dir(params.data.root, spec.dataset), "test")
    x, y = model.task_data(x, y, "test")
    scores = batched_scores(model, x, device)
    config = model.config
    if hasattr(model, "predictive"):
        kind, name = "classification", config.objective
        figures = classification_scores(model.predictive(scores), y)
    else:
        kind, name = "multilabel", config.loss
        figures = multilabel_scores(scores, y)
    record.update(status="completed", kind=kind, objective=name, selected_lr=best["lr"],
                  selected_val_error=best["val_error"], test=figures,
                  train=read_outcome(trial_dir(folder, best["lr"])), parameters=sum(p.numel() for p in model.parameters()),
                  network=config.network, score_time_s=time.perf_counter() - t0)
    write_json(metrics_path(run, seed), record)
    tracker.log_metrics({f"test_{k}": v for k, v in figures.items() if isinstance(v, (int, float))})
    tracker.log_metrics({"selected_lr": best["lr"], "selected_val_error": best["val_error"]})
    return record
