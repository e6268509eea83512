"""`genbench bench`: throughput of every registered model on this machine, and the harness overhead.

On a shared machine one timing of each loop is noise, so every comparison here is measured the same way:
each side is warmed up by time (steps until --warmup-s seconds have passed: allocator, oneDNN caches,
lazily built buffers), then timed in short segments that alternate (A, B, A, B, ...) for --repeats rounds;
a slow phase of the machine then lands on both sides, and each figure is the median over the rounds
with its min and max. Ratios are ratios of the medians; their range is that of the per-round ratios.

For each model (its first run in params.yaml, on that run's prepared dataset and settings):
  bare loop      training_step on in-memory batches, plus the EMA update when the run configures one
                 (the EMA is part of what the run trains)                 -> train images/s
  harness        genbench.train.train() itself: its per-step time, i.e. batch gathering, training_step,
                 NaN check, EMA, per-step logging (log_every = 1, so at least what the run logs); the
                 validation passes and checkpoint writes are left out     -> overhead vs bare
  sample         model.sample in batches of eval.sample_batch_size       -> sample images/s (and, for
                 iterative samplers — diffusion steps, Langevin steps — network evaluations per second)
  evaluation     each likelihood kind on eval.sample_batch_size test examples (at most the run's
                 eval.likelihood_n)                                       -> seconds per example
  --peers        vae, glow, ddpm against pythae, normflows and denoising-diffusion-pytorch: one training
                 step of each on MNIST 1x28x28 batches of 64, 2 threads (pip install -e .[peers])
  --scaling      one bare training step at image sides 14, 28, 56 (Glow and TARFLOW, the config of
                 their first run; TARFLOW with 2x2 patches, Glow with one level, so every side fits): ms/step and
                 the growth factor per doubling of the side
  --iresnet-logdet  bias and standard deviation of the i-ResNet log-det estimate against
                 the exact value (full Jacobian) as the series grows, on small inputs
  glow 1x1 conv  with glow: forward + backward of Glow's invertible 1x1 convolutions alone, in each form of
                 model_config.invconv (LU, plain, W = exp(A)), alternated, at the shapes and batch of the first
                 Glow image run                                           -> ms/step, images/s, x LU
Figures are printed as tables and written as JSON with --out. Tracking is off while measuring.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import itertools
import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from genbench import GenbenchError
from genbench.config import load
from genbench.data import load_split
from genbench.layout import prepared_dir, run_dir
from genbench.models import MODELS, Optimization, build_model
from genbench.tracking import Tracker
from genbench.train import EMA, Job, batch_indices, load_trained, seed_everything, train

Clock = Callable[[], float]


# ==================================================================================================
# noise-robust timing
# ==================================================================================================
def warm_up(step: Callable[[], object], seconds: float, clock: Clock = time.perf_counter,
            min_steps: int = 3) -> float:
    """Call step() until `seconds` have passed (and at least `min_steps` times); returns the median
    seconds per call of the second half, an estimate of the warm step time that sizes the segments."""
    times: list[float] = []
    start = clock()
    while len(times) < min_steps or clock() - start < seconds:
        t0 = clock()
        step()
        times.append(clock() - t0)
    return statistics.median(times[len(times) // 2:])


def segment_steps(seconds_per_step: float, segment_s: float, minimum: int = 5) -> int:
    """Steps in one timed segment: enough to fill about `segment_s` seconds."""
    return max(minimum, math.ceil(segment_s / max(seconds_per_step, 1e-9)))


def time_segment(step: Callable[[], object], steps: int, clock: Clock = time.perf_counter) -> float:
    """Seconds per call of step(), over `steps` back-to-back calls."""
    t0 = clock()
    for _ in range(steps):
        step()
    return (clock() - t0) / steps


def alternate(segments: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """`repeats` rounds; each round runs every segment once, in the order given (A, B, A, B, ...).
    A segment returns its seconds per step; returns them per name, one per round."""
    out: dict[str, list[float]] = {name: [] for name in segments}
    for _ in range(repeats):
        for name, segment in segments.items():
            out[name].append(segment())
    return out


def spread(values: list[float]) -> dict[str, float]:
    """Median with min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def rate(seconds_per_step: list[float], batch_size: int) -> dict[str, float]:
    """Images per second of each round, as median [min, max] (the slowest round gives the min)."""
    return spread([batch_size / s for s in seconds_per_step])


def ratio(a: list[float], b: list[float]) -> dict[str, float]:
    """median(a) / median(b), with the min and max of the per-round ratios a_i / b_i."""
    per_round = [x / y for x, y in zip(a, b)]
    return {"median": statistics.median(a) / statistics.median(b), "min": min(per_round), "max": max(per_round)}


def fmt(s: dict[str, float], scale: float = 1.0, digits: int = 0, sign: bool = False) -> str:
    """`median [min, max]` of a spread, each value times `scale`."""
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"{f.format(s['median'] * scale)} [{f.format(s['min'] * scale)}, {f.format(s['max'] * scale)}]"


# ==================================================================================================
# training: bare loop vs the harness, alternated
# ==================================================================================================
class BareLoop:
    """The model's training_step on in-memory batches and nothing else, plus the EMA update when the run
    configures one (the EMA is part of what the run trains, so both loops do it)."""

    def __init__(self, job: Job, train_x: torch.Tensor, pool: int = 32):
        spec = job.spec
        self.model = build_model(spec.model, spec.model_config, tuple(train_x.shape[1:]))
        if hasattr(self.model, "attach_training_set"):  # per-example parameters (GLANN's GLO codes)
            self.model.attach_training_set(len(train_x))
        self.opt = Optimization(self.model.configure_optimizers(spec.train.lr, spec.train.weight_decay), None,
                                spec.train.grad_clip)
        self.ema = EMA(self.model, spec.train.ema_decay) if spec.train.ema_decay else None
        self.generator = torch.Generator().manual_seed(job.seed)
        indices = [batch_indices(len(train_x), spec.train.batch_size, s, job.seed) for s in range(pool)]
        per_example = getattr(self.model, "per_example", False)
        self.batches = [(train_x[i], i) if per_example else train_x[i] for i in indices]
        self.steps = 0

    def step(self) -> None:
        self.model.training_step(self.batches[self.steps % len(self.batches)], self.steps, self.opt, self.generator)
        if self.ema is not None:
            self.ema.update(self.model)
        self.steps += 1


