"""The one trainer every model family goes through.

train(job, run_dir): seeded and deterministic on CPU; device chosen automatically (AMP on GPU);
a checkpoint (`checkpoint.pt`) holds the resolved config, model, optimisers, scaler, EMA, RNG states
and step, and a killed run resumes from it to end exactly where an uninterrupted run ends (the batch
order is a pure function of (seed, epoch), so nothing but the RNG states needs restoring). Training
rows are buffered and appended to `stats.jsonl` (and MLflow) at each checkpoint, so the file always
matches the checkpoint. A NaN/inf loss stops the run with outcome "diverged at step N".

Files in run_dir: config.json, checkpoint.pt (last, for resume), model.pt (the checkpoint selected
on the validation split: weights + config; models with a `calibrate` step — Analytic-DPM's moments —
have it run on the selected weights before the outcome is written), stats.jsonl, outcome.json (written last).
"""
from __future__ import annotations

import copy
import functools
import json
import math
import os
import pickle
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from genbench import GenbenchError
from genbench.config import HarnessConfig, Params, RunConfig
from genbench.data import info as dataset_info
from genbench.data import load_split
from genbench.data.toy2d import mode_metrics
from genbench.io import atomic_path, read_json, write_json
from genbench.layout import job_name, prepared_dir
from genbench.models import GenerativeModel, Optimization, build_model
from genbench.protocol import toy_name
from genbench.tracking import Tracker

CHECKPOINT_FORMAT = 2  # 2: loadable with weights_only=True, the log's length inside


@dataclass
class Job:
    """Everything one training job depends on, resolved from params.yaml."""

    run: str
    seed: int
    spec: RunConfig
    harness: HarnessConfig
    data_dir: str
    code: dict[str, str] = field(default_factory=dict)  # sha256 of the source files the stage runs


    @classmethod
    def from_params(cls, params: Params, run: str, seed: int) -> "Job":
        spec = params.run(run)
        return cls(run, seed, spec, params.harness, str(prepared_dir(params.data.root, spec.dataset)))

    @property
    def name(self) -> str:
        return job_name(self.run, self.seed)

    def config_dict(self) -> dict[str, Any]:
        """What determines the trained weights (the harness's progress/device flags do not)."""
        return {"run": self.run, "seed": self.seed, "spec": asdict(self.spec), "data_dir": self.data_dir,
                "code": self.code}  # changed code never resumes an old checkpoint


def select_device(harness: HarnessConfig) -> torch.device:
    if harness.device == "cuda" and not torch.cuda.is_available():
        raise GenbenchError("harness.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if harness.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(harness.device)


def deterministic_algorithms() -> None:
    """torch.use_deterministic_algorithms(True, warn_only=True), less its side effect of importing
    torch._inductor (and with it torch._dynamo: 2-3 s, most of a short stage's start-up) to set the
    compiler's flag too: genbench never compiles, so the flag the kernels read is all it needs."""
    if hasattr(torch._C, "_set_deterministic_algorithms"):
        torch._C._set_deterministic_algorithms(True, warn_only=True)
    else:  # a torch without the private setter
        torch.use_deterministic_algorithms(True, warn_only=True)


def seed_everything(seed: int, harness: HarnessConfig) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if harness.num_threads:
        torch.set_num_threads(harness.num_threads)
    deterministic_algorithms()


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """The batch of a step: epoch e is a permutation drawn from (seed, e) alone; the last partial
    batch of an epoch is dropped. Stateless, so resuming needs no data-loader state."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise GenbenchError(f"batch_size {batch_size} exceeds the {n} training examples")
    epoch, pos = divmod(step, per_epoch)
    return _epoch_permutation(n, seed, epoch)[pos * batch_size:(pos + 1) * batch_size].clone()


@functools.lru_cache(maxsize=4)
def _epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Drawn once per epoch instead of at every step (a permutation of 55k examples takes about 1 ms, a
    few per cent of a small model's step); the same permutation either way."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


class EMA:
    """Exponential moving average of the weights (Polyak averaging), kept on the model's device."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].mul_(self.decay).add_(value, alpha=1.0 - self.decay)
            else:
                self.shadow[key].copy_(value)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG's state in types `torch.load(weights_only=True)` accepts (no numpy arrays, no pickled code)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "model": generator.get_state()}


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["model"])


