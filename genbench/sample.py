"""Drawing a job's samples: the selected checkpoint -> `samples/<job>/samples.npz` (uint8 images or 2-D
points), `grid.png`, the model's own figures (temperature sweep, learnt density, reconstructions), every
sampler variant's set (hubness prior, diffusion samplers and step counts, ...) and `sample.json`.

The evaluate stage draws them first, unless samples/<job> already holds what these inputs draw
(`draw_unless_current`): one DVC stage per job instead of two (each stage costs `dvc status` and `dvc repro`
their bookkeeping), while a change to scoring alone still does not re-draw. `genbench sample` always draws."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from genbench.config import Params
from genbench.data import info as dataset_info
from genbench.data import load_split, toy2d
from genbench.figures import save_grid
from genbench.io import atomic_dir, atomic_path, read_json, sha256_file, write_json
from genbench.layout import job_name, prepared_dir, run_dir, samples_dir
from genbench.models import SamplerVariant
from genbench.protocol import n_generated, toy_name
from genbench.tracking import Tracker
from genbench.train import load_trained, read_outcome, select_device


def inputs_digest(params: Params, run: str, seed: int) -> str:
    """sha256 of everything drawing a job's samples reads: its sampling settings and source
    (genbench.resolve.sample_document), every file of its trained run and of its prepared data."""
    from genbench.resolve import sample_document

    digest = hashlib.sha256(json.dumps(sample_document(params, run, seed), sort_keys=True).encode())
    for root in (run_dir(run, seed), prepared_dir(params.data.root, params.run(run).dataset)):
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
            digest.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def draw_unless_current(params: Params, run: str, seed: int, tracker: Tracker) -> bool:
    """The evaluate stage's first step: draw the job's samples, unless samples/<job> holds those that the
    same inputs drew (sample.json records the inputs' digest and each file's sha256; sampling is seeded, so
    equal inputs draw equal samples on this machine). Returns whether it drew."""
    digest = inputs_digest(params, run, seed)
    out_dir = samples_dir(run, seed)
    record = read_json(out_dir / "sample.json") if (out_dir / "sample.json").is_file() else {}
    files = record.get("files")
    if record.get("inputs_sha256") == digest and files is not None and all(
            (out_dir / name).is_file() and sha256_file(out_dir / name) == sha for name, sha in files.items()):
        print(f"[{job_name(run, seed)}] samples kept: {out_dir} holds what these inputs draw")
        return False
    sample_job(params, run, seed, tracker, digest)
    return True


def sample_job(params: Params, run: str, seed: int, tracker: Tracker, digest: str | None = None) -> dict[str, Any]:
    spec = params.run(run)
    out_dir = samples_dir(run, seed)
    digest = digest or inputs_digest(params, run, seed)
    outcome = read_outcome(run_dir(run, seed))
    with atomic_dir(out_dir) as tmp:
        if outcome["status"] != "completed":
            record = {"status": outcome["status"], "outcome": outcome, "inputs_sha256": digest, "files": {}}
            write_json(tmp / "sample.json", record)
            return record
        device = select_device(params.harness)
        model, meta = load_trained(run_dir(run, seed), device)
        n = max([n_generated(params, e, run) for e in params.eval.extractors] + [params.report.grid_n])
        sampling_seed = params.eval.seed + seed
        samples, seconds, _ = draw(lambda m, g: (model.sample(m, g), {}), n, params, sampling_seed,
                                   f"sample {job_name(run, seed)}")
        np.savez(tmp / "samples.npz", x=samples.numpy())
        save_grid(samples[: params.report.grid_n], tmp / "grid.png", title=f"{run} seed {seed}")
        model_figures(model, params, spec.dataset, tmp, sampling_seed, title=f"{run} seed {seed}")
        variants = {}
        # other samplers of the same network (hubness prior, latent MCMC, diffusion's steps table): rows of their own
        for name, variant in model.sample_variants(params.eval.hubness).items():
            variant = variant if isinstance(variant, SamplerVariant) else SamplerVariant(variant)
            m = n if variant.n is None else min(n, variant.n)
            x, secs, details = draw(variant.draw, m, params, sampling_seed, f"sample {job_name(run, seed)} [{name}]")
            np.savez(tmp / f"samples-{name}.npz", x=x.numpy())
            save_grid(x[: params.report.grid_n], tmp / f"grid-{name}.png", title=f"{run} seed {seed} [{name}]")
            variants[name] = {"n": m, "seconds": secs, "images_per_s": m / max(secs, 1e-9), **details, **variant.info}
        record = {"status": "completed", "n": n, "seconds": seconds, "images_per_s": n / max(seconds, 1e-9),
                  "sampler": getattr(model, "sampler_description", getattr(model.config, "sample_mode", "default")), "ema": meta["ema"],
                  "selected_step": meta["step"], "sampling_seed": sampling_seed,
                  "dataset": spec.dataset, "device": device.type, "variants": variants, "inputs_sha256": digest,
                  "files": {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}}
        write_json(tmp / "sample.json", record)
    tracker.log_metrics({"sample_images_per_s": record["images_per_s"]})
    tracker.log_artifact(out_dir / "grid.png")
    return record


def draw(sampler, n: int, params: Params, seed: int, desc: str) -> tuple[torch.Tensor, float, dict[str, Any]]:
    """n samples from `sampler(batch, generator) -> (x, details)` in batches of eval.sample_batch_size,
    seeded; numeric details (an acceptance rate) are averaged over the batches, weighted by size."""
    generator = torch.Generator(device=select_device(params.harness)).manual_seed(seed)
    chunks, details, t0 = [], [], time.perf_counter()
    bs = params.eval.sample_batch_size
    with tqdm(total=n, desc=desc, disable=not params.harness.progress) as bar:
        for start in range(0, n, bs):
            chunk, info = sampler(min(bs, n - start), generator)
            chunks.append(chunk.cpu())
            details.append((len(chunk), info))
            bar.update(len(chunk))
    seconds = time.perf_counter() - t0
    summary = {k: (sum(m * d[k] for m, d in details) / n if isinstance(v, float) else v)
               for k, v in details[0][1].items()}
    return torch.cat(chunks), seconds, summary


def model_figures(model, params: Params, dataset: str, out_dir: Path, seed: int, title: str) -> None:
    """Figures beyond the sample grid: a temperature sweep (models with `sweep_temperatures`, one row
    of the same latent noise per temperature) and, on the 2-D toys, the learnt density beside the
    true one (or the test points' histogram where no closed form exists)."""
    temperatures = getattr(model.config, "sweep_temperatures", None)
    if temperatures and dataset_info(dataset).kind == "image":
        per_row = 10
        rows = [model.sample_at_temperature(per_row, torch.Generator(device=model.device).manual_seed(seed), t).cpu()
                for t in temperatures]
        save_grid(torch.cat(rows), out_dir / "temperatures.png", nrow=per_row,
                  title=f"{title}: rows T = {', '.join(f'{t:g}' for t in temperatures)}")
    if dataset_info(dataset).kind == "points":
        x_test, _ = load_split(prepared_dir(params.data.root, dataset), "test")
        if model.likelihood_kinds:
            save_density_figure(model, x_test, toy_name(dataset), out_dir / "density.png", seed, title)
        else:
            save_scatter_figure(model.sample(2000, torch.Generator(device=model.device).manual_seed(seed)).cpu(),
                                x_test[:2000], toy_name(dataset), out_dir / "scatter.png", title)
    if hasattr(model, "reconstruct") and dataset_info(dataset).kind == "image":
        save_autoencoding_figure(model, params, dataset, out_dir / "reconstructions.png", title)


def save_scatter_figure(samples: torch.Tensor, x_test: torch.Tensor, toy: str, path: Path, title: str) -> None:
    """Generated points over the test points, with the mixture's modes and their 3-sigma circles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(x_test[:, 0], x_test[:, 1], s=2, c="0.75", label="test data")
    ax.scatter(samples[:, 0], samples[:, 1], s=2, c="tab:red", alpha=0.6, label="generated")
    if toy in ("ring8", "grid25"):
        for c in toy2d.mode_centers(toy):
            ax.add_patch(plt.Circle(c, 3 * toy2d.mode_std(toy), fill=False, lw=0.6, color="k"))
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="upper right", markerscale=4)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def save_autoencoding_figure(model, params: Params, dataset: str, path: Path, title: str, n: int = 10) -> None:
    """Models with an encoder (O-GAN): rows of test images, their reconstructions G(E(x)), and latent
    interpolations between pairs of test images (linear in the standardised codes)."""
    x, _ = load_split(prepared_dir(params.data.root, dataset), params.eval.reference_split)
    x = x[: 2 * n].to(model.device)
    codes = model.encode(x)
    rows = [x[:n].cpu(), model.generate(codes[:n]).cpu()]
    for i in range(3):
        a, b = codes[2 * i], codes[2 * i + 1]
        steps = torch.linspace(0, 1, n, device=codes.device)[:, None]
        rows.append(model.generate((1 - steps) * a + steps * b).cpu())
    save_grid(torch.cat(rows), path, nrow=n,
              title=f"{title}: test images / G(E(x)) / three interpolations E(x1) -> E(x2)")


@torch.no_grad()
def save_density_figure(model, x_test: torch.Tensor, toy: str, path: Path, seed: int, title: str,
                        resolution: int = 160) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo = np.quantile(x_test.numpy(), 0.001, axis=0).min() - 0.5
    hi = np.quantile(x_test.numpy(), 0.999, axis=0).max() + 0.5
    ticks = np.linspace(lo, hi, resolution)
    xx, yy = np.meshgrid(ticks, ticks)
    grid = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32))
    generator = torch.Generator(device=model.device).manual_seed(seed)
    learnt = torch.cat([model.log_likelihood(chunk.to(model.device), model.likelihood_kinds[0], generator).cpu()
                        for chunk in grid.split(4096)]).exp().view(resolution, resolution).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    extent = (lo, hi, lo, hi)
    if toy2d.has_exact_density(toy):
        true = np.exp(toy2d.log_density(toy, grid.numpy())).reshape(resolution, resolution)
        axes[0].imshow(true, origin="lower", extent=extent, cmap="viridis")
        axes[0].set_title("true density", fontsize=9)
    else:
        axes[0].hist2d(x_test[:, 0].numpy(), x_test[:, 1].numpy(), bins=resolution // 2, range=[[lo, hi], [lo, hi]])
        axes[0].set_title("test points (histogram)", fontsize=9)
    axes[1].imshow(learnt, origin="lower", extent=extent, cmap="viridis")
    axes[1].set_title(f"learnt density ({model.likelihood_kinds[0]})", fontsize=9)
    for ax in axes:
        ax.set_aspect("equal")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