class _Enough(Exception):
    """Raised by HarnessProbe once the last round is timed: ends the harness run (no final validation)."""


class HarnessProbe(Tracker):
    """Stands in for train()'s tracker to time the harness from inside and alternate it with the bare loop.

    train() runs with log_every = 1 (each row holds the images/s of one step: the time between two rows,
    i.e. one whole iteration of its loop) and checkpoint_every = one segment; at every checkpoint it hands
    the buffered rows to log_rows. There the probe takes the segment's seconds per step, leaving out each
    segment's first step (it also timed the checkpoint write and the bare segment before it). Segments are
    warm-up (at least one) until `warmup_s` seconds of harness steps have run; from then on the probe runs
    one bare segment per call (bare, harness, bare, harness, ...) and, after `repeats` rounds, ends the run."""

    def __init__(self, batch_size: int, repeats: int, warmup_s: float, bare_segment: Callable[[], float]):
        super().__init__()
        self.batch_size, self.repeats, self.warmup_s = batch_size, repeats, warmup_s
        self.bare_segment = bare_segment
        self.warming, self.warm_s = True, 0.0
        self.bare: list[float] = []
        self.harness: list[float] = []

    def log_rows(self, rows: list[dict]) -> None:
        seconds = [self.batch_size / r["images_per_s"] for r in rows if "images_per_s" in r][1:]
        if self.warming:  # at least the first segment is warm-up
            self.warm_s += sum(seconds)
            if self.warm_s < self.warmup_s:
                return
            self.warming = False
        else:
            self.harness.append(statistics.fmean(seconds))
            if len(self.harness) == self.repeats:
                raise _Enough
        self.bare.append(self.bare_segment())


def training_throughput(job: Job, train_x: torch.Tensor, repeats: int, warmup_s: float, segment_s: float,
                        steps: int | None = None) -> dict:
    """Seconds per step of the bare loop and of the harness, alternated (see HarnessProbe)."""
    seed_everything(job.seed, job.harness)  # threads and deterministic kernels as train() sets them
    bare = BareLoop(job, train_x)
    n = steps or segment_steps(warm_up(bare.step, warmup_s), segment_s)
    if steps:
        warm_up(bare.step, warmup_s)
    probe = HarnessProbe(job.spec.train.batch_size, repeats, warmup_s, lambda: time_segment(bare.step, n))
    # the harness as configured, except: it logs every step, checkpoints every segment, validates only
    # at the end (never reached: the probe stops it) and would run for ever
    timed = dataclasses.replace(job.spec.train, steps=10**12, log_every=1, checkpoint_every=n, val_every=0)
    timed_job = dataclasses.replace(job, spec=dataclasses.replace(job.spec, train=timed))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            train(timed_job, Path(tmp) / "run", tracker=probe)
        except _Enough:
            pass
    return {"segment_steps": n, "bare_s": probe.bare, "harness_s": probe.harness}


def measure(params, run: str, repeats: int, warmup_s: float, segment_s: float, steps: int | None = None) -> dict:
    job = Job.from_params(params, run, params.seeds[0])
    job.harness.progress = False
    spec = job.spec
    train_x, _ = load_split(prepared_dir(params.data.root, spec.dataset), "train")
    timing = training_throughput(job, train_x, repeats, warmup_s, segment_s, steps)
    bs = spec.train.batch_size
    bare, harness = timing["bare_s"], timing["harness_s"]
    overhead = ratio(harness, bare)

    model = build_model(spec.model, spec.model_config, tuple(train_x.shape[1:])).eval()
    g = torch.Generator().manual_seed(0)
    n = params.eval.sample_batch_size
    if hasattr(model, "calibrate"):  # post-training statistics the samplers need (Analytic-DPM's Gamma_n)
        model.calibrate(train_x[:64], g)
    model.sample(min(n, 16), g)
    t0 = time.perf_counter()
    model.sample(n, g)
    sample_s = time.perf_counter() - t0
    test_x, _ = load_split(prepared_dir(params.data.root, spec.dataset), "test")
    # seconds per example need few examples: at most 32 (and the run's own cap; diffusion bounds are slow)
    n_eval = min(n, spec.eval.likelihood_n or n, 32)
    evals = {}
    for kind in model.likelihood_kinds:
        kwargs = {"iwae_k": params.eval.iwae_k} if kind == "iwae" else {}
        t0 = time.perf_counter()
        model.log_likelihood(test_x[:n_eval], kind, g, **kwargs)
        evals[kind] = time.perf_counter() - t0
    updates = gan_update_rates(job, train_x, timing["segment_steps"]) if hasattr(model, "discriminator_update") else {}
    return {
        **updates,
        "model": spec.model, "run": run, "dataset": spec.dataset, "batch_size": bs,
        "threads": torch.get_num_threads(), "rounds": repeats, "segment_steps": timing["segment_steps"],
        "warmup_s": warmup_s,
        # per-step seconds of each round, and their medians [min, max] as ms/step and images/s
        "train_s_per_step_bare": bare, "train_s_per_step_harness": harness,
        "train_ms_per_step_bare": {k: 1e3 * v for k, v in spread(bare).items()},
        "train_ms_per_step_harness": {k: 1e3 * v for k, v in spread(harness).items()},
        "train_images_per_s_bare": bs / statistics.median(bare),
        "train_images_per_s_harness": bs / statistics.median(harness),
        # harness / bare - 1: of the medians, and the range over the rounds (each round's pair is adjacent)
        "harness_overhead_per_step_pct": 100.0 * (overhead["median"] - 1.0),
        "harness_overhead_pct_range": [100.0 * (overhead["min"] - 1.0), 100.0 * (overhead["max"] - 1.0)],
        "sample_images_per_s": n / sample_s,
        # iterative samplers: network evaluations (of the whole batch's images) per second while sampling
        **({"sampling_network_evaluations": nfe, "network_evaluations_per_s": n * nfe / sample_s}
           if (nfe := getattr(model, "sampling_network_evaluations", None)) else {}),
        "eval_examples": n_eval, "eval_seconds_per_example": {k: v / n_eval for k, v in evals.items()},
    }


