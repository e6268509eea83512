"""The evaluate stage, and the protocol stored beside every number: samples + cached reference features
-> FID / KID / precision / recall per extractor (mode coverage on the Gaussian-mixture toys), and bits/dim
(nats on 2-D data) of every likelihood kind the model has on the reference split -> metrics/<job>.json
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
from genbench.data.toy2d import mode_metrics
from genbench.io import read_json, write_json
from genbench.layout import job_name, metrics_path, prepared_dir, refstats_path, run_dir, samples_dir
from genbench.metrics.likelihood import nats_to_bits_per_dim
from genbench.metrics.probe import probe_representation
from genbench.protocol import n_generated, toy_name
from genbench.refstats import extractor_label, extractor_weights, fidlib
from genbench.tracking import Tracker
from genbench.train import load_trained, read_outcome, select_device


def machine() -> str:
    """The CPU a figure was computed on and the kernel set torch chose for it: float results (and with them a
    chaotic training) differ between CPUs, so `genbench verify` expects bit-identical figures only where
    this and the software agree."""
    model = None
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), None)
    except OSError:
        pass
    return f"{model or platform.processor() or platform.machine()}; torch CPU kernels " \
           f"{torch.backends.cpu.get_cpu_capability()}"


def library_versions() -> dict[str, str]:
    """The software behind a figure, and the machine (`cpu`)."""
    out = {"genbench": __version__, "python": platform.python_version()}
    for pkg in ("torch", "torchvision", "torch-fidelity", "numpy", "scipy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "missing"
    out["cpu"] = machine()
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


def likelihood_examples(params: Params, run: str) -> int | None:
    caps = [c for c in (params.eval.likelihood_n, params.run(run).eval.likelihood_n) if c is not None]
    return min(caps) if caps else None


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


# studies of one model family's own claims, on the reference split ----------------------------------
ENCODER_N = 1000          # test examples for the encoder study (O-GAN)
LOGDET_STUDY_N = {"points": 64, "image": 8}  # test examples for the i-ResNet log-det study (full Jacobians)


@torch.no_grad()
def encoder_scores(model, x: torch.Tensor, generator: torch.Generator) -> dict[str, Any]:
    """Is the discriminator's code E(x) a code of x (O-GAN, Su 2019, sec. 3)? Per test example, the mean
    squared error of G(E(x)) against x and, as the baseline that a code without information about x
    reaches, of G(z) for an independent prior draw z (model space: [-1, 1] pixels or raw coordinates);
    and the Pearson correlation across latent dimensions of z and E(G(z)), which the objective
    maximises (eq. 8). Means with their standard errors over the examples."""
    real = model.to_model_space(x)

    def squared_error(generated: torch.Tensor) -> torch.Tensor:
        return (model.to_model_space(generated) - real).pow(2).flatten(1).mean(1).double().cpu()

    random_code = squared_error(model.generate(model.latents(len(x), generator)))
    z = model.latents(len(x), generator)
    code = model.encode(model.generate(z))
    correlation = torch.nn.functional.cosine_similarity(z - z.mean(1, keepdim=True), code - code.mean(1, keepdim=True))
    out: dict[str, Any] = {"n": len(x)}
    for key, values in (("reconstruction_mse", squared_error(model.reconstruct(x))),
                        ("random_code_mse", random_code), ("latent_correlation", correlation.double().cpu())):
        mean, stderr = _mean_stderr(values)
        out[key] = {"mean": mean, "stderr": stderr}
    return out


def model_studies(model, x: torch.Tensor, kind: str, params: Params, seed: int, device, run: str | None = None
                  ) -> dict[str, Any]:
    """The family-specific figures some claims need: O-GAN's encoder, i-ResNet's log-det truncation
    bias at the training and evaluation series lengths (and a few more)."""
    generator = torch.Generator(device=device).manual_seed(params.eval.seed + seed + 43)
    out: dict[str, Any] = {}
    if hasattr(model, "reconstruct"):
        out["encoder"] = encoder_scores(model, x[:ENCODER_N].to(device), generator)
        dataset = dataset_info(params.run(run).dataset) if run is not None else None
        if dataset is not None and dataset.kind == "image" and dataset.num_classes:
            # the discriminator as a representation (O-GAN): the representation runs' probes at their settings
            # (genbench.metrics.probe), so its row stands in their table
            data = prepared_dir(params.data.root, dataset.name)
            out["representation"] = probe_representation(
                model.encode, load_split(data, "train"), load_split(data, "test"), seed, device,
                classes=dataset.num_classes)
    if hasattr(model, "binarized_bounds"):   # the categorical VAE: nats on binarized images, estimator study
        x_bounds = x[: likelihood_examples(params, run)] if run is not None else x
        bounds = model.binarized_bounds(x_bounds, generator, params.eval.iwae_k, params.eval.sample_batch_size)
        out["binarized"] = {name: dict(zip(("nll_nats", "stderr"), _mean_stderr(-v)), n=len(v),
                                       **({"k": params.eval.iwae_k} if name == "iwae" else {}))
                            for name, v in bounds.items()}
        out["binarized"]["binarize_seed"] = model.config.binarize_seed
        out["estimator_study"] = {"rows": model.estimator_study(x, generator), "trained_with": model.config.estimator,
                                  "gaussian_check": model.gaussian_check(params.eval.seed + seed)}
    if getattr(model.config, "rate_distortion", False):   # the VAE's beta sweep: rate, distortion, active units
        out["rate_distortion"] = model.rate_distortion_study(x, generator, params.eval.sample_batch_size)
    if hasattr(model, "codebook_study"):   # VQ-VAE / FSQ: codebook usage, perplexity, reconstruction error
        out["codebook"] = model.codebook_study(x, params.eval.sample_batch_size)
    if hasattr(model, "logdet_truncation_study"):
        c = model.config
        terms = tuple(sorted({1, 2, 5, 10, c.series_terms_train, c.series_terms_eval}))
        out["logdet_truncation"] = {"rows": model.logdet_truncation_study(x[:LOGDET_STUDY_N[kind]].to(device), terms,
                                                                          generator),
                                    "series_terms_train": c.series_terms_train,
                                    "series_terms_eval": c.series_terms_eval}
    return out


def scoring_extractors(params: Params, run: str, seed: int, variant: bool = False) -> list[str]:
    """Every extractor that scores `run` (`eval.extractors.<name>.runs`, when set) for the first seeds;
    `eval.repeat_extractors` (when set) for the repeat seeds; of those, only `eval.variant_extractors` (when
    set) for a variant sample set."""
    chosen = [e for e, opts in params.eval.extractors.items() if opts.runs is None or run in opts.runs]
    if seed not in params.seeds and params.eval.repeat_extractors is not None:
        chosen = [e for e in chosen if e in params.eval.repeat_extractors]
    if variant and params.eval.variant_extractors is not None:
        chosen = [e for e in chosen if e in params.eval.variant_extractors]
    return chosen


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

    def scores_of(name: str, sampler: str, variant: bool) -> dict[str, Any]:
        samples = torch.from_numpy(np.load(samples_dir(run, seed) / name)["x"])
        return score_samples(params, run, spec.dataset, samples, device, {
            "sampler": sampler, "ema": sample_record["ema"], "training_seed": seed,
            "sampling_seed": sample_record["sampling_seed"]}, scoring_extractors(params, run, seed, variant), references)

    scores = scores_of("samples.npz", sample_record["sampler"], variant=False)
    variants = {name: {"scores": scores_of(f"samples-{name}.npz", name, variant=True), "sample": details}
                for name, details in sample_record.get("variants", {}).items()}
    model, meta = load_trained(run_dir(run, seed), device)
    likelihood, nll_table = {}, {}
    x_ref, _ = load_split(prepared_dir(params.data.root, spec.dataset), params.eval.reference_split)
    studies = model_studies(model, x_ref, info.kind, params, seed, device, run)
    reconstruction = {}
    if hasattr(model, "reconstruct_images"):   # codebook autoencoders: FID of the test split's reconstructions
        extractors = scoring_extractors(params, run, seed, variant=True)   # another set of the same network
        n = min(len(x_ref), max(n_generated(params, e, run) for e in extractors))
        bs = params.eval.sample_batch_size
        recon = torch.cat([model.reconstruct_images(x_ref[i:i + bs].to(device)).cpu() for i in range(0, n, bs)])
        reconstruction = score_samples(params, run, spec.dataset, recon, device, {
            "sampler": "reconstruction of the reference split", "ema": sample_record["ema"], "training_seed": seed,
            "sampling_seed": None}, extractors, references)
    if model.likelihood_kinds:
        x = x_ref[: likelihood_examples(params, run)]
        nll_table = likelihood_table(model, x, params, seed, device)
        for kind in model.likelihood_kinds:
            if info.kind == "points":
                likelihood[kind] = likelihood_points(model, x, kind, toy_name(spec.dataset), params, seed, device)
            else:
                likelihood[kind] = likelihood_bpd(model, x, kind, params, seed, device)
    result = {**base, "scores": scores, "likelihood": likelihood, "variants": variants, "nll_table": nll_table,
              "studies": studies, **({"reconstruction": reconstruction} if reconstruction else {}),
              "train": {k: outcome.get(k) for k in ("steps", "max_steps", "generator_updates", "stopped_early",
                                                    "patience", "selected_step", "train_time_s",
                                                    "train_images_per_s", "parameters", "device", "ema")},
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
    flat.update({f"reconstruction.{e}.{k}": v for e, sc in reconstruction.items() for k, v in sc.items()
                 if isinstance(v, (int, float))})
    flat.update({f"codebook.{k}": v for k, v in studies.get("codebook", {}).items() if isinstance(v, (int, float))})
    flat.update({f"binarized.{k}.nll_nats": v["nll_nats"] for k, v in studies.get("binarized", {}).items()
                 if isinstance(v, dict)})
    flat.update({f"encoder.{k}": v["mean"] for k, v in studies.get("encoder", {}).items() if isinstance(v, dict)})
    rd = studies.get("rate_distortion", {})
    flat.update({f"rate_distortion.{k}_nats": rd[k]["nats"] for k in ("rate", "distortion", "neg_elbo") if k in rd})
    flat.update({"rate_distortion.active_units": rd["active_units"]} if rd else {})
    tracker.log_metrics(flat)
    tracker.set_tags({"protocol": {e: s["protocol"] for e, s in scores.items() if "protocol" in s}})
    tracker.log_artifact(metrics_path(run, seed))
    return result
