"""The theory checks' section of the report (genbench/theory.py): tables, reports/theory.csv and one figure.

Read from metrics/theory-<check>.json only; the verdicts are in the claims table (genbench/claims.py,
theory_claims), the tables here show every measured cell behind them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from genbench.claims import theory_result

_DROP = ("skewness_values", "correlation_values", "plain_errors", "modified_errors", "plain_slopes", "modified_slopes")


def theory_sections(params) -> tuple[list[str], list[dict[str, Any]]]:
    """Markdown lines and the CSV rows (one per measured cell, `table` naming the check)."""
    md: list[str] = []
    rows: list[dict[str, Any]] = []
    found = {name: theory_result(name) for name in params.theory}
    if not any(found.values()):
        return md, rows
    md += ["## Theory checks", "",
           "Seeded simulations of stated identities and rates (genbench/theory.py); ± one standard error over "
           "replicates, resamples or problem instances. Verdicts are in the claims table.", ""]
    if variance := found.get("variance"):
        md += ["### Biased and unbiased variance", "",
               "Mean of each estimator over replicates divided by the true variance; the 1/n estimator's expected "
               "ratio is (n-1)/n. MSE against the true variance (normal: closed forms 2σ⁴/(n-1) and (2n-1)σ⁴/n²).", "",
               "| distribution | n | replicates | 1/(n-1): mean/var | 1/n: mean/var | (n-1)/n | MSE 1/(n-1) | MSE 1/n "
               "| ML σ | its closed form |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in variance["rows"]:
            exact = "—" if r.get("ml_sigma_expected") is None else f"{r['ml_sigma_expected']:.4f}"
            md.append(f"| {r['distribution']} | {r['n']} | {r['replicates']} | {_pm(r, 'unbiased_ratio')} | "
                      f"{_pm(r, 'biased_ratio')} | {r['expected_biased_ratio']:.4f} | {_pm(r, 'unbiased_mse')} | "
                      f"{_pm(r, 'biased_mse')} | {_pm(r, 'ml_sigma_mean', 'ml_sigma_stderr')} | {exact} |")
            rows.append({"table": "variance", **_flat(r)})
        md.append("")
    if hubness := found.get("hubness"):
        md += ["### Hubness against dimension", "",
               "Standard Gaussian samples: skewness of the k-occurrence N_k and the Spearman correlation between a "
               "point's N_k and its distance to the sample mean, over resamples.", "",
               "| d | k | n | resamples | skewness of N_k | Spearman(N_k, distance to mean) |", "|---|---|---|---|---|---|"]
        for r in hubness["rows"]:
            md.append(f"| {r['d']} | {r['k']} | {r['n']} | {r['resamples']} | "
                      f"{_pm(r, 'skewness_mean', 'skewness_stderr')} | {_pm(r, 'correlation_mean', 'correlation_stderr')} |")
            rows.append({"table": "hubness", **_flat(r)})
        md.append("")
    if gdflow := found.get("gdflow"):
        md += ["### Gradient descent against its flows", "",
               "Distance at time T between the gradient-descent iterate and the gradient flow of L (plain) or of "
               "L + (η/4)|∇L|² (modified), integrated to tight tolerance; mean over problem instances. The fitted "
               f"log-log slopes are the orders (predicted 1 and 2); ODE against closed form on the quadratic: "
               f"{gdflow['ode_check']:.2g}.", "",
               "| problem | η | steps | plain flow error | modified flow error |", "|---|---|---|---|---|"]
        for r in gdflow["rows"]:
            md.append(f"| {r['problem']} | {r['eta']:g} | {r['steps']} | {r['plain_error_mean']:.3g} | "
                      f"{r['modified_error_mean']:.3g} |")
            rows.append({"table": "gdflow", **_flat(r)})
        md += ["", "| problem | instances | plain slope | modified slope |", "|---|---|---|---|"]
        for f in gdflow["fits"]:
            md.append(f"| {f['problem']} | {f['instances']} | {_pm(f, 'plain_slope_mean', 'plain_slope_stderr')} | "
                      f"{_pm(f, 'modified_slope_mean', 'modified_slope_stderr')} |")
            rows.append({"table": "gdflow_fit", **_flat(f)})
        md.append("")
    return md, rows


def _pm(row: dict[str, Any], key: str, err: str | None = None) -> str:
    return f"{row[key]:.4f} ± {row[err or key + '_stderr']:.4f}"


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _DROP}


def _log_ticks(ax, values: list, fmt: str) -> None:
    """A log x axis ticked at the measured values only (no overlapping minor labels)."""
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(values, [fmt.format(v) for v in values])


def plot_theory(rows: list[dict[str, Any]], path: Path) -> None:
    """Variance ratios against n; skewness and correlation against d; GD's distance to each flow against eta."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genbench.report import label_panel, save_png

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    var = [r for r in rows if r["table"] == "variance"]
    for dist in dict.fromkeys(r["distribution"] for r in var):
        cells = [r for r in var if r["distribution"] == dist]
        ns = [r["n"] for r in cells]
        for key, style in (("unbiased_ratio", "-o"), ("biased_ratio", "--s")):
            axes[0].errorbar(ns, [r[key] for r in cells], yerr=[2 * r[f"{key}_stderr"] for r in cells], fmt=style,
                             ms=3, capsize=2, label=f"{dist} {'1/(n-1)' if key == 'unbiased_ratio' else '1/n'}")
    if var:
        grid = sorted({r["n"] for r in var})
        axes[0].plot(grid, [(n - 1) / n for n in grid], "k:", label="(n-1)/n")
        _log_ticks(axes[0], grid, "{:d}")
        axes[0].legend(fontsize=6)
    label_panel(axes[0], "estimator mean / true variance (± 2 s.e.)", "n")
    hub = [r for r in rows if r["table"] == "hubness"]
    for k in dict.fromkeys(r["k"] for r in hub):
        cells = sorted((r for r in hub if r["k"] == k), key=lambda r: r["d"])
        ds = [r["d"] for r in cells]
        axes[1].errorbar(ds, [r["skewness_mean"] for r in cells], yerr=[2 * r["skewness_stderr"] for r in cells],
                         fmt="-o", ms=3, capsize=2, label=f"k={k}")
        axes[2].errorbar(ds, [r["correlation_mean"] for r in cells], yerr=[2 * r["correlation_stderr"] for r in cells],
                         fmt="-o", ms=3, capsize=2, label=f"k={k}")
    for ax, title in ((axes[1], "skewness of N_k (± 2 s.e.)"), (axes[2], "Spearman(N_k, distance to mean)")):
        if hub:
            ax.set_xscale("log")
            ax.legend(fontsize=7)
        label_panel(ax, title, "dimension d")
    gd = [r for r in rows if r["table"] == "gdflow"]
    for problem in dict.fromkeys(r["problem"] for r in gd):
        cells = sorted((r for r in gd if r["problem"] == problem), key=lambda r: r["eta"])
        etas = [r["eta"] for r in cells]
        axes[3].loglog(etas, [r["plain_error_mean"] for r in cells], "-o", ms=3, label=f"{problem}: flow of L")
        axes[3].loglog(etas, [r["modified_error_mean"] for r in cells], "--s", ms=3,
                       label=f"{problem}: flow of L + (η/4)|∇L|²")
    if gd:
        _log_ticks(axes[3], sorted({r["eta"] for r in gd}), "{:g}")
        axes[3].legend(fontsize=6)
    label_panel(axes[3], "GD iterate's distance to the flow at T", "learning rate η")
    save_png(fig, path)