BASELINE_OBJECTIVES = ("cross-entropy", "binary-cross-entropy", "supervised")


def objective_label(model_config: dict) -> str:
    """An objective run's name in the tables: its objective (or loss), and its MI estimator where it has one."""
    label = model_config.get("objective", model_config.get("loss", ""))
    return f"{label}/{model_config['estimator']}" if model_config.get("estimator") else label


def objective_step_times(params, models: list[str], warmup_s: float, segment_s: float, repeats: int) -> list[dict]:
    """Training-step time of every objective of a family whose runs train one network on (inputs, labels)
    batches, on one dataset (the first image dataset with a cross-entropy run, else the first run's): the same
    network and batch, so the difference is the objective. The accuracy family (EXACT's orthant probability,
    the argmax-of-noise quadratures; the multi-label losses) against its baselines (cross-entropy; per-label
    BCE); the representation family (Deep InfoMax's critics and prior matching) against its supervised
    encoder."""
    runs = {name: run for name, run in params.runs.items() if run.model in models}
    if not runs:
        return []
    image_sets = [r.dataset for r in runs.values() if r.model_config.get("objective", "cross-entropy") == "cross-entropy"
                  and r.model_config.get("network") == "cnn"]
    dataset = image_sets[0] if image_sets else next(iter(runs.values())).dataset
    out, base = [], None
    for name, spec in runs.items():
        if spec.dataset != dataset:
            continue
        job = Job.from_params(params, name, params.seeds[0])
        seed_everything(job.seed, job.harness)
        x, y = load_split(prepared_dir(params.data.root, dataset), "train")
        model = build_model(spec.model, spec.model_config, tuple(x.shape[1:]))
        x, y = model.task_data(x[:4096], y[:4096], "train")
        opt = Optimization(model.configure_optimizers(spec.train.lr, 0.0), None, spec.train.grad_clip)
        g, bs = torch.Generator().manual_seed(0), spec.train.batch_size
        batches = [(x[i * bs:(i + 1) * bs], y[i * bs:(i + 1) * bs]) for i in range(len(x) // bs)]
        counter = iter(range(10**12))

        def step():
            k = next(counter)
            model.training_step(batches[k % len(batches)], k, opt, g)

        n = segment_steps(warm_up(step, warmup_s), segment_s)
        seconds = [time_segment(step, n) for _ in range(repeats)]
        row = {"run": name, "objective": objective_label(spec.model_config),
               "dataset": dataset, "batch_size": bs, "ms_per_step": {k: 1e3 * v for k, v in spread(seconds).items()},
               "images_per_s": bs / statistics.median(seconds)}
        out.append(row)
    # each against its family's baseline on the same network: cross-entropy, and per-label BCE for the
    # multi-label losses (their network reads 56 x 56 composites)
    baselines = {r["run"]: r for r in out if r["objective"] in BASELINE_OBJECTIVES}
    for row in out:
        base = next((b for b in baselines.values() if runs[b["run"]].model == runs[row["run"]].model), None)
        row["baseline"] = base["objective"] if base else None
        row["vs_baseline"] = row["ms_per_step"]["median"] / base["ms_per_step"]["median"] if base else float("nan")
    return out


def gan_update_rates(job: Job, train_x: torch.Tensor, steps: int) -> dict:
    """GANs: real images per second of a discriminator update and of a generator update, each alone."""
    spec = job.spec
    model = build_model(spec.model, spec.model_config, tuple(train_x.shape[1:]))
    opt = Optimization(model.configure_optimizers(spec.train.lr, spec.train.weight_decay), None, spec.train.grad_clip)
    g = torch.Generator().manual_seed(0)
    real = [model.to_model_space(train_x[batch_indices(len(train_x), spec.train.batch_size, s, 0)])
            for s in range(steps + 1)]
    out = {"n_critic": model.config.n_critic}
    for name, update in (("discriminator", model.discriminator_update), ("generator", model.generator_update)):
        update(real[0], opt, g)
        t0 = time.perf_counter()
        for batch in real[1:]:
            update(batch, opt, g)
        out[f"{name}_update_images_per_s"] = steps * spec.train.batch_size / (time.perf_counter() - t0)
    return out


def step_time_by_side(params, model_name: str, sides=(14, 28, 56), steps: int = 5) -> list[dict]:
    """Seconds per bare training step on random 8-bit images of each side (cost vs. image size)."""
    runs = [r for r in params.runs.values() if r.model == model_name]
    if not runs:
        raise GenbenchError(f"bench --scaling: no run of model {model_name!r} in params.yaml")
    spec = runs[0]
    # every side must fit the architecture: TARFLOW with 2x2 patches, Glow with one level (14 -> 7)
    cfg = dict(spec.model_config, **({"patch_size": 2} if model_name == "tarflow" else {"levels": 1}))
    out = []
    for side in sides:
        torch.manual_seed(0)
        model = build_model(model_name, cfg, (1, side, side))
        opt = Optimization(model.configure_optimizers(spec.train.lr, 0.0), None, None)
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (spec.train.batch_size, 1, side, side), generator=g, dtype=torch.uint8)
        model.training_step(x, 0, opt, g)
        t0 = time.perf_counter()
        for step in range(steps):
            model.training_step(x, step + 1, opt, g)
        seconds = (time.perf_counter() - t0) / steps
        out.append({"model": model_name, "side": side, "batch_size": spec.train.batch_size,
                    "ms_per_step": 1e3 * seconds, "images_per_s": spec.train.batch_size / seconds,
                    "config": cfg})
    for prev, cur in zip(out, out[1:]):
        cur["growth_vs_half_side"] = cur["ms_per_step"] / prev["ms_per_step"]
    return out


def _record_input(seen: list, module: torch.nn.Module, args: tuple, output: object) -> None:
    """A forward hook (bound to `seen` with functools.partial): keeps the module and its input, as a leaf that
    requires grad (a backward then computes the input's gradient too, as in training)."""
    seen.append((module, args[0].detach().requires_grad_(True)))


def _conv1x1_pass(layers: list[tuple[torch.nn.Module, torch.Tensor]]) -> None:
    """Forward and backward of each layer on its input (loss: the sum of the log-dets and of the outputs' means)."""
    sum(logdet.mean() + y.mean() for y, logdet in (layer(x) for layer, x in layers)).backward()


def conv1x1_step_times(model_config: dict, shape: tuple[int, ...], batch_size: int, repeats: int, warmup_s: float,
                       segment_s: float) -> dict:
    """Glow's invertible 1x1 convolutions in each form of `invconv` (flows.CONV_1X1) side by side: each form's
    Glow is built from seed 0 (so the forms differ in W alone) and run once on a batch of random 8-bit images
    (ActNorm's initialisation), which records the input of every 1x1 convolution; then forward + backward of
    those convolutions alone on those inputs, warmed up by time and alternated (lu, plain, exp, lu, ...)."""
    from genbench.models.flows import CONV_1X1, Conv1x1

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch_size, *shape), generator=g, dtype=torch.uint8)
    passes, parameters = {}, {}
    for form in CONV_1X1:
        torch.manual_seed(0)
        model = build_model("glow", dict(model_config, invconv=form), shape)
        seen: list[tuple[torch.nn.Module, torch.Tensor]] = []
        hooks = [m.register_forward_hook(functools.partial(_record_input, seen))
                 for m in model.modules() if isinstance(m, Conv1x1)]
        with torch.no_grad():
            model.train().log_likelihood_of_input(model.model_input(x, g), model.context(g))
        for h in hooks:
            h.remove()
        passes[form] = functools.partial(_conv1x1_pass, seen)
        parameters[form] = sum(p.numel() for layer, _ in seen for p in layer.parameters())
    segments = {form: functools.partial(time_segment, step, segment_steps(warm_up(step, warmup_s), segment_s))
                for form, step in passes.items()}
    seconds = alternate(segments, repeats)
    return {"batch_size": batch_size, "shape": list(shape), "threads": torch.get_num_threads(), "rounds": repeats,
            "warmup_s": warmup_s, "layers": [list(inp.shape[1:]) for _, inp in seen],  # (C, H, W), alike in every form
            "forms": {form: {"parameters": parameters[form], "s_per_step": seconds[form],
                             "ms_per_step": {k: 1e3 * v for k, v in spread(seconds[form]).items()},
                             "images_per_s": rate(seconds[form], batch_size),
                             "time_vs_lu": ratio(seconds[form], seconds["lu"])} for form in seconds}}


