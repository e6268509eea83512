"""The sample and evaluate stages, and the protocol stored beside every number.

sample:   the selected checkpoint -> `samples/<job>/samples.npz` (uint8) + `grid.png` + `sample.json`
evaluate: samples + cached reference features -> FID / KID / precision / recall per extractor, and
          bits/dim of every likelihood kind the model has on the reference split -> metrics/<job>.json
"""
from __future__ import annotations

import importlib.metadata
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from genbench import __version__
from genbench.config import Params
from genbench.data import info as dataset_info
from genbench.data import load_split, toy2d
from genbench.io import atomic_dir, atomic_path, read_json, sha256_file, write_json
from genbench.layout import (INCEPTION_WEIGHTS, classifier_path, job_name, metrics_path, prepared_dir,
                             refstats_path, run_dir, samples_dir)
from genbench.metrics.likelihood import nats_to_bits_per_dim
from genbench.models import SamplerVariant
from genbench.figures import save_grid
from genbench.tracking import Tracker
from genbench.train import load_trained, read_outcome, select_device


class _FidModule:
    """genbench.metrics.fid, imported on first use: torch-fidelity pulls in torchvision (seconds of
    start-up), which the sample stage and the likelihood-only evaluations never need."""

    def __getattr__(self, name: str):
        from genbench.metrics import fid

        return getattr(fid, name)


fidlib = _FidModule()


def library_versions() -> dict[str, str]:
    out = {"genbench": __version__, "python": platform.python_version()}
    for pkg in ("torch", "torchvision", "torch-fidelity", "numpy", "scipy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def code_version() -> dict[str, Any]:
    """The git commit of the code that produced a figure, and whether genbench/ differed from it
    (uncommitted edits); None outside a git checkout."""
    import subprocess

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", *args], capture_output=True, text=True, timeout=30,
                                  cwd=Path(__file__).resolve().parent)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=normal", "--", ".")
    return {"commit": commit, "code_dirty": None if commit is None or dirty is None else bool(dirty)}


def extractor_weights(extractor: str, dataset: str) -> Path:
    return classifier_path(dataset) if extractor == "classifier" else INCEPTION_WEIGHTS


def extractor_label(extractor: str, dataset: str) -> str:
    """The name shown in reports: the classifier is dataset-specific."""
    return f"classifier-{dataset}" if extractor == "classifier" else extractor


def n_generated(params: Params, extractor: str, run: str) -> int:
    cap = params.run(run).eval.n_gen
    n = params.eval.extractors[extractor].n_gen
    return n if cap is None else min(n, cap)


def likelihood_examples(params: Params, run: str) -> int | None:
    caps = [c for c in (params.eval.likelihood_n, params.run(run).eval.likelihood_n) if c is not None]
    return min(caps) if caps else None


# --------------------------------------------------------------------------------------------------
# reference statistics
# --------------------------------------------------------------------------------------------------
def compute_refstats(params: Params, dataset: str, tracker: Tracker) -> dict[str, Any]:
    """Features of the reference split for every extractor, cached under artifacts/refstats/."""
    split = params.eval.reference_split
    x_all, _ = load_split(prepared_dir(params.data.root, dataset), split)
    manifest_sha = sha256_file(prepared_dir(params.data.root, dataset) / "manifest.json")
    summary = {}
    for extractor, opts in params.eval.extractors.items():
        x = x_all if opts.n_ref is None else x_all[: opts.n_ref]
        weights = extractor_weights(extractor, dataset)
        t0 = time.perf_counter()
        feats = fidlib.extract_features(x, extractor, weights, batch_size=params.eval.feature_batch_size,
                                        device=select_device(params.harness))
        meta = {"dataset": dataset, "split": split, "n_ref": len(x), "prepared_manifest_sha256": manifest_sha,
                **fidlib.extractor_info(extractor, weights), "label": extractor_label(extractor, dataset)}
        fidlib.save_reference(refstats_path(dataset, extractor), feats, meta)
        summary[extractor] = {"n_ref": len(x), "seconds": time.perf_counter() - t0}
        tracker.log_metrics({f"{extractor}.seconds": summary[extractor]["seconds"]})
    return summary


