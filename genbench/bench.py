"""`genbench bench`: throughput of every registered model on this machine, and the harness overhead.

For each model (its first run in params.yaml, on that run's prepared dataset and settings):
  bare loop      training_step on in-memory batches, nothing else        -> train images/s
  harness        genbench.train.train() for the same steps (batch order, NaN check, logging,
                 EMA, validation and checkpoints as configured)          -> overhead vs bare
  sample         model.sample in batches of eval.sample_batch_size       -> sample images/s
  evaluation     each likelihood kind on eval.sample_batch_size test examples -> seconds
Figures are printed as a table and written as JSON with --out. Tracking is off while measuring.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch

from genbench import GenbenchError
from genbench.config import load
from genbench.data import load_split
from genbench.layout import prepared_dir
from genbench.models import MODELS, Optimization, build_model
from genbench.train import Job, batch_indices, seed_everything, train


def _bare_loop(job: Job, train_x: torch.Tensor, steps: int) -> float:
    """Seconds for `steps` training steps with nothing around them (after 3 warm-up steps)."""
    spec = job.spec
    info_shape = tuple(train_x.shape[1:])
    model = build_model(spec.model, spec.model_config, info_shape)
    opt = Optimization(model.configure_optimizers(spec.train.lr, spec.train.weight_decay), None, spec.train.grad_clip)
    generator = torch.Generator().manual_seed(0)
    batches = [train_x[batch_indices(len(train_x), spec.train.batch_size, s, 0)] for s in range(steps + 3)]
    for step in range(3):
        model.training_step(batches[step], step, opt, generator)
    t0 = time.perf_counter()
    for step in range(3, steps + 3):
        model.training_step(batches[step], step, opt, generator)
    return time.perf_counter() - t0


def measure(params, run: str, steps: int) -> dict:
    job = Job.from_params(params, run, params.seeds[0])
    job.harness.progress = False
    spec = job.spec
    train_x, _ = load_split(prepared_dir(params.data.root, spec.dataset), "train")
    seed_everything(0, job.harness)
    bare_s = _bare_loop(job, train_x, steps)

    job.spec.train.steps = steps + 3
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        outcome = train(job, Path(tmp) / "run")
        harness_wall_s = time.perf_counter() - t0
    if outcome["status"] != "completed":
        raise GenbenchError(f"bench: {run} did not complete ({outcome})")
    # train_time_s covers the steps themselves (batch gathering, NaN checks, EMA, logging);
    # harness_wall_s adds data loading, model building, validation and checkpoint writes.
    per_step_harness = outcome["train_time_s"] / (steps + 3)
    per_step_bare = bare_s / steps

    model = build_model(spec.model, spec.model_config, tuple(train_x.shape[1:])).eval()
    g = torch.Generator().manual_seed(0)
    n = params.eval.sample_batch_size
    model.sample(min(n, 16), g)
    t0 = time.perf_counter()
    model.sample(n, g)
    sample_s = time.perf_counter() - t0
    test_x, _ = load_split(prepared_dir(params.data.root, spec.dataset), "test")
    evals = {}
    for kind in model.likelihood_kinds:
        kwargs = {"iwae_k": params.eval.iwae_k} if kind == "iwae" else {}
        t0 = time.perf_counter()
        model.log_likelihood(test_x[:n], kind, g, **kwargs)
        evals[kind] = time.perf_counter() - t0
    return {
        "model": spec.model, "run": run, "dataset": spec.dataset, "batch_size": spec.train.batch_size,
        "steps": steps, "threads": torch.get_num_threads(),
        "train_images_per_s_bare": steps * spec.train.batch_size / bare_s,
        "train_images_per_s_harness": spec.train.batch_size / per_step_harness,
        "harness_overhead_per_step_pct": 100.0 * (per_step_harness / per_step_bare - 1.0),
        "harness_wall_s": harness_wall_s,
        "sample_images_per_s": n / sample_s,
        "eval_seconds_per_example": {k: v / n for k, v in evals.items()},
    }


def main(args) -> int:
    os.environ["GENBENCH_TRACKING"] = "off"
    params = load(args.params)
    wanted = args.models or sorted(MODELS)
    rows = []
    for model in wanted:
        runs = [name for name, run in params.runs.items() if run.model == model]
        if not runs:
            print(f"bench: no run of model {model!r} in {args.params}; skipped")
            continue
        rows.append(measure(params, runs[0], args.steps))
    header = f"{'model':<10} {'dataset':<10} {'train img/s (bare)':>19} {'train img/s (harness)':>22} " \
             f"{'overhead %':>10} {'sample img/s':>13}  eval s/example"
    print(header)
    for r in rows:
        evals = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in r["eval_seconds_per_example"].items())
        print(f"{r['model']:<10} {r['dataset']:<10} {r['train_images_per_s_bare']:>19.0f} "
              f"{r['train_images_per_s_harness']:>22.0f} {r['harness_overhead_per_step_pct']:>10.1f} "
              f"{r['sample_images_per_s']:>13.0f}  {evals}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0
