"""`genbench bench`: throughput of every registered model on this machine, and the harness overhead.

For each model (its first run in params.yaml, on that run's prepared dataset and settings):
  bare loop      training_step on in-memory batches, nothing else        -> train images/s
  harness        genbench.train.train() for the same steps (batch order, NaN check, logging,
                 EMA, validation and checkpoints as configured)          -> overhead vs bare
  sample         model.sample in batches of eval.sample_batch_size       -> sample images/s (and, for
                 iterative samplers — diffusion steps, Langevin steps — network evaluations per second)
  evaluation     each likelihood kind on eval.sample_batch_size test examples -> seconds
  --scaling      one bare training step at image sides 14, 28, 56 (Glow and TARFLOW, the config of
                 their first run; TARFLOW with 2x2 patches, Glow with one level, so every side fits): ms/step and
                 the growth factor per doubling of the side
  --iresnet-logdet  bias and standard deviation of the i-ResNet log-determinant estimate against
                 the exact value (full Jacobian) as the series grows, on small inputs
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
from genbench.layout import prepared_dir, run_dir
from genbench.models import MODELS, Optimization, build_model
from genbench.train import Job, batch_indices, load_trained, seed_everything, train


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
    if hasattr(model, "calibrate"):  # post-training statistics the samplers need (Analytic-DPM's Gamma_n)
        model.calibrate(train_x[:64], g)
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
    updates = gan_update_rates(job, train_x, steps) if hasattr(model, "discriminator_update") else {}
    return {
        **updates,
        "model": spec.model, "run": run, "dataset": spec.dataset, "batch_size": spec.train.batch_size,
        "steps": steps, "threads": torch.get_num_threads(),
        "train_images_per_s_bare": steps * spec.train.batch_size / bare_s,
        "train_images_per_s_harness": spec.train.batch_size / per_step_harness,
        "harness_overhead_per_step_pct": 100.0 * (per_step_harness / per_step_bare - 1.0),
        "harness_wall_s": harness_wall_s,
        "sample_images_per_s": n / sample_s,
        # iterative samplers: network evaluations (of the whole batch's images) per second while sampling
        **({"sampling_network_evaluations": nfe, "network_evaluations_per_s": n * nfe / sample_s}
           if (nfe := getattr(model, "sampling_network_evaluations", None)) else {}),
        "eval_seconds_per_example": {k: v / n for k, v in evals.items()},
    }


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


def iresnet_logdet_study(model=None, x_uint8: torch.Tensor | None = None, terms=(1, 2, 3, 5, 10, 20, 40),
                         seed: int = 0) -> list[dict]:
    """How the i-ResNet log-det estimate depends on the number of series terms n, on the blocks of
    `model` (default: a small random i-ResNet on 8x8 images pushed to its Lipschitz bound).

    For each residual block and example the full Jacobian J of g is computed, so everything is exact:
      truncation bias(n) = sum_{k<=n} (-1)^(k+1) tr(J^k) / k  -  log det(I + J)   (summed over blocks)
      Hutchinson std(n)  = sqrt(sum over blocks of 2 ||sym(A_n)||_F^2),  A_n = sum_k (-1)^(k+1) J^k / k
    (the variance of v^T A v for one Gaussian probe v per block). Averaged over the examples."""
    from genbench.models.flows import FlowContext, InvertibleResidualBlock, SpectralNormConv

    if model is None:
        torch.manual_seed(seed)
        model = build_model("iresnet", {"levels": 1, "blocks_per_level": 2, "hidden_channels": 16,
                                        "lipschitz_coeff": 0.9}, (1, 8, 8))
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, SpectralNormConv):
                    m.conv.weight.mul_(10)  # push every layer to its Lipschitz bound
                    m.power_iterate(50)
    model = model.double().eval()
    g = torch.Generator().manual_seed(seed)
    if x_uint8 is None:
        x_uint8 = torch.randint(0, 256, (4, *model.data_shape), generator=g, dtype=torch.uint8)
    inputs: list[tuple[InvertibleResidualBlock, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: inputs.append((mod, args[0].detach())))
             for m in model.modules() if isinstance(m, InvertibleResidualBlock)]
    with torch.no_grad():
        model.network.log_prob(model.model_input(x_uint8, g).double(), FlowContext(g, series_terms=1))
    for h in hooks:
        h.remove()
    n_max = max(terms)
    bias = {n: torch.zeros(len(x_uint8), dtype=torch.float64) for n in terms}
    var = {n: torch.zeros(len(x_uint8), dtype=torch.float64) for n in terms}
    exact_total = torch.zeros(len(x_uint8), dtype=torch.float64)
    for block, h in inputs:
        for i, hi in enumerate(h):
            jac = torch.autograd.functional.jacobian(lambda v: block.g(v.unsqueeze(0)).flatten(), hi)
            jac = jac.reshape(jac.shape[0], -1)
            exact = torch.linalg.slogdet(torch.eye(len(jac), dtype=jac.dtype) + jac)[1]
            exact_total[i] += exact
            power, series = torch.eye(len(jac), dtype=jac.dtype), torch.zeros_like(jac)
            for k in range(1, n_max + 1):
                power = power @ jac
                series = series + (-1) ** (k + 1) / k * power
                if k in bias:
                    bias[k][i] += torch.trace(series) - exact
                    var[k][i] += 2 * ((series + series.T) / 2).pow(2).sum()
    return [{"terms": n, "truncation_bias": float(bias[n].mean()), "abs_truncation_bias": float(bias[n].abs().mean()),
             "hutchinson_std_one_probe": float(var[n].sqrt().mean()), "exact_logdet_mean": float(exact_total.mean()),
             "blocks": len({id(b) for b, _ in inputs}), "examples": len(x_uint8),
             "dims_per_block": int(inputs[0][1][0].numel())} for n in terms]


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
    gans = [r for r in rows if "discriminator_update_images_per_s" in r]
    if gans:
        print(f"\n{'GAN':<10} {'n_critic':>8} {'D update img/s':>15} {'G update img/s':>15} {'train img/s':>12}")
        for r in gans:
            print(f"{r['model']:<10} {r['n_critic']:>8} {r['discriminator_update_images_per_s']:>15.0f} "
                  f"{r['generator_update_images_per_s']:>15.0f} {r['train_images_per_s_bare']:>12.0f}")
    iterative = [r for r in rows if "network_evaluations_per_s" in r]
    if iterative:
        print(f"\n{'sampler':<10} {'evaluations/sample':>18} {'image evaluations/s':>20} {'sample img/s':>13}")
        for r in iterative:
            print(f"{r['model']:<10} {r['sampling_network_evaluations']:>18} {r['network_evaluations_per_s']:>20.0f} "
                  f"{r['sample_images_per_s']:>13.1f}")
    result: dict = {"throughput": rows}
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