# --------------------------------------------------------------------------------------------------
# sample
# --------------------------------------------------------------------------------------------------
def sample_job(params: Params, run: str, seed: int, tracker: Tracker) -> dict[str, Any]:
    spec = params.run(run)
    out_dir = samples_dir(run, seed)
    outcome = read_outcome(run_dir(run, seed))
    with atomic_dir(out_dir) as tmp:
        if outcome["status"] != "completed":
            record = {"status": outcome["status"], "outcome": outcome}
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
                  "dataset": spec.dataset, "device": device.type, "variants": variants}
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


def toy_name(dataset: str) -> str:
    return dataset.removeprefix("toy_")


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


def mode_metrics(samples: torch.Tensor, toy: str, min_share: float = 0.008) -> dict[str, Any]:
    """Mode coverage on a Gaussian-mixture toy (the protocol of Srivastava et al. 2017, VEEGAN, and Lin
    et al. 2018, PacGAN): a sample is high quality when it lies within 3 standard deviations of its
    nearest mode; a mode is covered when at least `min_share` of all samples (PacGAN: 20 of 2500) are
    high-quality samples of it. mode_kl = KL(high-quality samples' mode histogram || uniform)."""
    centers = torch.from_numpy(toy2d.mode_centers(toy))
    dist = torch.cdist(samples.double(), centers)
    nearest, which = dist.min(dim=1)
    good = nearest <= 3 * toy2d.mode_std(toy)
    counts = torch.bincount(which[good], minlength=len(centers)).double()
    share = counts / counts.sum().clamp_min(1)
    kl = float((share[share > 0] * (share[share > 0] * len(centers)).log()).sum()) if counts.sum() else math.inf
    return {"modes_covered": int((counts >= min_share * len(samples)).sum()), "modes_total": len(centers),
            "high_quality_fraction": float(good.double().mean()), "mode_kl": kl, "n": len(samples),
            "min_share": min_share}


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