def invconv_step_times(params, repeats: int, warmup_s: float, segment_s: float) -> dict | None:
    """conv1x1_step_times on the first Glow run on images: its model_config, batch size, dataset shape and
    threads; None when there is no such run."""
    from genbench.data import info

    run = next((name for name, r in params.runs.items() if r.model == "glow" and len(info(r.dataset).shape) == 3),
               None)
    if run is None:
        return None
    job = Job.from_params(params, run, params.seeds[0])
    seed_everything(job.seed, job.harness)  # threads and deterministic kernels as train() sets them
    spec = job.spec
    return {"run": run, **conv1x1_step_times(spec.model_config, info(spec.dataset).shape, spec.train.batch_size,
                                             repeats, warmup_s, segment_s)}


def print_conv1x1(r: dict, glow_row: dict | None = None) -> None:
    """The forms side by side; with the LU Glow's bare training step (`measure`), the share of it they take."""
    shapes = " and ".join(sorted({"x".join(map(str, s)) for s in r["layers"]}, reverse=True))
    print(f"\nGlow's invertible 1x1 convolutions ({r.get('run', 'glow')}: {len(r['layers'])} layers at {shapes}, "
          f"batch {r['batch_size']}), forward + backward, {r['threads']} threads;\n  median [min, max] over "
          f"{r['rounds']} alternated rounds (lu, plain, exp, ...) after a warm-up by time; x LU = time / LU's time;\n"
          "  params = elements of the layers' parameter tensors (LU keeps L and U as full C x C matrices, masked)")
    step = glow_row["train_ms_per_step_bare"]["median"] if glow_row else None
    logdet = {"lu": "sum log|s| (eq. 10)", "plain": "slogdet W (eq. 9)", "exp": "tr A, W = exp(A)"}
    print(f"{'invconv':<8} {'log|det W|':<20} {'params':>7} {'ms/step':>22} {'img/s':>22} {'x LU':>18}"
          + (f" {'% of step':>10}" if step else ""))
    for form, f in r["forms"].items():
        print(f"{form:<8} {logdet.get(form, ''):<20} {f['parameters']:>7} {fmt(f['ms_per_step'], digits=2):>22} "
              f"{fmt(f['images_per_s']):>22} {fmt(f['time_vs_lu'], digits=2):>18}"
              + (f" {100 * f['ms_per_step']['median'] / step:>10.1f}" if step else ""))
    if step:
        print(f"  % of step: of the median bare training step of the LU Glow above ({step:.1f} ms)")


