"""The report's section on discrete latents: the categorical VAE per gradient estimator (-ELBO and the
importance-weighted bound in nats on binarized MNIST, FID of decoded prior samples, beside Jang et al.'s
Table 1) and the gradient-estimator study (bias and variance against the temperature), with their figure."""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from genbench.references import JANG_TABLE1_NEG_ELBO


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


def _pm(mean: float, std: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def catvae_sections(params) -> tuple[list[str], list[dict[str, Any]]]:
    """Markdown and CSV rows: one `bound` row per categorical-VAE run (mean ± std over its seeds) and one
    `study` row per (trained run, estimator, temperature) of the estimator study."""
    from genbench.claims import _metrics

    rows: list[dict[str, Any]] = []
    for run, spec in params.runs.items():
        if spec.model != "catvae":
            continue
        ms = [m for m in _metrics(params, run) if "binarized" in m.get("studies", {})]
        if not ms:
            continue
        estimator = ms[0]["studies"]["estimator_study"]["trained_with"]
        row: dict[str, Any] = {"table": "bound", "run": run, "dataset": spec.dataset, "estimator": estimator,
                               "seeds": len(ms), "n": ms[0]["studies"]["binarized"]["elbo"]["n"],
                               "iwae_k": ms[0]["studies"]["binarized"]["iwae"]["k"],
                               "binarize_seed": ms[0]["studies"]["binarized"]["binarize_seed"],
                               "published_neg_elbo": JANG_TABLE1_NEG_ELBO["rows"].get(estimator)}
        for kind in ("elbo", "iwae"):
            row[f"neg_{kind}_nats"], row[f"neg_{kind}_nats_std"] = _mean_std(
                [m["studies"]["binarized"][kind]["nll_nats"] for m in ms])
            row[f"neg_{kind}_nats_test_stderr"] = ms[0]["studies"]["binarized"][kind]["stderr"]
        for extractor in params.eval.extractors:
            fids = [s["fid"] for m in ms for e, s in m["scores"].items() if e == extractor]
            if fids:
                label = next(s["protocol"]["extractor"] for e, s in ms[0]["scores"].items() if e == extractor)
                row[f"fid[{label}]"], row[f"fid[{label}]_std"] = _mean_std(fids)
                row[f"fid[{label}]_seeds"] = len(fids)
        row["steps"] = " / ".join(str(m["train"]["steps"]) for m in ms)
        row["train_time_s"] = statistics.fmean(m["train"]["train_time_s"] for m in ms)
        rows.append(row)
        for i, r in enumerate(ms[0]["studies"]["estimator_study"]["rows"]):
            same = [m["studies"]["estimator_study"]["rows"][i] for m in ms]
            rows.append({"table": "study", "run": run, "trained_with": estimator, "estimator": r["estimator"],
                         "tau": r["tau"], "seeds": len(same), "examples": r["examples"], "draws": r["draws"],
                         "bias2": statistics.fmean(x["bias2"] for x in same),
                         "bias2_stderr": _study_error(same, "bias2"),
                         "bias_noise_floor": statistics.fmean(x["bias_noise_floor"] for x in same),
                         "variance": statistics.fmean(x["variance"] for x in same),
                         "variance_stderr": _study_error(same, "variance"),
                         "exact_norm": statistics.fmean(x["exact_norm"] for x in same)})
    bounds = [r for r in rows if r["table"] == "bound"]
    if not bounds:
        return [], rows
    extractor_cols = [k for k in bounds[0] if k.startswith("fid[") and not k.endswith(("_std", "_seeds"))]
    md = ["## Discrete latents: the categorical VAE and its gradient estimators", "",
          f"Jang et al. 2017's VAE: {_latent_text(params)} categorical latents, MLP encoder and decoder, Bernoulli "
          "pixels. Trained on dynamically binarized MNIST (each batch drawn afresh); scored on one fixed "
          f"binarization of the test split (seed {bounds[0]['binarize_seed']}, a function of each image, not of the "
          f"batch), n = {bounds[0]['n']}: -ELBO and -L_k (k = {bounds[0]['iwae_k']}) in nats with categorical samples, "
          "the bounds of the discrete model whatever relaxation trained it; mean ± std over seeds. FID: decoded "
          "prior samples (Bernoulli means) against the 8-bit test split. Published: "
          + JANG_TABLE1_NEG_ELBO["source"] + ", trained far longer (their steps are not ours: the ordering compares, "
          "not the level).", "",
          "| run | estimator | seeds | -ELBO nats | -L_k nats | published -ELBO | " +
          " | ".join(extractor_cols) + " | steps |",
          "|---|---|---|---|---|---|" + "---|" * len(extractor_cols) + "---|"]
    for r in bounds:
        fids = [_pm(r[c], r[f"{c}_std"], 1) + ("" if r[f"{c}_seeds"] == r["seeds"] else f" ({r[f'{c}_seeds']} seed)")
                for c in extractor_cols]
        pub = "—" if r["published_neg_elbo"] is None else f"{r['published_neg_elbo']:.1f}"
        md.append(f"| {r['run']} | {r['estimator']} | {r['seeds']} | {_pm(r['neg_elbo_nats'], r['neg_elbo_nats_std'])} "
                  f"| {_pm(r['neg_iwae_nats'], r['neg_iwae_nats_std'])} | {pub} | " + " | ".join(fids) +
                  f" | {r['steps']} |")
    study = [r for r in rows if r["table"] == "study" and r["trained_with"] == "gs"]
    if study:
        s0 = study[0]
        md += ["", f"### Gradient-estimator study ({s0['run']}, {s0['seeds']} seed(s))", "",
               "The gradient of E_q[log p(x|z)] with respect to the logits of one categorical variable (the others "
               "held at a sample), against the exact gradient from enumerating its classes, on "
               f"{s0['examples']} fixed test images, {s0['draws']} draws per estimator. variance = the draws' mean "
               "squared distance to their mean; squared bias = |mean of the draws - exact|^2 - variance / draws "
               "(the draws' own noise removed: an unbiased estimator's is 0 within its error; the noise floor "
               "sqrt(variance / draws) is what was removed). Mean over images ± standard error (over images, or over "
               f"seeds when there are 3 or more); |exact| = {s0['exact_norm']:.3g}.", "",
               "| estimator | tau | squared bias | noise floor | variance |", "|---|---|---|---|---|"]
        for r in study:
            tau = "—" if r["tau"] is None else f"{r['tau']:g}"
            md.append(f"| {r['estimator']} | {tau} | {r['bias2']:.4g} ± {r['bias2_stderr']:.2g} | "
                      f"{r['bias_noise_floor']:.3g} | {r['variance']:.4g} ± {r['variance_stderr']:.2g} |")
    return md + [""], rows


def _study_error(same: list[dict[str, Any]], key: str) -> float:
    if len(same) >= 3:
        return statistics.stdev(x[key] for x in same) / math.sqrt(len(same))
    return same[0][f"{key}_stderr"]


def _latent_text(params) -> str:
    spec = next(s for s in params.runs.values() if s.model == "catvae")
    return f"{spec.model_config.get('latents', 20)} x {spec.model_config.get('classes', 10)}"


def plot_catvae(rows: list[dict[str, Any]], path: Path) -> None:
    """Left: -ELBO per estimator (mean ± std over seeds) with Jang et al.'s figure; right: the GS and ST-GS
    gradients' bias and variance against the temperature (log-log), SF and ST as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genbench.report import label_panel, save_png

    bounds = [r for r in rows if r["table"] == "bound"]
    study = [r for r in rows if r["table"] == "study" and r["trained_with"] == "gs"]
    fig, axes = plt.subplots(1, 3 if study else 1, figsize=(11 if study else 4, 3.2), squeeze=False)
    ax = axes.flat[0]
    names = [r["estimator"] for r in bounds]
    ax.barh(names, [r["neg_elbo_nats"] for r in bounds], xerr=[0 if math.isnan(r["neg_elbo_nats_std"]) else
                                                              r["neg_elbo_nats_std"] for r in bounds],
            color="tab:blue", capsize=3, label="here")
    pubs = [(n, r["published_neg_elbo"]) for n, r in zip(names, bounds) if r["published_neg_elbo"] is not None]
    if pubs:
        ax.plot([v for _, v in pubs], [n for n, _ in pubs], "k|", markersize=14, label="Jang et al. 2017")
    low = min([r["neg_elbo_nats"] for r in bounds] + [v for _, v in pubs])
    ax.set_xlim(low - 10, max(r["neg_elbo_nats"] for r in bounds) + 5)
    ax.legend(fontsize=7)
    label_panel(ax, "test -ELBO (binarized MNIST)", "nats")
    for ax, key in zip(list(axes.flat)[1:], ("bias2", "variance")):
        for est, color in (("gs", "tab:orange"), ("st-gs", "tab:green")):
            pts = [r for r in study if r["estimator"] == est]
            ax.errorbar([r["tau"] for r in pts], [r[key] for r in pts], yerr=[r[f"{key}_stderr"] for r in pts],
                        color=color, marker="o", capsize=2, label=est)
        for est, style in ((("st", ":"),) if key == "bias2" else (("sf", "--"), ("st", ":"))):   # SF's bias: noise
            for r in study:
                if r["estimator"] == est:
                    ax.axhline(r[key], color="gray", linestyle=style, label=est)
        ax.set_xscale("log")
        ax.set_yscale("symlog" if key == "bias2" else "log", **({"linthresh": 1e-3} if key == "bias2" else {}))
        ax.legend(fontsize=6)
        label_panel(ax, f"gradient {'squared bias' if key == 'bias2' else key} vs temperature", "tau")
    save_png(fig, path)


# --------------------------------------------------------------------------------------------------
# VQ-VAE against FSQ
# --------------------------------------------------------------------------------------------------
def codebook_sections(params) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per codebook run (mean ± std over its seeds): quantizer, codes, usage %, perplexity,
    reconstruction MSE and FID, the prior's test NLL and the FID of its samples."""
    from genbench.claims import _metrics

    rows: list[dict[str, Any]] = []
    for run, spec in params.runs.items():
        if spec.model != "codebook":
            continue
        ms = [m for m in _metrics(params, run) if "codebook" in m.get("studies", {})]
        if not ms:
            continue
        study = [m["studies"]["codebook"] for m in ms]
        row: dict[str, Any] = {"run": run, "dataset": spec.dataset, "quantizer": study[0]["quantizer"],
                               "codes": study[0]["codes"], "seeds": len(ms), "n": study[0]["n"]}
        for key in ("usage_percent", "perplexity"):
            row[key], row[f"{key}_std"] = _mean_std([s[key] for s in study])
        for key in ("reconstruction_mse", "prior_nll_nats"):
            row[key], row[f"{key}_std"] = _mean_std([s[key]["mean"] for s in study])
        for section, prefix in (("reconstruction", "recon_fid"), ("scores", "sample_fid")):
            for extractor in params.eval.extractors:
                found = [m[section][extractor] for m in ms if extractor in m.get(section, {})]
                if found:
                    label = found[0]["protocol"]["extractor"]
                    row[f"{prefix}[{label}]"], row[f"{prefix}[{label}]_std"] = _mean_std([f["fid"] for f in found])
                    row[f"{prefix}[{label}]_seeds"] = len(found)
        rows.append(row)
    if not rows:
        return [], rows
    # each dataset's own classifier ruler: the columns are the union over the rows (a row lacks the others')
    fid_cols = sorted({k for r in rows for k in r if k.startswith(("recon_fid[", "sample_fid["))
                       and not k.endswith(("_std", "_seeds"))}, key=lambda k: (k.startswith("sample"), k))
    md = ["## Discrete codebooks: VQ-VAE against FSQ", "",
          "The same convolutional autoencoder (to a 7 x 7 grid of codes) with a VQ codebook (nearest neighbour, "
          "commitment 0.25, EMA updates; van den Oord et al. 2017; the codes start at encoder outputs of the first "
          "batch) or finite scalar quantization (Mentzer et al. "
          "2024) of about the same size; then a causal transformer prior over the code grid, whose samples are "
          f"decoded. On the test split (n = {rows[0]['n']}): usage = % of the codebook used, perplexity = exp of the "
          "codes' entropy, reconstruction MSE per [0, 1] pixel, the prior's NLL of the test codes (nats per image), "
          "FID of the reconstructions and of prior samples; mean ± std over seeds. Published (Mentzer et al. 2024, "
          "ImageNet MaskGIT, sec. 4): FSQ uses ~100 % of its codebook where VQ uses ~81 % at similar reconstruction.",
          "", "| run | quantizer | codes | seeds | usage % | perplexity | recon MSE x 1000 | prior NLL nats | " +
          " | ".join(fid_cols) + " |", "|---|---|---|---|---|---|---|---|" + "---|" * len(fid_cols)]
    for r in rows:
        fids = [_pm(r[c], r[f"{c}_std"], 1) + ("" if r[f"{c}_seeds"] == r["seeds"] else f" ({r[f'{c}_seeds']} seed)")
                if c in r else "—" for c in fid_cols]
        md.append(f"| {r['run']} | {r['quantizer']} | {r['codes']} | {r['seeds']} | "
                  f"{_pm(r['usage_percent'], r['usage_percent_std'], 1)} | {_pm(r['perplexity'], r['perplexity_std'], 0)} | "
                  f"{_pm(1000 * r['reconstruction_mse'], 1000 * r['reconstruction_mse_std'], 2)} | "
                  f"{_pm(r['prior_nll_nats'], r['prior_nll_nats_std'], 1)} | " + " | ".join(fids) + " |")
    return md + [""], rows


def plot_codebook(rows: list[dict[str, Any]], path: Path) -> None:
    """Codebook usage and reconstruction MSE per run (mean ± std over seeds), VQ and FSQ side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genbench.report import label_panel, save_png

    fig, axes = plt.subplots(1, 2, figsize=(9, 0.45 * len(rows) + 1.5))
    names = [r["run"] for r in rows]
    colors = ["tab:blue" if r["quantizer"] == "vq" else "tab:orange" for r in rows]
    for ax, key, label, scale in ((axes[0], "usage_percent", "codebook usage % (test)", 1.0),
                                  (axes[1], "reconstruction_mse", "reconstruction MSE x 1000", 1000.0)):
        err = [0 if math.isnan(r[f"{key}_std"]) else scale * r[f"{key}_std"] for r in rows]
        ax.barh(names, [scale * r[key] for r in rows], xerr=err, color=colors, capsize=3)
        label_panel(ax, label, "blue: VQ, orange: FSQ")
    save_png(fig, path)