def load_blob(path: Path, device: torch.device | str, rerun: str) -> dict[str, Any]:
    """A checkpoint or model file, loaded with weights_only=True: tensors and plain containers only, so a
    file from a DVC remote or a shared disk cannot run code when it is read."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, KeyError) as exc:
        raise GenbenchError(f"{path} is corrupt, from another version or holds more than weights "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); {rerun}") from None


def load_trained(run_dir: Path, device: torch.device | str = "cpu") -> tuple[GenerativeModel, dict]:
    """Rebuild the selected model from run_dir/model.pt alone (it holds its config)."""
    path = Path(run_dir) / "model.pt"
    if not path.exists():
        raise GenbenchError(f"{path} not found: run `genbench train` for this job first")
    try:
        blob = load_blob(path, device, "re-run `genbench train` for this job")
        model = build_model(blob["model_name"], blob["model_config"], tuple(blob["data_shape"]))
        model.load_state_dict(blob["state_dict"])
    except (RuntimeError, KeyError, EOFError, ValueError) as exc:
        raise GenbenchError(f"{path} is corrupt or from another version ({exc}); re-run `genbench train`") from None
    return model.to(device).eval(), blob["meta"]


def read_outcome(run_dir: Path) -> dict:
    path = Path(run_dir) / "outcome.json"
    if not path.exists():
        raise GenbenchError(f"{path} not found: the training job did not finish; run `genbench train` for it")
    return read_json(path)


IN_PROGRESS = ".in_progress"  # a run being trained; the finished run beside it stays until it is replaced
RUN_FILES = ("config.json", "checkpoint.pt", "model.pt", "stats.jsonl")  # then outcome.json, always last
GAN_VALIDATION_SAMPLES = 2500  # generated points per validation pass of a 2-D GAN (PacGAN's 2500)


def _replace_run(work: Path, run_dir: Path) -> dict:
    """Move a finished run from `work` into `run_dir`: the old outcome goes first (the old run is now
    incomplete), the new files next, the new outcome last. Safe to repeat after a kill at any point."""
    (run_dir / "outcome.json").unlink(missing_ok=True)
    for name in RUN_FILES:
        if (work / name).exists():
            os.replace(work / name, run_dir / name)
        elif name == "model.pt":  # the new run diverged before its first validation: no model of its own
            (run_dir / name).unlink(missing_ok=True)
    os.replace(work / "outcome.json", run_dir / "outcome.json")
    shutil.rmtree(work, ignore_errors=True)
    return read_json(run_dir / "outcome.json")


def _sync_log(path: Path, total: int, last_rows: list[dict]) -> None:
    """Make stats.jsonl hold exactly the `total` rows the checkpoint was saved with: drop a torn last
    line and rows past the checkpoint, and re-append rows of the checkpoint's own batch that a kill between
    saving it and appending them lost."""
    lines = path.read_text().split("\n") if path.exists() else []
    complete = [line for line in lines[:-1]] if lines else []  # the text after the last newline is torn
    kept = complete[:total]
    missing = total - len(kept)
    if missing > len(last_rows):
        raise GenbenchError(f"{path} has {len(kept)} rows where the checkpoint expects {total}; delete the "
                            f"folder {path.parent} to train from scratch")
    kept += [json.dumps(row) for row in last_rows[len(last_rows) - missing:]] if missing else []
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


def train(job: Job, run_dir: Path, *, tracker: Tracker | None = None, stop_after: int | None = None,
          data: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Train (or resume) one job; returns the outcome written to run_dir/outcome.json.

    data: (train, validation) tensors to train on instead of the prepared splits of the job's dataset (a
    stage that derives its training data, genbench.sts: sentence vectors); the model's data shape is theirs.

    Everything that can refuse the job (the data, the batch size, building the model) runs before any
    file is touched. A new run trains in run_dir/.in_progress/ and replaces the finished run in run_dir
    only when it has finished itself (a bad setting or a kill never destroys a finished run).

    stop_after: stop after this many steps in this call without writing an outcome (tests use it to
    simulate a kill)."""
    tracker = tracker or Tracker()
    run_dir = Path(run_dir)
    cfg = job.spec.train
    seed_everything(job.seed, job.harness)
    device = select_device(job.harness)
    info = dataset_info(job.spec.dataset)
    if data is None:
        (train_x, train_y), (val_x, val_y) = (load_split(Path(job.data_dir), split) for split in ("train", "val"))
        shape = tuple(info.shape)
    else:
        (train_x, val_x), shape = data, tuple(data[0].shape[1:])
        train_y, val_y = torch.zeros(len(train_x)), torch.zeros(len(val_x))
    if cfg.batch_size > len(train_x):
        raise GenbenchError(f"runs.{job.run}.train.batch_size {cfg.batch_size} exceeds the {len(train_x)} "
                            f"training examples of {job.spec.dataset}; lower it")

    model = build_model(job.spec.model, job.spec.model_config, shape).to(device)
    # supervised models (genbench.models.accuracy) define their task from a split and train on (inputs, targets)
    supervised = hasattr(model, "task_data")
    if supervised:
        train_x, train_y = model.task_data(train_x, train_y, "train")
        val_x, val_y = model.task_data(val_x, val_y, "val")
    val_x, val_y = val_x[: cfg.val_n], val_y[: cfg.val_n]
    # models with per-example parameters (GLANN's GLO codes, genbench.models.glann) size them from the training
    # set before their optimisers exist, and (with `per_example = True`) take (x, batch indices) per step
    if hasattr(model, "attach_training_set"):
        model.attach_training_set(len(train_x))
    per_example = getattr(model, "per_example", False)

    def held_out(start: int, stop: int):
        x = val_x[start:stop].to(device)
        return (x, val_y[start:stop].to(device)) if supervised else x
    optimizers = model.configure_optimizers(cfg.lr, cfg.weight_decay)
    use_amp = job.harness.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    opt = Optimization(optimizers, scaler, cfg.grad_clip)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    generator = torch.Generator(device=device).manual_seed(job.seed)
    state = {"step": 0, "train_time_s": 0.0, "best_val": math.inf, "best_step": -1, "since_best": 0,
             "stopped_early": False, "log_total": 0}
    last_rows: list[dict] = []

    config = job.config_dict()
    work = run_dir / IN_PROGRESS
    if (work / "outcome.json").exists():  # killed while a finished run replaced the old one: finish that first
        replaced = _replace_run(work, run_dir)
        if read_json(run_dir / "config.json") == config:
            return replaced
    ckpt_path = work / "checkpoint.pt"
    if ckpt_path.exists():
        ckpt = load_blob(ckpt_path, device, f"delete {work} to train from scratch")
        if ckpt.get("config") == config and ckpt.get("format") == CHECKPOINT_FORMAT:
            model.load_state_dict(ckpt["model"])
            for name, o in optimizers.items():
                o.load_state_dict(ckpt["optimizers"][name])
            if scaler is not None and ckpt["scaler"] is not None:
                scaler.load_state_dict(ckpt["scaler"])
            if ema is not None:
                ema.shadow = ckpt["ema"]
            set_rng_state(ckpt["rng"], generator)
            state, last_rows = ckpt["state"], ckpt["last_rows"]
            for leftover in work.glob(".*.tmp"):  # a kill inside an atomic write leaves its temporary file
                leftover.unlink()
            _sync_log(work / "stats.jsonl", state["log_total"], last_rows)
            print(f"[{job.name}] resuming from step {state['step']}")
        else:
            print(f"[{job.name}] the unfinished run in {work} is from another config: training from scratch")
            shutil.rmtree(work)
    elif work.exists():
        shutil.rmtree(work)  # killed before its first checkpoint
    if state["step"] == 0:
        work.mkdir(parents=True)
        (work / "stats.jsonl").touch()
        write_json(work / "config.json", config)

    def eval_model() -> GenerativeModel:
        if ema is None:
            return model
        shadow = copy.deepcopy(model)
        shadow.load_state_dict(ema.shadow)
        return shadow

    # The validation figure that selects the checkpoint (lower is better): the validation loss; for a GAN
    # on a 2-D mixture -(modes covered + high-quality fraction) of fresh samples; none for image GANs,
    # which keep their last checkpoint.
    toy = toy_name(job.spec.dataset) if info.kind == "points" else None
    select_last = getattr(model, "checkpoint_selection", "validation") == "last" and toy is None
    sample_selected = getattr(model, "checkpoint_selection", "validation") == "last" and toy is not None

    def validation_figure(m: GenerativeModel) -> float:
        vgen = torch.Generator(device=device).manual_seed(job.seed + 7919)
        if sample_selected:
            modes = mode_metrics(m.sample(GAN_VALIDATION_SAMPLES, vgen).cpu(), toy)
            return -(modes["modes_covered"] + modes["high_quality_fraction"])
        losses = [m.validation_loss(held_out(i, i + 500), vgen) for i in range(0, len(val_x), 500)]
        return float(torch.cat(losses).mean())

    def validate(step: int) -> float:
        if select_last:  # no validation figure ranks this model's checkpoints (image GANs): keep the last one
            state["best_val"], state["best_step"] = math.nan, step
            save_selected(eval_model().eval(), step, math.nan)
            model.train()
            return math.nan
        m = eval_model().eval()
        with torch.no_grad():
            val = validation_figure(m)
        model.train()
        if val < state["best_val"]:
            state["best_val"], state["best_step"], state["since_best"] = val, step, 0
            save_selected(m, step, val)
        else:
            state["since_best"] += 1
        return val

    def save_selected(m: GenerativeModel, step: int, val: float) -> None:
        blob = {"model_name": job.spec.model, "model_config": job.spec.model_config, "data_shape": list(shape),
                "state_dict": m.state_dict(), "meta": {"step": step, "val_loss": val, "ema": ema is not None,
                                                        "config": config}}
        with atomic_path(work / "model.pt") as tmp:
            torch.save(blob, tmp)

    pending: list[dict] = []

    def checkpoint() -> None:
        """The checkpoint first, holding the rows it adds to the log; then the rows. A kill in between
        loses nothing: resume re-appends them (_sync_log)."""
        state["log_total"] += len(pending)
        blob = {"format": CHECKPOINT_FORMAT, "config": config, "model": model.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                "scaler": scaler.state_dict() if scaler is not None else None,
                "ema": ema.shadow if ema is not None else None, "rng": rng_state(generator), "state": state,
                "last_rows": list(pending)}
        with atomic_path(ckpt_path) as tmp:
            torch.save(blob, tmp)
        with open(work / "stats.jsonl", "a") as fh:
            for row in pending:
                fh.write(json.dumps(row) + "\n")
        tracker.log_rows(pending)
        pending.clear()

    def finish(outcome: dict) -> dict:
        checkpoint()
        write_json(work / "outcome.json", outcome)
        outcome = _replace_run(work, run_dir)
        tracker.log_artifact(run_dir / "stats.jsonl")
        tracker.log_artifact(run_dir / "outcome.json")
        return outcome

    model.train()
    start_step = state["step"]
    bar = tqdm(total=cfg.steps, initial=start_step, desc=f"train {job.name}", disable=not job.harness.progress,
               dynamic_ncols=True)
    window_t, window_n = time.perf_counter(), 0
    for step in range(start_step, cfg.steps):
        if state["stopped_early"]:
            break
        if stop_after is not None and step - start_step >= stop_after:
            checkpoint()
            bar.close()
            return {"status": "interrupted", "step": step}
        t0 = time.perf_counter()
        index = batch_indices(len(train_x), cfg.batch_size, step, job.seed)
        x = train_x[index].to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=use_amp):
            batch = (x, train_y[index].to(device)) if supervised else (x, index.to(device)) if per_example else x
            losses = model.training_step(batch, step, opt, generator)
        values = {k: float(v) for k, v in losses.items()}
        if not all(math.isfinite(v) for v in values.values()):
            bar.close()
            bad = ", ".join(f"{k} = {v}" for k, v in values.items() if not math.isfinite(v))
            state["step"] = step
            return finish({"status": "diverged", "diverged_at_step": step,
                           "message": f"diverged at step {step} ({bad}); lower the learning rate or clip gradients "
                                      f"(runs.{job.run}.train.lr / grad_clip)"})
        if ema is not None:
            ema.update(model)
        state["step"] = step + 1
        state["train_time_s"] += time.perf_counter() - t0
        window_n += len(x)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            now = time.perf_counter()
            row = {"step": step + 1, **values, "images_per_s": window_n / max(now - window_t, 1e-9)}
            window_t, window_n = now, 0
            pending.append(row)
            bar.set_postfix(loss=f"{values['loss']:.4g}")
        if cfg.val_every and (step + 1) % cfg.val_every == 0 and step + 1 < cfg.steps and not select_last:
            pending.append({"step": step + 1, "val_loss": validate(step + 1)})
            # the curve's rule: stop once the validation figure has not improved for `patience` passes
            state["stopped_early"] = bool(cfg.patience) and state["since_best"] >= cfg.patience
        if (step + 1) % cfg.checkpoint_every == 0 or state["stopped_early"]:
            checkpoint()
        bar.update(1)
    bar.close()
    last = state["step"]
    if state["best_step"] != last and not state["stopped_early"]:  # an early stop has just validated
        val = validate(last)
        if not select_last:
            pending.append({"step": last, "val_loss": val})
    calibration_s = None
    if hasattr(model, "calibrate"):  # statistics of the selected network (Analytic-DPM's Gamma_n), stored with it
        t0 = time.perf_counter()
        blob = load_blob(work / "model.pt", device, f"delete {work} to train from scratch")
        selected = build_model(job.spec.model, job.spec.model_config, shape).to(device)
        selected.load_state_dict(blob["state_dict"])
        selected.calibrate(train_x, torch.Generator(device=device).manual_seed(job.seed + 104_729),
                           progress=job.harness.progress)
        blob["state_dict"] = selected.state_dict()
        with atomic_path(work / "model.pt") as tmp:
            torch.save(blob, tmp)
        calibration_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    n_critic = getattr(getattr(model, "config", None), "n_critic", None)
    return finish({
        "status": "completed", "steps": last, "max_steps": cfg.steps,
        "stopped_early": state["stopped_early"], "patience": cfg.patience,
        "generator_updates": None if n_critic is None else last // n_critic,
        "selected_step": state["best_step"],
        "selected_val_loss": None if select_last else state["best_val"],
        "checkpoint_selection": "last" if select_last else (
            "best on validation: -(modes covered + high-quality fraction) of generated points" if sample_selected
            else "best on validation"),
        "train_time_s": state["train_time_s"],
        "train_images_per_s": last * cfg.batch_size / max(state["train_time_s"], 1e-9),
        "parameters": n_params, "device": device.type, "ema": ema is not None, "calibration_s": calibration_s,
    })