def iresnet_logdet_study(model=None, x_uint8: torch.Tensor | None = None, terms=(1, 2, 3, 5, 10, 20, 40),
                         seed: int = 0) -> list[dict]:
    """`IResNet.logdet_truncation_study` on `model` (default: a small random i-ResNet on 8x8 images pushed
    to its Lipschitz bound) and `x_uint8` (default: 4 random images)."""
    from genbench.models.flows import SpectralNormConv

    if model is None:
        torch.manual_seed(seed)
        model = build_model("iresnet", {"levels": 1, "blocks_per_level": 2, "hidden_channels": 16,
                                        "lipschitz_coeff": 0.9}, (1, 8, 8))
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, SpectralNormConv):
                    m.conv.weight.mul_(10)  # push every layer to its Lipschitz bound
                    m.power_iterate(50)
    g = torch.Generator().manual_seed(seed)
    if x_uint8 is None:
        x_uint8 = torch.randint(0, 256, (4, *model.data_shape), generator=g, dtype=torch.uint8)
    return model.logdet_truncation_study(x_uint8, tuple(terms), g)


# ==================================================================================================
# --peers: the same training step in another library
# ==================================================================================================
PEERS = {  # genbench model -> (module, PyPI distribution) of the library it is timed against
    "vae": ("pythae", "pythae"),
    "glow": ("normflows", "normflows"),
    "ddpm": ("denoising_diffusion_pytorch", "denoising-diffusion-pytorch"),
}
PEER_BATCH, PEER_THREADS, PEER_SHAPE = 64, 2, (1, 28, 28)
# the (resolved) model_config keys that shape the training step, printed with each pair
PEER_KEYS = {"vae": ("latent_dim", "hidden_channels", "hidden_units"),
             "glow": ("levels", "steps_per_level", "hidden_channels", "res_blocks", "learned_split_prior"),
             "ddpm": ("channels", "channel_mults", "res_blocks", "attention", "dropout", "timesteps", "schedule")}

# where the two sides of each pair are built differently (printed under the pair)
PEER_NOTES = {
    "vae": "same ConvEncoder/ConvDecoder layers; genbench's decoder emits 2 channels (logistic loc, log-scale; "
           "256-bin discretized likelihood), pythae's 1 (sigmoid mean, MSE loss)",
    "glow": "same layout (squeeze, K x [actnorm, LU 1x1 conv, affine coupling], split, squeeze, K x [...]); "
            "genbench's coupling net takes all C channels masked and emits 2C (normflows: C/2 in, C out), its "
            "split prior is a conv on the kept half (normflows: a learnt per-channel Gaussian); genbench clips "
            "gradients (its run's grad_clip)",
    "ddpm": "denoising-diffusion-pytorch's Unet has 2 res blocks and an attention layer per level (linear; full "
            "at the innermost) and full attention in the middle, genbench's 1 res block per level and attention "
            "in the middle only; both: linear schedule, same T, eps-prediction, genbench's dropout; EMA left out "
            "on both sides",
}


@dataclass
class Contender:
    label: str
    step: Callable[[torch.Tensor], object]  # one training step on a uint8 batch (N, C, H, W)
    parameters: int  # the parameters its optimizer updates


def require_peers(models: list[str]) -> dict[str, str]:
    """Import each peer library; a missing one is one clear error. Returns `name version` per model."""
    found = {}
    for model in models:
        module, dist = PEERS[model]
        try:
            importlib.import_module(module)
        except ImportError:
            raise GenbenchError(f"bench --peers: {dist} (the peer of {model}) is not installed; "
                                "install with pip install -e .[peers]") from None
        found[model] = f"{dist} {importlib.metadata.version(dist)}"
    return found


def _trained(optimizer: torch.optim.Optimizer) -> int:
    return sum(p.numel() for group in optimizer.param_groups for p in group["params"])


def genbench_contender(name: str, model_config: dict, lr: float, weight_decay: float,
                       grad_clip: float | None) -> Contender:
    model = build_model(name, model_config, PEER_SHAPE)
    optimizers = model.configure_optimizers(lr, weight_decay)
    opt = Optimization(optimizers, None, grad_clip)
    g, steps = torch.Generator().manual_seed(0), itertools.count()
    return Contender(f"genbench {name}", lambda x: model.training_step(x, next(steps), opt, g),
                     sum(_trained(o) for o in optimizers.values()))


