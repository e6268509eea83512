"""The report's representation section: Deep InfoMax and the baseline objectives of the same encoder
(genbench/models/dim.py), each scored by a linear and an MLP probe of its frozen features
(genbench/representation.py); mean ± std over seeds (one seed: ± the binomial test-set stderr), beside Hjelm et
al.'s Table 1. Verdicts are in the claims table (genbench/claims.py, representation_claims)."""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

# Hjelm et al. 2019, Table 1 (CIFAR-10, classifier on the frozen conv features): reference points from another
# dataset and scale than the suite's runs, for the ordering only
HJELM_TABLE1_CIFAR10 = {"local/infonce": 75.21, "vae": 60.71, "supervised": 75.39}


def objective_label(m: dict[str, Any]) -> str:
    return f"{m['objective']}/{m['estimator']}" if m.get("estimator") else m["objective"]


def representation_metrics(params, run: str) -> list[dict[str, Any]]:
    """The probe figures of a run's seeds: a representation run's metrics, or the `representation` study of a
    model whose encoder is probed at evaluation (O-GAN's discriminator: genbench.evaluate.model_studies)."""
    from genbench.claims import _metrics

    out = []
    for m in _metrics(params, run):
        if m.get("kind") == "representation":
            out.append(m)
        elif "representation" in m.get("studies", {}):
            out.append({**m["studies"]["representation"], "objective": f"{m['model']} (encoder)"})
    return out


def representation_sections(params) -> tuple[list[str], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    for run, spec in params.runs.items():
        ms = representation_metrics(params, run)
        if not ms:
            continue
        label = objective_label(ms[0])
        row: dict[str, Any] = {"dataset": spec.dataset, "run": run, "objective": label, "seeds": len(ms),
                               "probe_train_n": ms[0]["probe_train_n"], "probe_test_n": ms[0]["probe_test_n"],
                               "feature_dim": ms[0]["feature_dim"],
                               "published_cifar10": HJELM_TABLE1_CIFAR10.get(label)}
        for probe in ("linear", "mlp"):
            values = [100 * m[f"{probe}_probe"]["accuracy"] for m in ms]
            row[f"{probe}_accuracy"] = statistics.fmean(values)
            row[f"{probe}_accuracy_std"] = (statistics.stdev(values) if len(values) > 1
                                            else 100 * ms[0][f"{probe}_probe"]["accuracy_stderr"])
        rows.append(row)
    if not rows:
        return [], rows
    md = ["## Representations: Deep InfoMax against the same encoder trained otherwise", "",
          "One convolutional encoder (the suite's VAE encoder) trained by Deep InfoMax's local or global "
          "mutual-information objective (JSD or InfoNCE estimator, with prior matching; Hjelm et al. 2019) or as "
          "a VAE's encoder, a supervised classifier's, or left at its seeded initialisation (random); O-GAN's "
          "discriminator (Su 2019: its output standardised over dimensions is the encoder) probed the same way; "
          "the frozen "
          f"features ({rows[0]['feature_dim']}-d) are probed by a linear (multinomial logistic) and a one-hidden-"
          f"layer MLP classifier fitted on {rows[0]['probe_train_n']} training images and scored on the "
          f"{rows[0]['probe_test_n']} test images. Test accuracy %, mean ± std over seeds (one seed: ± the binomial "
          "standard error). Published (CIFAR-10, conv features, Hjelm et al. 2019 Table 1): DIM(L) InfoNCE 75.21, "
          "VAE 60.71, supervised 75.39: another dataset and scale, shown for the ordering only.", "",
          "| dataset | run | objective | seeds | linear probe % | MLP probe % | published (CIFAR-10) |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        published = "—" if r["published_cifar10"] is None else f"{r['published_cifar10']:.2f}"
        md.append(f"| {r['dataset']} | {r['run']} | {r['objective']} | {r['seeds']} | "
                  f"{r['linear_accuracy']:.2f} ± {r['linear_accuracy_std']:.2f} | "
                  f"{r['mlp_accuracy']:.2f} ± {r['mlp_accuracy_std']:.2f} | {published} |")
    return md + [""], rows


def plot_representation(rows: list[dict[str, Any]], path: Path) -> None:
    """Linear and MLP probe accuracy per objective, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genbench.report import label_panel, save_png

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 0.4 * len(rows) + 1.6), squeeze=False)
    for ax, dataset in zip(axes.flat, datasets):
        pts = [r for r in rows if r["dataset"] == dataset]
        y = range(len(pts))
        for offset, probe, color in ((-0.2, "linear", "tab:blue"), (0.2, "mlp", "tab:orange")):
            ax.barh([i + offset for i in y], [r[f"{probe}_accuracy"] for r in pts], height=0.4,
                    xerr=[0 if math.isnan(r[f"{probe}_accuracy_std"]) else r[f"{probe}_accuracy_std"] for r in pts],
                    color=color, capsize=2, label=f"{probe} probe")
        ax.set_yticks(list(y), [r["objective"] for r in pts])
        ax.set_xlim(max(0.0, min(r["linear_accuracy"] for r in pts) - 10), 100)
        ax.legend(fontsize=7)
        label_panel(ax, f"probe test accuracy ({dataset})", "%")
    save_png(fig, path)
