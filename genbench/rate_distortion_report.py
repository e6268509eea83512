"""The report's section on the VAE as an information bottleneck: the beta sweep's rate and distortion on the
test split (nats, mean ± std over seeds, or ± the test-set stderr at one seed), -ELBO = R + D, the active units
per beta (Burda et al.'s criterion), and the rate-distortion curve with the ELBO's beta = 1 point marked.

Read from the `rate_distortion` study of metrics/<job>.json (genbench/models/vae.py); verdicts are in the claims
table (genbench/claims.py, rate_distortion_claims)."""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any


def sweep_runs(params) -> dict[str, list[tuple[float, str]]]:
    """Per dataset, the (beta, run) pairs of the VAE runs that evaluate the rate-distortion study, by beta."""
    out: dict[str, list[tuple[float, str]]] = {}
    for run, spec in params.runs.items():
        if spec.model == "vae" and spec.model_config.get("rate_distortion"):
            out.setdefault(spec.dataset, []).append((float(spec.model_config.get("beta", 1.0)), run))
    return {dataset: sorted(pairs) for dataset, pairs in out.items()}


def studies(params, run: str) -> list[dict[str, Any]]:
    from genbench.claims import _metrics

    return [m["studies"]["rate_distortion"] for m in _metrics(params, run) if "rate_distortion" in m.get("studies", {})]


def _spread(values: list[float], stderr: float) -> float:
    """The std over seeds; at one seed, the figure's own test-set stderr."""
    return statistics.stdev(values) if len(values) > 1 else stderr


def rate_distortion_sections(params) -> tuple[list[str], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    for dataset, pairs in sweep_runs(params).items():
        for beta, run in pairs:
            found = studies(params, run)
            if not found:
                continue
            row: dict[str, Any] = {"dataset": dataset, "beta": beta, "run": run, "seeds": len(found), "n": found[0]["n"],
                                   "latent_dim": found[0]["latent_dim"]}
            for key in ("rate", "distortion", "neg_elbo"):
                values = [s[key]["nats"] for s in found]
                row[f"{key}_nats"] = statistics.fmean(values)
                row[f"{key}_nats_std"] = _spread(values, found[0][key]["stderr"])
            units = [s["active_units"] for s in found]
            row["active_units"] = statistics.fmean(units)
            row["active_units_std"] = statistics.stdev(units) if len(units) > 1 else float("nan")
            rows.append(row)
    if not rows:
        return [], rows
    md = ["## The VAE as an information bottleneck: rate against distortion", "",
          "The suite's VAE trained on E_q[log p(x|z)] - β KL(q(z|x) || p(z)) for each β (Higgins et al. 2017; "
          "Alemi et al. 2018; Su, \"变分自编码器 + 信息瓶颈 + 正态分布\"). On the test split: rate R = E KL (nats), "
          "distortion D = -E log p(x|z) (nats per image, discretized logistic on 8-bit pixels), -ELBO = R + D; "
          "active units: Var_x(E_q[z_u|x]) > 0.01 (Burda et al. 2016). Mean ± std over seeds (one seed: ± the "
          "test-set standard error). β = 1 is the ELBO's own point; the information-bottleneck reading predicts "
          "that raising β trades rate for distortion and switches units off.", "",
          "| dataset | β | run | seeds | n | rate R | distortion D | -ELBO = R + D | active units |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        units = f"{r['active_units']:.1f}" + ("" if math.isnan(r["active_units_std"]) else
                                              f" ± {r['active_units_std']:.1f}") + f" / {r['latent_dim']}"
        md.append(f"| {r['dataset']} | {r['beta']:g} | {r['run']} | {r['seeds']} | {r['n']} | "
                  + " | ".join(f"{r[f'{k}_nats']:.2f} ± {r[f'{k}_nats_std']:.2f}" for k in ("rate", "distortion", "neg_elbo"))
                  + f" | {units} |")
    return md + [""], rows


def plot_rate_distortion(rows: list[dict[str, Any]], path: Path) -> None:
    """Left: distortion against rate per dataset, each point labelled by beta, the beta = 1 point circled and
    its iso-ELBO line R + D = const drawn; right: active units against beta."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genbench.report import label_panel, save_png

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        pts = [r for r in rows if r["dataset"] == dataset]
        axes[0].errorbar([r["rate_nats"] for r in pts], [r["distortion_nats"] for r in pts],
                         xerr=[r["rate_nats_std"] for r in pts], yerr=[r["distortion_nats_std"] for r in pts],
                         marker="o", capsize=2, label=dataset)
        for r in pts:
            axes[0].annotate(f"β={r['beta']:g}", (r["rate_nats"], r["distortion_nats"]), fontsize=7,
                             textcoords="offset points", xytext=(4, 4))
        elbo = [r for r in pts if r["beta"] == 1.0]
        if elbo:
            r = elbo[0]
            axes[0].plot([r["rate_nats"]], [r["distortion_nats"]], "o", markersize=12, fillstyle="none", color="k")
            total = r["rate_nats"] + r["distortion_nats"]
            span = [min(p["rate_nats"] for p in pts), max(p["rate_nats"] for p in pts)]
            axes[0].plot(span, [total - x for x in span], "k:", linewidth=1, label="R + D at β = 1 (the ELBO)")
        axes[1].errorbar([r["beta"] for r in pts], [r["active_units"] for r in pts],
                         yerr=[0 if math.isnan(r["active_units_std"]) else r["active_units_std"] for r in pts],
                         marker="o", capsize=2, label=dataset)
    axes[0].legend(fontsize=7)
    label_panel(axes[0], "distortion -E log p(x|z) against rate KL (test, nats)", "rate R (nats)")
    axes[1].set_xscale("log")
    label_panel(axes[1], "active latent units (Var E[z|x] > 0.01)", "β")
    save_png(fig, path)