def pythae_vae(model_config: dict, lr: float) -> Contender:
    """pythae's VAE around genbench's own conv encoder / decoder; the step of pythae's BaseTrainer."""
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    from genbench.models.vae import ConvDecoder, ConvEncoder

    cfg = build_model("vae", model_config, PEER_SHAPE).config  # resolved, with genbench's defaults
    c, h, w = PEER_SHAPE

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = ConvEncoder(c, h, w, cfg.hidden_channels, cfg.hidden_units, 2 * cfg.latent_dim)

        def forward(self, x):
            mean, log_var = self.net(x).chunk(2, dim=1)
            return ModelOutput(embedding=mean, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = ConvDecoder(cfg.latent_dim, c, h, w, cfg.hidden_channels, cfg.hidden_units)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    model = VAE(VAEConfig(input_dim=PEER_SHAPE, latent_dim=cfg.latent_dim, reconstruction_loss="mse"),
                encoder=Encoder(), decoder=Decoder())
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(x):  # BaseTrainer: forward on the batch dict, zero_grad, backward, step, loss.item()
        out = model({"data": x.float() / 255.0})
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        return out.loss.item()

    return Contender("pythae VAE", step, _trained(opt))


def normflows_glow(model_config: dict, lr: float) -> Contender:
    """normflows' multi-scale Glow (its Glow example, unconditional) with genbench's L, K and hidden width."""
    import normflows as nf

    cfg = build_model("glow", model_config, PEER_SHAPE).config
    levels, c, h, w = cfg.levels, *PEER_SHAPE
    q0, merges, flows = [], [], []
    for i in range(levels):  # index 0 is the coarsest level (normflows lists levels from the latent side)
        flows.append([nf.flows.GlowBlock(c * 2 ** (levels + 1 - i), cfg.hidden_channels, split_mode="channel",
                                         scale=True) for _ in range(cfg.steps_per_level)] + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            shape = (c * 2 ** (levels - i), h // 2 ** (levels - i), w // 2 ** (levels - i))
        else:
            shape = (c * 2 ** (levels + 1), h // 2 ** levels, w // 2 ** levels)
        q0.append(nf.distributions.GlowBase(shape))
    model = nf.MultiscaleFlow(q0, flows, merges, class_cond=False)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(x):  # uniform dequantization to [0, 1), forward KL (= NLL), backward, step
        y = (x.float() + torch.rand(x.shape)) / 256.0
        loss = model.forward_kld(y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return Contender("normflows Glow", step, _trained(opt))


def ddp_unet(model_config: dict, lr: float) -> Contender:
    """denoising-diffusion-pytorch's Unet + GaussianDiffusion with genbench's width, levels and schedule."""
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet

    cfg = build_model("ddpm", model_config, PEER_SHAPE).config
    net = Unet(dim=cfg.channels, dim_mults=tuple(cfg.channel_mults), channels=PEER_SHAPE[0], dropout=cfg.dropout)
    model = GaussianDiffusion(net, image_size=PEER_SHAPE[1], timesteps=cfg.timesteps, objective="pred_noise",
                              beta_schedule=cfg.schedule)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(x):  # GaussianDiffusion takes [0, 1] images: n ~ U, noise, L_simple; backward, step
        loss = model(x.float() / 255.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return Contender("denoising-diffusion-pytorch Unet+GaussianDiffusion", step, _trained(opt))


PEER_BUILDERS = {"vae": pythae_vae, "glow": normflows_glow, "ddpm": ddp_unet}


def _next_batch_step(step: Callable[[torch.Tensor], object], batches) -> None:
    step(next(batches))


def compare_with_peer(params, model: str, repeats: int, warmup_s: float, segment_s: float) -> dict:
    """genbench's training step vs its peer's: warmed up by time, then alternated segments."""
    run = next(name for name, r in params.runs.items() if r.model == model)
    spec = params.runs[run]
    train_x, _ = load_split(prepared_dir(params.data.root, spec.dataset), "train")
    if tuple(train_x.shape[1:]) != PEER_SHAPE:
        raise GenbenchError(f"bench --peers: {run} is on {spec.dataset} {tuple(train_x.shape[1:])}, not MNIST-shaped")
    batches = [train_x[batch_indices(len(train_x), PEER_BATCH, s, 0)] for s in range(32)]
    torch.set_num_threads(PEER_THREADS)
    torch.manual_seed(0)
    sides = {"genbench": genbench_contender(model, spec.model_config, spec.train.lr, spec.train.weight_decay,
                                            spec.train.grad_clip),
             "peer": PEER_BUILDERS[model](spec.model_config, spec.train.lr)}
    segments = {}
    for side, contender in sides.items():
        step = functools.partial(_next_batch_step, contender.step, itertools.cycle(batches))
        segments[side] = functools.partial(time_segment, step, segment_steps(warm_up(step, warmup_s), segment_s))
    seconds = alternate(segments, repeats)
    resolved = build_model(model, spec.model_config, PEER_SHAPE).config
    return {"model": model, "run": run, "profile": params.profile, "batch_size": PEER_BATCH,
            "run_batch_size": spec.train.batch_size, "threads": PEER_THREADS, "rounds": repeats,
            "model_config": {k: getattr(resolved, k) for k in PEER_KEYS[model]}, "lr": spec.train.lr,
            "grad_clip": spec.train.grad_clip,
            **{f"{side}_{k}": v for side, c in sides.items()
               for k, v in (("label", c.label), ("parameters", c.parameters), ("s_per_step", seconds[side]))},
            "genbench_ms_per_step": {k: 1e3 * v for k, v in spread(seconds["genbench"]).items()},
            "peer_ms_per_step": {k: 1e3 * v for k, v in spread(seconds["peer"]).items()},
            "genbench_images_per_s": rate(seconds["genbench"], PEER_BATCH),
            "peer_images_per_s": rate(seconds["peer"], PEER_BATCH),
            # speed of genbench relative to the peer (> 1: genbench faster) = peer time / genbench time
            "speed_genbench_over_peer": ratio(seconds["peer"], seconds["genbench"]),
            "differences": PEER_NOTES[model]}


# ==================================================================================================
# the command
# ==================================================================================================
def sts_costs(params, run: str, repeats: int, sentences: int = 512, sizes=(2000, 8000, 16000), dims=(384, 768),
              flow_steps: int = 10) -> dict:
    """Sentence embeddings: the frozen encoder's sentences/s (STS-B test sentences when prepared), whitening's
    fitting time as the number of sentences and the dimension grow, and BERT-flow's training step time per
    dimension (the run's flow, its batch size). Each figure: median over `repeats`."""
    from genbench.models.sentence import encode, fit_whitening, load_encoder
    from genbench.resolve import resolved_model_config

    spec = params.run(run)
    config = resolved_model_config(params, run)
    tokenizer, encoder = load_encoder(config["encoder"], f"runs.{run}.model_config.encoder")
    folder = prepared_dir(params.data.root, spec.dataset)
    if (folder / "manifest.json").is_file():
        from genbench.data.sts import decode_pairs

        x, _ = load_split(folder, "test")
        texts = [s for pair in decode_pairs(x.numpy()) for s in pair][:sentences]
        source = f"{len(texts)} STS-B test sentences"
    else:
        texts = [f"A sentence of moderate length, number {i}, about a man playing a flute." for i in range(sentences)]
        source = f"{len(texts)} synthetic sentences (prepare {spec.dataset} for real ones)"
    torch.manual_seed(0)
    encode_s = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        encode(texts, tokenizer, encoder, config["poolings"], batch_size=config["encode_batch_size"],
               max_length=config["max_length"])
        encode_s.append(time.perf_counter() - t0)
    out: dict = {"run": run, "encoder": config["encoder"], "encoder_parameters": sum(p.numel() for p in encoder.parameters()),
                 "encoding": {"source": source, "sentences": len(texts), "seconds": statistics.median(encode_s),
                              "sentences_per_s": len(texts) / statistics.median(encode_s),
                              "ms_per_sentence": 1000 * statistics.median(encode_s) / len(texts)},
                 "whitening": [], "flow": []}
    g = torch.Generator().manual_seed(0)
    for dim in dims:
        for n in sizes:
            vectors = torch.randn(n, dim, generator=g) @ torch.randn(dim, dim, generator=g)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fit_whitening(vectors)
                times.append(time.perf_counter() - t0)
            out["whitening"].append({"sentences": n, "dim": dim, "seconds": statistics.median(times)})
        model = build_model(spec.model, spec.model_config, (dim,))
        opt = Optimization(model.configure_optimizers(spec.train.lr, spec.train.weight_decay), None, spec.train.grad_clip)
        batch = torch.randn(spec.train.batch_size, dim, generator=g)
        model.train()
        model.training_step(batch, 0, opt, g)  # ActNorm's initialisation
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for step in range(flow_steps):
                model.training_step(batch, step, opt, g)
            times.append((time.perf_counter() - t0) / flow_steps)
        out["flow"].append({"dim": dim, "batch_size": spec.train.batch_size, "ms_per_step": 1000 * statistics.median(times),
                            "vectors_per_s": spec.train.batch_size / statistics.median(times),
                            "parameters": sum(p.numel() for p in model.parameters())})
    return out


def print_sts(r: dict) -> None:
    e = r["encoding"]
    print(f"\nsentence encoder {r['encoder']} ({r['encoder_parameters'] / 1e6:.1f} M parameters), {e['source']}: "
          f"{e['sentences_per_s']:.0f} sentences/s ({e['ms_per_sentence']:.2f} ms/sentence)")
    print(f"{'whitening fit':<16} {'sentences':>9} {'dim':>5} {'seconds':>9}")
    for w in r["whitening"]:
        print(f"{'':<16} {w['sentences']:>9} {w['dim']:>5} {w['seconds']:>9.3f}")
    print(f"{'BERT-flow step':<16} {'dim':>5} {'batch':>6} {'ms/step':>9} {'vectors/s':>10} {'parameters':>11}")
    for f in r["flow"]:
        print(f"{'':<16} {f['dim']:>5} {f['batch_size']:>6} {f['ms_per_step']:>9.1f} {f['vectors_per_s']:>10.0f} "
              f"{f['parameters']:>11}")


def _k(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def print_training(rows: list[dict]) -> None:
    r0 = rows[0]
    print(f"training, median [min, max] over {r0['rounds']} alternated rounds (bare, harness, bare, ...) of "
          f"'steps' steps each, after >= {r0['warmup_s']:g} s of warm-up per side, {r0['threads']} threads\n"
          "  bare     = training_step (+ EMA when the run has one) on in-memory batches\n"
          "  harness  = genbench.train.train per step: batch gathering, training_step, NaN check, EMA, logging\n"
          "             (validation passes and checkpoint writes excluded)\n"
          "  overhead = harness / bare - 1, of the medians [range of the per-round ratios]")
    print(f"{'model':<9} {'dataset':<8} {'batch':>5} {'steps':>5} {'bare img/s':>22} {'harness img/s':>22} "
          f"{'overhead %':>21}")
    for r in rows:
        lo, hi = r["harness_overhead_pct_range"]
        bare, harness = (rate(r[f"train_s_per_step_{k}"], r["batch_size"]) for k in ("bare", "harness"))
        print(f"{r['model']:<9} {r['dataset']:<8} {r['batch_size']:>5} {r['segment_steps']:>5} "
              f"{fmt(bare):>22} {fmt(harness):>22} {r['harness_overhead_per_step_pct']:>+6.1f} [{lo:+.1f}, {hi:+.1f}]")
    print(f"\n{'model':<9} {'sample img/s':>13}  eval s/example (on n test examples; one timing each)")
    for r in rows:
        evals = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in r["eval_seconds_per_example"].items())
        print(f"{r['model']:<9} {r['sample_images_per_s']:>13.0f}  {evals}" + (f" (n = {r['eval_examples']})"
                                                                             if evals else ""))


def print_peers(rows: list[dict], versions: dict[str, str]) -> None:
    r0 = rows[0]
    print(f"\npeers: one training step (forward, backward, Adam step) on MNIST 1x28x28 uint8 batches of "
          f"{r0['batch_size']}, {r0['threads']} threads;\n  median [min, max] over {r0['rounds']} alternated rounds "
          "(genbench, peer, genbench, ...) after a warm-up by time; each model with the model_config of its first "
          "run in params.yaml\n  speed genbench/peer = peer ms/step / genbench ms/step, of the medians "
          "[range of the per-round ratios]; params = those the optimizer updates")
    print(f"{'model':<6} {'side':<9} {'implementation':<52} {'params':>7} {'ms/step':>22} {'img/s':>20}")
    for r in rows:
        for side in ("genbench", "peer"):
            label = r[f"{side}_label"] + (f" ({versions[r['model']]})" if side == "peer" else f" ({r['run']})")
            print(f"{r['model'] if side == 'genbench' else '':<6} {side:<9} {label:<52} "
                  f"{_k(r[f'{side}_parameters']):>7} {fmt(r[f'{side}_ms_per_step'], digits=1):>22} "
                  f"{fmt(r[f'{side}_images_per_s']):>20}")
        cfg = ", ".join(f"{k} {v}" for k, v in r["model_config"].items())
        print(f"{'':<6} speed genbench/peer {fmt(r['speed_genbench_over_peer'], digits=2)}x")
        print(f"{'':<6} config ({r['run']}, profile {r['profile']}): {cfg}; lr {r['lr']:g}"
              + (f", grad_clip {r['grad_clip']:g}" if r["grad_clip"] else "")
              + f"; batch {r['batch_size']} (the run's: {r['run_batch_size']})")
        print(f"{'':<6} differs: {r['differences']}")


def main(args) -> int:
    os.environ["GENBENCH_TRACKING"] = "off"
    params = load(args.params)
    wanted = args.models or sorted(MODELS)
    repeats, warmup_s, segment_s = args.repeats, args.warmup_s, args.segment_s
    if repeats < 1 or warmup_s < 0 or segment_s <= 0:
        raise GenbenchError("bench: --repeats must be >= 1, --warmup-s >= 0 and --segment-s > 0")
    versions = {}
    if getattr(args, "peers", False):  # before anything is timed: a missing package is one clear message
        peer_models = [m for m in wanted if m in PEERS]
        if not peer_models:
            raise GenbenchError(f"bench --peers: none of {', '.join(wanted)} has a peer; "
                                f"use --models {' '.join(PEERS)}")
        versions = require_peers(peer_models)
    rows = []
    # the representation family trains on (images, labels) batches like the accuracy family: its step times
    # per objective, in its own table
    representation = [m for m in wanted if m in MODELS and hasattr(MODELS[m].cls, "representation_task")]
    wanted = [m for m in wanted if m not in representation]
    supervised = [m for m in wanted if hasattr(MODELS[m].cls, "task_data")] if set(wanted) <= set(MODELS) else []
    sentence = [m for m in wanted if hasattr(MODELS[m].cls, "sentence_task")] if set(wanted) <= set(MODELS) else []
    for model in [m for m in wanted if m not in supervised + sentence]:
        runs = [name for name, run in params.runs.items() if run.model == model]
        if not runs:
            print(f"bench: no run of model {model!r} in {args.params}; skipped")
            continue
        print(f"bench: measuring {model} ({runs[0]})", flush=True)
        rows.append(measure(params, runs[0], repeats, warmup_s, segment_s, args.steps))
    result: dict = {"throughput": rows}
    if rows:
        print_training(rows)
    gans = [r for r in rows if "discriminator_update_images_per_s" in r]
    if gans:
        print(f"\n{'GAN':<10} {'n_critic':>8} {'D update img/s':>15} {'G update img/s':>15} {'train img/s':>12}")
        for r in gans:
            print(f"{r['model']:<10} {r['n_critic']:>8} {r['discriminator_update_images_per_s']:>15.0f} "
                  f"{r['generator_update_images_per_s']:>15.0f} {r['train_images_per_s_bare']:>12.0f}")
    if "glow" in wanted and (conv := invconv_step_times(params, repeats, warmup_s, segment_s)) is not None:
        result["glow_invconv"] = conv
        print_conv1x1(conv, next((r for r in rows if r["model"] == "glow" and r["run"] == conv["run"]), None))
    iterative = [r for r in rows if "network_evaluations_per_s" in r]
    if iterative:
        print(f"\n{'sampler':<10} {'evaluations/sample':>18} {'image evaluations/s':>20} {'sample img/s':>13}")
        for r in iterative:
            print(f"{r['model']:<10} {r['sampling_network_evaluations']:>18} {r['network_evaluations_per_s']:>20.0f} "
                  f"{r['sample_images_per_s']:>13.1f}")
    for key, family in (("objectives", supervised), ("representation", representation)):
        if family and any(run.model in family for run in params.runs.values()):
            result[key] = objective_step_times(params, family, warmup_s, segment_s, repeats)
            print(f"\n{'objective (run)':<38} {'ms/step':>20} {'img/s':>8} {'x baseline':>11}  baseline")
            for r in result[key]:
                print(f"{r['objective'] + ' (' + r['run'] + ')':<38} {fmt(r['ms_per_step'], 1, 2):>20} "
                      f"{r['images_per_s']:>8.0f} {r['vs_baseline']:>11.2f}  {r['baseline']}")
    sts_runs = [name for name, run in params.runs.items() if run.model in sentence]
    if sts_runs:
        result["sts"] = sts_costs(params, sts_runs[0], repeats)
        print_sts(result["sts"])
    peer_rows = []
    for model in versions:
        if not any(run.model == model for run in params.runs.values()):
            print(f"bench --peers: no run of model {model!r} in {args.params}; skipped")
            continue
        print(f"bench: {model} against {versions[model]}", flush=True)
        peer_rows.append(compare_with_peer(params, model, repeats, warmup_s, segment_s))
    if peer_rows:
        result["peers"] = peer_rows
        print_peers(peer_rows, versions)
    if getattr(args, "scaling", False):

        result["scaling"] = []
        print(f"\n{'model':<10} {'side':>5} {'batch':>6} {'ms/step':>9} {'img/s':>8} {'x per 2x side':>14}")
        for model in ("glow", "tarflow"):
            for r in step_time_by_side(params, model):
                result["scaling"].append(r)
                growth = f"{r['growth_vs_half_side']:.2f}" if "growth_vs_half_side" in r else "—"
                print(f"{model:<10} {r['side']:>5} {r['batch_size']:>6} {r['ms_per_step']:>9.1f} "
                      f"{r['images_per_s']:>8.0f} {growth:>14}")
    if getattr(args, "iresnet_logdet", False):
        runs = [name for name, run in params.runs.items() if run.model == "iresnet"]
        trained = run_dir(runs[0], params.seeds[0]) / "model.pt" if runs else None
        if trained is not None and trained.exists():  # the trained model's own blocks, on test images
            model, _ = load_trained(trained.parent)
            spec = params.runs[runs[0]]
            x, _ = load_split(prepared_dir(params.data.root, spec.dataset), params.eval.reference_split)
            rows_ld, source = iresnet_logdet_study(model, x[:2]), f"trained {runs[0]}, 2 test examples"
        else:
            rows_ld, source = iresnet_logdet_study(), "random i-ResNet at its Lipschitz bound, 8x8 inputs"
        result["iresnet_logdet"] = {"source": source, "rows": rows_ld}
        r0 = rows_ld[0]
        print(f"\ni-ResNet log-det estimator ({source}; {r0['blocks']} blocks of D = {r0['dims_per_block']}; "
              f"exact log-det {r0['exact_logdet_mean']:.3f} nats)")
        print(f"{'series terms':>12} {'truncation bias':>16} {'Hutchinson std (1 probe/block)':>31}")
        for r in rows_ld:
            print(f"{r['terms']:>12} {r['truncation_bias']:>16.4f} {r['hutchinson_std_one_probe']:>31.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0