# --------------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------------
def per_example_log_likelihood(model, x: torch.Tensor, kind: str, params: Params, seed: int, device,
                               desc: str) -> torch.Tensor:
    """log-likelihood (nats, float64, CPU) of every row of x under `model`, in batches, seeded."""
    generator = torch.Generator(device=device).manual_seed(params.eval.seed + seed + 17)
    kwargs = {"iwae_k": params.eval.iwae_k} if kind == "iwae" else {}
    bs = max(1, params.eval.sample_batch_size // (10 if kind == "iwae" else 1))
    values = []
    for start in tqdm(range(0, len(x), bs), desc=desc, disable=not params.harness.progress):
        values.append(model.log_likelihood(x[start:start + bs].to(device), kind, generator, **kwargs).double().cpu())
    return torch.cat(values)


def _mean_stderr(values: torch.Tensor) -> tuple[float, float]:
    return float(values.mean()), float(values.std(unbiased=True) / math.sqrt(len(values)))


def likelihood_bpd(model, x: torch.Tensor, kind: str, params: Params, seed: int, device) -> dict[str, Any]:
    """Mean bits/dim of a likelihood kind over x, with its standard error over examples."""
    ll = per_example_log_likelihood(model, x, kind, params, seed, device, f"bits/dim ({kind})")
    mean, stderr = _mean_stderr(nats_to_bits_per_dim(-ll, math.prod(x.shape[1:])))
    out = {"bits_per_dim": mean, "stderr": stderr, "n": len(ll), "kind": kind}
    if kind == "iwae":
        out["k"] = params.eval.iwae_k
    return out


def likelihood_table(model, x: torch.Tensor, params: Params, seed: int, device) -> dict[str, Any]:
    """bits/dim (mean, stderr over examples) of every entry of the model's `log_likelihood_table`."""
    generator = torch.Generator(device=device).manual_seed(params.eval.seed + seed + 31)
    bs, parts = params.eval.sample_batch_size, {}
    for start in tqdm(range(0, len(x), bs), desc="likelihood table", disable=not params.harness.progress):
        for name, values in model.log_likelihood_table(x[start:start + bs].to(device), generator).items():
            parts.setdefault(name, []).append(values.double().cpu())
    out = {}
    for name, values in parts.items():
        mean, stderr = _mean_stderr(nats_to_bits_per_dim(-torch.cat(values), math.prod(x.shape[1:])))
        out[name] = {"bits_per_dim": mean, "stderr": stderr, "n": len(x)}
    return out


def likelihood_points(model, x: torch.Tensor, kind: str, toy: str, params: Params, seed: int, device
                      ) -> dict[str, Any]:
    """Continuous data (2-D toys): mean NLL in nats; where the toy's density is known, also the true
    NLL (the entropy's estimate) and KL(p_data || p_model) = E_p[log p - log q], same test points."""
    ll = per_example_log_likelihood(model, x, kind, params, seed, device, f"nll ({kind})")
    mean, stderr = _mean_stderr(-ll)
    out: dict[str, Any] = {"nll_nats": mean, "stderr": stderr, "n": len(ll), "kind": kind}
    if toy2d.has_exact_density(toy):
        true_ll = torch.from_numpy(toy2d.log_density(toy, x.numpy()))
        out["true_nll_nats"] = float(-true_ll.mean())
        out["kl_nats"], out["kl_stderr"] = _mean_stderr(true_ll - ll)
    return out


def scoring_extractors(params: Params, seed: int) -> list[str]:
    """Every extractor for the first seeds; `eval.repeat_extractors` (when set) for the repeat seeds."""
    if seed in params.seeds or params.eval.repeat_extractors is None:
        return list(params.eval.extractors)
    return list(params.eval.repeat_extractors)


def score_samples(params: Params, run: str, dataset: str, samples: torch.Tensor, device, protocol: dict[str, Any],
                  extractors: list[str], references: dict[str, Any] | None = None) -> dict[str, Any]:
    """Images: FID / KID / precision / recall per extractor, each with its protocol. Gaussian-mixture
    toys: mode coverage and high-quality fraction. Other toys: nothing sample-based.

    One feature pass per extractor serves all three metrics. The sets of one run share the rest: each
    extractor's network is built once per process (`fid.feature_extractor`), and its reference is read
    once when the caller passes the same `references` dict (filled here) for every set.
    """
    info = dataset_info(dataset)
    scores: dict[str, Any] = {}
    references = {} if references is None else references
    if info.kind == "image":
        for extractor in extractors:
            ref_path = refstats_path(dataset, extractor)
            if extractor not in references:
                ref_feats, _, _, ref_meta = fidlib.load_reference(ref_path)
                references[extractor] = ref_feats, ref_meta, fidlib.reference_hash(ref_path)
            ref_feats, ref_meta, ref_sha256 = references[extractor]
            n = n_generated(params, extractor, run)
            gen_feats = fidlib.extract_features(samples[:n], extractor, extractor_weights(extractor, dataset),
                                                batch_size=params.eval.feature_batch_size, device=device)
            values = fidlib.metrics_from_features(gen_feats, ref_feats, kid_subsets=params.eval.kid_subsets,
                                                  kid_subset_size=params.eval.kid_subset_size,
                                                  prc_neighborhood=params.eval.prc_neighborhood,
                                                  seed=params.eval.seed)
            scores[extractor] = {**values, "protocol": {
                "extractor": extractor_label(extractor, dataset), "weights_sha256": ref_meta["weights_sha256"],
                "n_gen": len(gen_feats), "n_ref": ref_meta["n_ref"], "reference_split": ref_meta["split"],
                "reference_sha256": ref_sha256, **protocol}}
    elif toy_name(dataset) in ("ring8", "grid25"):
        scores["modes"] = mode_metrics(samples, toy_name(dataset))
    return scores


def evaluate_job(params: Params, run: str, seed: int, tracker: Tracker) -> dict[str, Any]:
    spec = params.run(run)
    job = job_name(run, seed)
    outcome = read_outcome(run_dir(run, seed))
    base = {"job": job, "run": run, "seed": seed, "model": spec.model, "dataset": spec.dataset,
            "profile": params.profile, "status": outcome["status"], "versions": library_versions(),
            "code_version": code_version()}
    if outcome["status"] != "completed":
        result = {**base, "diverged_at_step": outcome.get("diverged_at_step"), "message": outcome.get("message")}
        write_json(metrics_path(run, seed), result)
        return result
    sample_record = read_json(samples_dir(run, seed) / "sample.json")
    t0 = time.perf_counter()
    device = select_device(params.harness)
    info = dataset_info(spec.dataset)

    references: dict[str, Any] = {}  # each extractor's reference, read once for all the sample sets

    def scores_of(name: str, sampler: str) -> dict[str, Any]:
        samples = torch.from_numpy(np.load(samples_dir(run, seed) / name)["x"])
        return score_samples(params, run, spec.dataset, samples, device, {
            "sampler": sampler, "ema": sample_record["ema"], "training_seed": seed,
            "sampling_seed": sample_record["sampling_seed"]}, scoring_extractors(params, seed), references)

    scores = scores_of("samples.npz", sample_record["sampler"])
    variants = {name: {"scores": scores_of(f"samples-{name}.npz", name), "sample": details}
                for name, details in sample_record.get("variants", {}).items()}
    model, meta = load_trained(run_dir(run, seed), device)
    likelihood, nll_table = {}, {}
    if model.likelihood_kinds:
        x, _ = load_split(prepared_dir(params.data.root, spec.dataset), params.eval.reference_split)
        x = x[: likelihood_examples(params, run)]
        nll_table = likelihood_table(model, x, params, seed, device)
        for kind in model.likelihood_kinds:
            if info.kind == "points":
                likelihood[kind] = likelihood_points(model, x, kind, toy_name(spec.dataset), params, seed, device)
            else:
                likelihood[kind] = likelihood_bpd(model, x, kind, params, seed, device)
    result = {**base, "scores": scores, "likelihood": likelihood, "variants": variants, "nll_table": nll_table,
              "train": {k: outcome[k] for k in ("steps", "selected_step", "train_time_s", "train_images_per_s",
                                                "parameters", "device", "ema")},
              "sample": {k: sample_record[k] for k in ("n", "images_per_s", "sampler", "sampling_seed")},
              "eval_time_s": time.perf_counter() - t0,
              "reference_split": params.eval.reference_split,
              "checkpoint_selection": outcome.get("checkpoint_selection", "best on validation")}
    write_json(metrics_path(run, seed), result)
    flat = {f"{e}.{k}": v for e, s in scores.items() for k, v in s.items() if isinstance(v, (int, float))}
    flat.update({f"{name}.{e}.{k}": v for name, var in variants.items() for e, s in var["scores"].items()
                 for k, v in s.items() if isinstance(v, (int, float))})
    flat.update({f"bpd.{k}": v["bits_per_dim"] for k, v in likelihood.items() if "bits_per_dim" in v})
    flat.update({f"nll_nats.{k}": v["nll_nats"] for k, v in likelihood.items() if "nll_nats" in v})
    tracker.log_metrics(flat)
    tracker.set_tags({"protocol": {e: s["protocol"] for e, s in scores.items() if "protocol" in s}})
    tracker.log_artifact(metrics_path(run, seed))
    return result
