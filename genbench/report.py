"""Leaderboard tables and figures, built only from the tracked metrics files and run statistics.

reports/leaderboard.md   one table per dataset, every FID column named by its extractor
reports/leaderboard.csv  one row per run (mean and std over seeds), for tools
reports/index.html       the overview of the static site (reports/site/: a page per dataset, family and job;
                         genbench/site.py)
reports/curves/<job>.csv training curves, the source of `dvc plots show`
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from genbench.discrete_report import catvae_sections, codebook_sections, plot_catvae, plot_codebook
from genbench.rate_distortion_report import plot_rate_distortion, rate_distortion_sections
from genbench.representation_report import plot_representation, representation_sections
from genbench.theory_report import plot_theory, theory_sections
from genbench.io import atomic_path, read_json
from genbench.layout import job_name, metrics_path, run_dir, samples_dir
from genbench.references import reference_for
from genbench.site import Section, SiteInputs, write_site


def _fmt(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def score_columns(scores: dict[str, Any]) -> dict[str, Any]:
    """Leaderboard columns of a metrics file's `scores`: FID/KID/P/R named by extractor, 2-D modes."""
    row: dict[str, Any] = {}
    for extractor, s in scores.items():
        if extractor == "modes":
            row["modes covered"] = s["modes_covered"]
            row["high-quality fraction"] = s["high_quality_fraction"]
            row["modes total"] = s["modes_total"]
            continue
        label = s["protocol"]["extractor"]
        for key in ("fid", "kid_mean", "precision", "recall"):
            row[f"{key}[{label}]"] = s[key]
        row[f"n_gen[{label}]"] = s["protocol"]["n_gen"]
    return row


def training_length(outcome: dict[str, Any]) -> str:
    """Steps trained, the generator updates among them (GANs), and what ended the run: `curve` (its
    validation figure stopped improving: the patience rule), `cap` (the step limit came first, so the
    curve may still have been falling) or nothing (a fixed length)."""
    text = str(outcome.get("steps", "?"))
    if outcome.get("generator_updates") is not None:
        text += f" ({outcome['generator_updates']} G)"
    if outcome.get("patience"):
        text += ", curve" if outcome.get("stopped_early") else ", cap"
    return text


def generative_jobs(params) -> list[tuple[str, int]]:
    """The (run, seed) jobs that are sampled and evaluated (the supervised ones have their own tables)."""
    from genbench.resolve import is_supervised

    return [(run, seed) for run, seed in params.jobs() if not is_supervised(params, run)]


def collect(params, pending: set[str] = frozenset()) -> list[dict[str, Any]]:
    """One flat row per (run, seed) from metrics/<job>.json, and one per (run, seed, sampler variant)
    named `run [variant]` (the same network sampled otherwise, e.g. with the hubness prior). A job listed in
    `pending` (pipelines/stale.yaml) without a metrics file has not run yet: it has no row (the notice says so)."""
    rows = []
    for run, seed in generative_jobs(params):
        if job_name(run, seed) in pending and not metrics_path(run, seed).is_file():
            continue
        m = read_json(metrics_path(run, seed))
        row: dict[str, Any] = {"run": run, "seed": seed, "model": m["model"], "dataset": m["dataset"],
                               "status": m["status"]}
        if m["status"] != "completed":
            row["diverged_at_step"] = m.get("diverged_at_step")
            rows.append(row)
            continue
        row.update(score_columns(m["scores"]))
        for kind, lk in m["likelihood"].items():
            if "bits_per_dim" in lk:
                row[f"bpd[{kind}]"] = lk["bits_per_dim"]
            else:  # continuous 2-D data: NLL in nats, KL to the true density where it is known
                row[f"nll_nats[{kind}]"] = lk["nll_nats"]
                if "kl_nats" in lk:
                    row[f"kl_nats[{kind}]"] = lk["kl_nats"]
        for kind, lk in m.get("studies", {}).get("binarized", {}).items():   # the categorical VAE: binary images
            if isinstance(lk, dict):
                row[f"nll_nats[{kind}, binarized]"] = lk["nll_nats"]
        row["length"] = training_length(m["train"])
        row.update({"parameters": m["train"]["parameters"], "train_time_s": m["train"]["train_time_s"],
                    "train_images_per_s": m["train"]["train_images_per_s"],
                    "sample_images_per_s": m["sample"]["images_per_s"]})
        rows.append(row)
        for name, variant in m.get("variants", {}).items():
            if variant["sample"].get("table") == "steps":  # cells of the diffusion steps table: shown there
                continue
            rows.append({**{k: row[k] for k in ("seed", "model", "dataset", "status", "parameters",
                                                "train_time_s", "train_images_per_s")},
                         "run": f"{run} [{name}]", **score_columns(variant["scores"]),
                         "sample_images_per_s": variant["sample"]["images_per_s"]})
    return rows


def aggregate(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Mean and sample std over seeds per run; a run with a diverged seed says so."""
    df = pd.DataFrame(rows)
    out = []
    if df.empty:  # a profile of scored runs only (accuracy, sentence embeddings): their own sections
        return pd.DataFrame(columns=["run", "model", "dataset", "seeds"])
    for run, group in df.groupby("run", sort=False):
        rec: dict[str, Any] = {"run": run, "model": group["model"].iloc[0], "dataset": group["dataset"].iloc[0],
                               "seeds": len(group)}
        done = group[group["status"] == "completed"]
        diverged = group[group["status"] != "completed"]
        rec["status"] = "completed" if diverged.empty else "; ".join(
            f"seed {r.seed}: diverged at step {int(r.diverged_at_step)}" for r in diverged.itertuples())
        for col in df.columns:
            if col in ("run", "seed", "model", "dataset", "status", "diverged_at_step"):
                continue
            if col == "length":  # text: each distinct length once (seeds may stop at different steps)
                rec[col] = " / ".join(dict.fromkeys(str(v) for v in done[col].dropna())) if col in done else ""
                continue
            vals = pd.to_numeric(done[col], errors="coerce").dropna() if col in done else pd.Series(dtype=float)
            rec[col] = float(vals.mean()) if len(vals) else float("nan")
            rec[f"{col}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
        ref = reference_for(rec["model"], rec["dataset"])
        rec["reference"] = ref["text"] if ref else ""
        rec["ratio"] = (rec.get(ref["metric"], float("nan")) / float(ref["value"])
                        if ref and ref.get("comparable") == "yes" else float("nan"))
        out.append(rec)
    return pd.DataFrame(out)


def wgan_div_claim(rows: list[dict[str, Any]]) -> list[str]:
    """The claim of the WGAN-div post (Su, kexue.fm 6139, after Wu et al. 2018): WGAN-GP's best run is
    worse than WGAN-div's worst. Checked per dataset and FID extractor over the seeds that ran."""
    df = pd.DataFrame([r for r in rows if r.get("status") == "completed" and "[" not in r["run"]])
    lines = []
    if df.empty or not {"wgan_gp", "wgan_div"} <= set(df["model"]):
        return lines
    for dataset, group in df.groupby("dataset", sort=False):
        for col in [c for c in group.columns if c.startswith("fid[")]:
            gp = group[group["model"] == "wgan_gp"][col].dropna()
            div = group[group["model"] == "wgan_div"][col].dropna()
            if gp.empty or div.empty:
                continue
            ordered = gp.min() > div.max()
            lines.append(f"- {dataset}, {col.replace('fid', 'FID')}: WGAN-GP best {gp.min():.2f} (of {len(gp)} seeds), "
                         f"WGAN-div worst {div.max():.2f} (of {len(div)} seeds): "
                         f"{'ordered as the post says' if ordered else 'not ordered as the post says'}.")
    return ["## WGAN-div post: best vs worst seed", "",
            "WGAN-GP's best run is worse (higher FID) than WGAN-div's worst (the post's own test: no interval; the "
            "claims table above gives the verdict with uncertainty):", ""] + lines + [""] \
        if lines else []


def _grid(title: str, cells: dict[tuple[str, int], str], note: str = "") -> list[str]:
    """A markdown table of rows x step counts from {(row, steps): text}."""
    rows = list(dict.fromkeys(r for r, _ in cells))
    steps = sorted({k for _, k in cells})
    out = [f"**{title}**" + (f" — {note}" if note else ""), "", "| | " + " | ".join(str(k) for k in steps) + " |",
           "|---|" + "---|" * len(steps)]
    out += ["| " + r + " | " + " | ".join(cells.get((r, k), "—") for k in steps) + " |" for r in rows]
    return out + [""]


def _ordering(label: str, better: dict[int, float], worse: dict[int, float]) -> str:
    common = sorted(set(better) & set(worse))
    if not common:
        return ""
    fails = [k for k in common if not better[k] < worse[k]]
    verdict = "ordered so" if not fails else f"not ordered so at {', '.join(map(str, fails))}"
    return f"- {label} at every step count measured ({', '.join(map(str, common))}): {verdict} " \
           "(no uncertainty: the verdicts are in the claims table)."


def _row(table: dict[tuple[str, int], float], name: str) -> dict[int, float]:
    """One row of a {(row, steps): value} table, keyed by steps."""
    return {k: v for (r, k), v in table.items() if r == name}


def diffusion_sections(params) -> list[str]:
    """The steps table (FID against S per sampler) and the NLL table (bits/dim against K per reverse
    variance) of every diffusion run's first seed, beside the papers' CIFAR-10 tables, with the
    orderings those papers claim checked on the measured numbers."""
    from genbench.references import (ANALYTIC_DPM_TABLE1_CIFAR10_NLL, ANALYTIC_DPM_TABLE2_CIFAR10_FID,
                                     DDIM_TABLE1_CIFAR10_FID)

    md: list[str] = []
    for run in params.runs:
        path = metrics_path(run, params.seeds[0])
        if not path.exists():
            continue
        m = read_json(path)
        steps_cells = {name: v for name, v in m.get("variants", {}).items() if v["sample"].get("table") == "steps"}
        nll = m.get("nll_table") or {}
        if not steps_cells and not nll:
            continue
        md += [f"## Diffusion studies: {job_name(run, params.seeds[0])}", ""]
        for extractor in dict.fromkeys(e for v in steps_cells.values() for e in v["scores"]):
            fid, cells, n_gen, label = {}, {}, set(), extractor
            for v in steps_cells.values():
                sc = v["scores"].get(extractor)
                if sc is None:
                    continue
                key = (v["sample"]["sampler"], int(v["sample"]["steps"]))
                fid[key] = sc["fid"]
                cells[key] = f"{sc['fid']:.2f}"
                n_gen.add(sc["protocol"]["n_gen"])
                label = sc["protocol"]["extractor"]
            md += _grid(f"FID ({label}) against sampling steps S", cells,
                        f"{'/'.join(map(str, sorted(n_gen)))} generated samples per cell vs the "
                        f"{params.eval.reference_split} split")
            md += [line for line in (
                _ordering(f"DDIM (eta = 0) has a lower FID ({label}) than eta = 1 (Song et al. 2021, Table 1)",
                          _row(fid, "ddim-eta0"), _row(fid, "ddim-eta1")),
                _ordering(f"Analytic-DDIM has a lower FID ({label}) than DDIM (Bao et al. 2022, Table 2)",
                          _row(fid, "analytic-ddim"), _row(fid, "ddim-eta0")),
                _ordering(f"SN-DDIM has a lower FID ({label}) than Analytic-DDIM (Bao et al. 2022b)",
                          _row(fid, "sn-ddim"), _row(fid, "analytic-ddim"))) if line] + [""]
        if nll:
            cells, bpd = {}, {}
            for name, v in nll.items():
                kind, k = name.rsplit("_K", 1)
                bpd[(kind, int(k))] = v["bits_per_dim"]
                cells[(kind, int(k))] = f"{v['bits_per_dim']:.3f} ± {v['stderr']:.3f}"
            n = next(iter(nll.values()))["n"]
            md += _grid("NLL bound (bits/dim) against the number of steps K", cells,
                        f"{n} {params.eval.reference_split} images, discretized decoder, even sub-sequence")
            md += [line for line in (
                _ordering("Analytic-DDPM's bound is lower than DDPM's with sigma^2 = beta (Bao et al. 2022, Table 1)",
                          _row(bpd, "analytic-ddpm"), _row(bpd, "ddpm-beta")),
                _ordering("Analytic-DDPM's bound is lower than DDPM's with sigma^2 = beta~ (Bao et al. 2022, Table 1)",
                          _row(bpd, "analytic-ddpm"), _row(bpd, "ddpm-beta-tilde")),
                _ordering("NPR-DDPM's bound is lower than Analytic-DDPM's (Bao et al. 2022b)",
                          _row(bpd, "npr-ddpm"), _row(bpd, "analytic-ddpm"))) if line] + [""]
        skip = {name: v for name, v in m.get("variants", {}).items() if v["sample"].get("table") == "skip"}
        if skip:
            md += ["**Skip-Tuning** (DDIM eta = 0, 10 steps; innermost skip scaled by rho, linear to 1 at the top):", ""]
            for name, v in skip.items():
                md.append(f"- rho = {v['sample']['rho_bottom']:g}: " + ", ".join(
                    f"FID ({sc['protocol']['extractor']}) {sc['fid']:.2f}" for sc in v["scores"].values()))
            md.append("")
    if md:
        md += ["Published CIFAR-10 tables (32x32, models trained for days on GPUs; the orderings, not the values, "
               "are what transfers):", ""]
        for table in (DDIM_TABLE1_CIFAR10_FID, ANALYTIC_DPM_TABLE2_CIFAR10_FID, ANALYTIC_DPM_TABLE1_CIFAR10_NLL):
            md += _grid(table["source"], {(r, k): f"{v:g}" for r, row in table["rows"].items() for k, v in row.items()})
    return md


def _markdown_table(df: pd.DataFrame) -> str:
    metric_cols = [c for c in df.columns
                   if c.startswith(("fid[", "kid_mean[", "precision[", "recall[", "bpd[", "nll_nats[", "kl_nats[",
                                    "modes covered", "high-quality fraction"))
                   and not c.endswith("_std")]
    header = ["run", "model", "seeds"] + [c.replace("kid_mean", "KID").replace("fid", "FID") for c in metric_cols] + \
             ["params", "steps", "train time (s)", "train img/s", "sample img/s", "status", "published reference",
              "measured / published"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in df.to_dict("records"):
        cells = [r["run"], r["model"], str(r["seeds"])]
        for c in metric_cols:
            digits = 4 if c.startswith(("kid", "bpd")) else 3 if c.startswith(
                ("precision", "recall", "nll", "kl", "high-quality")) else 1 if c.startswith("modes") else 2
            cells.append(_fmt(r.get(c), r.get(f"{c}_std"), digits))
        cells += [_fmt(r.get("parameters"), None, 0), str(r.get("length") or "—"), _fmt(r.get("train_time_s"), None, 0),
                  _fmt(r.get("train_images_per_s"), None, 0), _fmt(r.get("sample_images_per_s"), None, 0),
                  r["status"], r["reference"] or "—", _fmt(r.get("ratio"), None, 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_curves(params, out_dir: Path) -> dict[str, Path]:
    """stats.jsonl of each job -> reports/curves/<job>.csv (step, loss, ...). A job whose run directory
    is not in this workspace (a clone holds the committed metrics, not the DVC outputs) keeps the CSV
    of the last report; CSVs of jobs no longer in params.yaml are removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for run, seed in generative_jobs(params):
        stats = run_dir(run, seed) / "stats.jsonl"
        if not stats.exists():
            kept = out_dir / f"{job_name(run, seed)}.csv"
            if kept.exists():
                paths[job_name(run, seed)] = kept
            continue
        rows = [json.loads(line) for line in stats.read_text().splitlines() if line.strip()]
        df = pd.DataFrame([r for r in rows if "loss" in r])
        val_rows = [{"step": r["step"], "val_loss": r["val_loss"]} for r in rows if "val_loss" in r]
        if val_rows and "step" in df:  # the validation loss (checkpoint selection) as a column
            df = df.merge(pd.DataFrame(val_rows), on="step", how="outer").sort_values("step")
        path = out_dir / f"{job_name(run, seed)}.csv"
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
        paths[job_name(run, seed)] = path
    for stale in set(out_dir.glob("*.csv")) - set(paths.values()):
        stale.unlink()
    return paths


def sample_figures(run: str, seed: int, figures: Path) -> tuple[list[tuple[str, Path]], bool]:
    """[(figure name, file under figures/)] of a job, copied from samples/<job>/*.png; when the job's
    samples are not in this workspace, the files of the last report are kept. Returns (figures, kept), the
    figures in name order either way (a page lists them alike in every workspace)."""
    job = job_name(run, seed)
    sources = list(samples_dir(run, seed).glob("*.png"))
    if not sources:
        kept = [*figures.glob(f"{job}.png"), *figures.glob(f"{job}-*.png")]
        return sorted(((p.stem[len(job) + 1:] or "grid", p) for p in kept), key=lambda item: item[0]), bool(kept)
    out = []
    for figure in sources:
        dest = figures / f"{job}{'' if figure.stem == 'grid' else '-' + figure.stem}.png"
        shutil.copyfile(figure, dest)
        out.append((figure.stem, dest))
    return sorted(out, key=lambda item: item[0]), False


def plot_curves(curves: dict[str, Path], path: Path) -> None:
    """One panel per job (losses of different families have different units), training loss and,
    where recorded, the validation loss used for checkpoint selection."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, max(1, len(curves)))
    rows = max(1, math.ceil(len(curves) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
    for ax, (job, csv) in zip(axes.flat, curves.items()):
        try:
            df = pd.read_csv(csv)
        except pd.errors.EmptyDataError:  # a run that diverged before its first log row
            df = pd.DataFrame()
            ax.text(0.5, 0.5, "no log rows\n(stopped before the first)", ha="center", va="center", fontsize=7,
                    transform=ax.transAxes)
        if "loss" in df:
            train = df.dropna(subset=["loss"])
            ax.plot(train["step"], train["loss"], lw=1, label="train")
        if "val_loss" in df:  # per-example validation loss: its own units, its own axis
            val = df.dropna(subset=["val_loss"])
            twin = ax.twinx()
            twin.plot(val["step"], val["val_loss"], "o-", ms=3, lw=1, color="tab:orange")
            twin.set_ylabel("val loss / example", fontsize=7, color="tab:orange")
            twin.tick_params(labelsize=7)
        ax.set_title(job, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylabel("training loss", fontsize=7)
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    # fixed margins and gaps in inches instead of tight_layout, which measured every tick label of every panel:
    # 36 of the report's ~80 s with the cpu profile's 120 panels, for a grid whose panels are all alike
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.55 / width, bottom=0.45 / height, top=1 - 0.3 / height,
                        wspace=1.25 / ((width - 1.3 - 1.25 * (cols - 1)) / cols),
                        hspace=0.75 / ((height - 0.75 - 0.75 * (rows - 1)) / rows))
    save_png(fig, path, tight=False)


def suite_time(params) -> str:
    """The stages' own work summed over the profile's jobs, from their metrics files: training,
    sampling (every sampler of the job) and evaluation. Process start-ups and the pipeline tool's
    bookkeeping come on top (scripts/stage_times.py measures them)."""
    totals, jobs = {"train": 0.0, "sample": 0.0, "evaluate": 0.0}, 0
    for run, seed in params.jobs():
        path = metrics_path(run, seed)
        if not path.is_file():
            continue
        m = read_json(path)
        if m.get("status") != "completed":
            continue
        jobs += 1
        if m.get("kind") == "sts":  # a sentence-embedding job: one flow per pooling, then its score stage
            totals["train"] += sum(f["train_time_s"] or 0.0 for f in m["flows"].values())
            totals["evaluate"] += m["score_time_s"]
            continue
        if m.get("kind") == "representation":  # genbench.representation: one training, then the probes
            totals["train"] += m["train"]["train_time_s"]
            totals["evaluate"] += m["score_time_s"]
            continue
        if "trials" in m:  # a supervised job: every learning-rate trial's training, then its score stage
            totals["train"] += sum(t["train_time_s"] or 0.0 for t in m["trials"])
            totals["evaluate"] += m["score_time_s"]
            continue
        totals["train"] += m["train"]["train_time_s"]
        totals["sample"] += m["sample"]["n"] / m["sample"]["images_per_s"]
        totals["sample"] += sum(v["sample"].get("seconds", 0.0) for v in m.get("variants", {}).values())
        totals["evaluate"] += m["eval_time_s"]
    minutes = {k: v / 60 for k, v in totals.items()}
    return (f"Time: {jobs} jobs took {sum(minutes.values()):.0f} min of stage work on the machine that ran them "
            f"(training {minutes['train']:.0f}, sampling {minutes['sample']:.0f}, evaluation {minutes['evaluate']:.0f} min), "
            "excluding data preparation, the feature extractors and reference features.")


def stale_notice(params, stale: dict[str, Any]) -> list[str]:
    """A warning over the tables for jobs whose committed figures await a re-run, or that have not run yet
    (pipelines/stale.yaml)."""
    jobs = {job: entry for job, entry in stale.items() if job in {job_name(*j) for j in params.jobs()}}
    if not jobs:
        return []
    return ["**Stale or pending figures** (made by code that has changed since, or not made yet; `dvc repro` "
            "runs them):", ""] + \
        [f"- `{job}`: {' '.join(entry['reason'].split())}" for job, entry in jobs.items()] + [""]


def build(params, out_dir: Path | None = None) -> pd.DataFrame:
    """Write the report to `out_dir` as a whole: it is built in a sibling folder (a copy of the last
    report, whose figures are kept for jobs whose outputs are not in this workspace) and swapped in only
    when complete, so a failure or a kill leaves the previous report as it was."""
    out_dir = Path(out_dir or params.report.dir)
    staging, previous = out_dir.with_name(f".{out_dir.name}.next"), out_dir.with_name(f".{out_dir.name}.old")
    if previous.exists() and not out_dir.exists():  # killed between the two renames of a swap
        previous.rename(out_dir)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)
    if out_dir.exists():
        shutil.copytree(out_dir, staging, ignore=shutil.ignore_patterns(".*"))
    try:
        table = _build(params, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out_dir.exists():
        out_dir.rename(previous)
    staging.rename(out_dir)
    shutil.rmtree(previous, ignore_errors=True)
    return table


def _build(params, out_dir: Path) -> pd.DataFrame:
    from genbench.resolve import stale_jobs

    stale = stale_jobs()
    rows = collect(params, set(stale))
    table = aggregate(rows)
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    curves = write_curves(params, out_dir / "curves")
    first_seed_jobs = {job_name(run, params.seeds[0]) for run in params.runs}  # repeat seeds come after
    plot_curves({job: path for job, path in curves.items() if job in first_seed_jobs}, figures / "curves.png")

    md = ["# genbench leaderboard", "",
          f"Profile `{params.profile}`; seeds {params.seeds} (+ {params.repeat.seeds} for "
          f"{len(params.repeat.runs)} runs that vary from seed to seed: mean ± std); FID/KID/precision/recall against the "
          f"`{params.eval.reference_split}` split; checkpoints selected on the validation split (image GANs: the last; 2-D GANs: most modes covered, then "
          "high-quality fraction, on fresh samples); 2-D runs train until their validation figure stops improving "
          "(`steps` column: `curve`) or reach their cap (`cap`). "
          "Rows `run [sampler]` score the same networks sampled otherwise (hubness prior, latent MCMC). "
          "Each FID column names its feature extractor: numbers from different extractors are never comparable. "
          "bits/dim use one convention (8-bit data, 256 bins; see genbench/metrics/likelihood.py). "
          "Generated by `genbench report` from metrics/*.json: do not edit by hand.", "",
          (time_line := suite_time(params)), ""] + (notice := stale_notice(params, stale))
    for dataset, group in table.groupby("dataset", sort=False):
        group = group.dropna(axis=1, how="all")
        md += [f"## {dataset}", "", _markdown_table(group), ""]
    site_sections = []
    # the scored families' sections: (sections, csv name, figure, caption, whether the figure applies)
    for sections, name, plot, caption, plotted in (
            (accuracy_sections, "accuracy", plot_accuracy, "test accuracy per objective and dataset, mean ± std over seeds",
             lambda rows: any(r.get("kind") == "classification" for r in rows)),
            (sts_sections, "sts", plot_sts, "STS-B test Spearman per pooling and method, 95 % bootstrap intervals", bool),
            (catvae_sections, "discrete", plot_catvae, "categorical VAE: -ELBO per estimator; gradient bias and variance "
             "against the temperature", lambda rows: any(r["table"] == "bound" for r in rows)),
            (codebook_sections, "codebook", plot_codebook, "VQ-VAE and FSQ: codebook usage and reconstruction error",
             bool),
            (rate_distortion_sections, "rate_distortion", plot_rate_distortion, "the VAE's beta sweep: distortion "
             "against rate, and active units against beta", bool),
            (representation_sections, "representation", plot_representation, "linear and MLP probe accuracy of "
             "the frozen features per objective", bool),
            (theory_sections, "theory", plot_theory, "theory checks: variance estimators against n, hubness against "
             "dimension, gradient descent's distance to the plain and the modified flow against the learning rate", bool)):
        section_md, section_rows = sections(params)
        figure = None
        if plotted(section_rows):
            plot(section_rows, figures / f"{name}.png")
            section_md += [f"![{caption}](figures/{name}.png)", ""]
            figure = f"figures/{name}.png"
        md += section_md
        site_sections.append(Section(name, section_md, section_rows, figure, caption))
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            pd.DataFrame(section_rows).to_csv(tmp, index=False, float_format="%.6g")
    from genbench.claims import claims_table

    # a listed job with a metrics file has stale figures; one without has not run yet (its run's seeds pending)
    listed = [job.rsplit("-s", 1) for job in stale]
    stale_runs = {run for run, seed in listed if metrics_path(run, int(seed)).is_file()}
    pending_runs = {run for run, _ in listed} - stale_runs
    claims_md, claim_rows = claims_table(params, stale_runs, pending_runs)
    md += claims_md
    with atomic_path(out_dir / "claims.csv") as tmp:
        pd.DataFrame(claim_rows).to_csv(tmp, index=False)
    claim = wgan_div_claim(rows)
    md += claim
    studies = diffusion_sections(params)
    md += studies
    seed = params.seeds[0]  # the repeat seeds' figures stay in samples/<job>/
    # grid.png (samples), grid-<sampler>.png, temperatures.png (Glow), density.png / scatter.png (2-D
    # toys), reconstructions.png (O-GAN)
    job_figures = {run: sample_figures(run, seed, figures) for run in dict.fromkeys(r for r, _ in generative_jobs(params))}
    kept = [job_name(run, seed) for run, (_, was_kept) in job_figures.items() if was_kept]
    md += ["## Figures", "", "(first seed of each run)" + (
        f"; {len(kept)} runs' figures and curves are kept from the previous report, their outputs not being in "
        "the workspace that built this one" if kept else ""), ""]
    for run, (items, _) in job_figures.items():
        for name, dest in items:
            caption = f"{job_name(run, seed)} ({name})"
            md.append(f"![{caption}](figures/{dest.name})")
    md.append("")
    listed = {dest for items, _ in job_figures.values() for _, dest in items} | \
        {figures / f"{name}.png" for name in ("curves", "accuracy", "sts", "discrete", "codebook", "rate_distortion", "representation", "theory")}
    for stale in set(figures.glob("*.png")) - listed:
        stale.unlink()
    with atomic_path(out_dir / "leaderboard.md") as tmp:
        tmp.write_text("\n".join(md) + "\n")
    with atomic_path(out_dir / "leaderboard.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    # the static site: reports/index.html (the overview) and reports/site/ (genbench/site.py)
    write_site(SiteInputs(params, table, rows, site_sections, claim_rows, time_line, notice, curves,
                          {run: items for run, (items, _) in job_figures.items()}, studies, claim), out_dir)
    return table


# --------------------------------------------------------------------------------------------------
# The accuracy experiments (supervised runs): one table per dataset, one for the multi-label task
# --------------------------------------------------------------------------------------------------
# EXACT paper, Table 2 (test accuracy %, M3 CNN, 150 epochs, augmentation, SGD): what ours differ from is stated
PUBLISHED_ACCURACY = {("mnist", "cross-entropy"): 99.64, ("mnist", "hinge"): 99.68, ("mnist", "exact"): 99.67}
PUBLISHED_NOTE = ("published: Karpukhin et al. 2022, Table 2, MNIST with SGD (M3 CNN, 150 epochs, translation and "
                  "rotation augmentation, weight decay, 5 seeds); here a 2-conv CNN of width 16, Adam, ~1 epoch "
                  "(1000 steps of 64), no augmentation: the ordering, not the level, is what compares")


def label_panel(ax, title: str, xlabel: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)


def save_png(fig, path: Path, tight: bool = True) -> None:
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot_accuracy(rows: list[dict[str, Any]], path: Path) -> None:
    """Test accuracy of each objective, mean ± std over seeds, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    single = [r for r in rows if r.get("kind") == "classification"]
    datasets = list(dict.fromkeys(r["dataset"] for r in single))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 2.8), squeeze=False)
    for ax, dataset in zip(axes.flat, datasets):
        group = sorted((r for r in single if r["dataset"] == dataset), key=lambda r: r["accuracy"])
        std = [0.0 if math.isnan(r["accuracy_std"]) else 100 * r["accuracy_std"] for r in group]
        ax.barh([r["objective"] for r in group], [100 * r["accuracy"] for r in group], xerr=std, color="tab:blue",
                capsize=3)
        low = min(100 * r["accuracy"] - s for r, s in zip(group, std))
        ax.set_xlim(max(0.0, low - 2 * (100 - low) - 0.5), 100)
        label_panel(ax, f"{dataset} (n = {group[0]['n_test']}, {group[0]['seeds']} seeds)", "test accuracy %")
    save_png(fig, path)


def accuracy_sections(params) -> tuple[list[str], list[dict[str, Any]]]:
    """Markdown sections and CSV rows (one per run) of the supervised runs' metrics."""
    from genbench.resolve import task_module

    runs: dict[str, list[dict[str, Any]]] = {}
    for run, seed in params.jobs():
        path = metrics_path(run, seed)
        if task_module(params, run) == "genbench.score" and path.is_file():
            runs.setdefault(run, []).append(read_json(path))
    rows = []
    for run, ms in runs.items():
        done = [m for m in ms if m.get("status") == "completed"]
        if not done:
            rows.append({"run": run, "dataset": params.run(run).dataset, "status": "diverged", "seeds": len(ms)})
            continue
        m0 = done[0]
        row: dict[str, Any] = {"run": run, "dataset": m0["dataset"], "kind": m0["kind"], "objective": m0["objective"],
                               "status": "completed" if len(done) == len(ms) else f"{len(ms) - len(done)} seed(s) diverged",
                               "seeds": len(done), "n_test": m0["test"]["n"], "network": m0["network"],
                               "parameters": m0["parameters"],
                               "lr_chosen": " / ".join(f"{m['selected_lr']:g}" for m in done),
                               "train_time_s": sum(sum(t["train_time_s"] or 0 for t in m["trials"]) for m in done)}
        keys = ("accuracy", "cross_entropy", "ece") if m0["kind"] == "classification" else \
            ("micro_f1", "macro_f1", "exact_match", "hamming_loss")
        for key in keys:
            values = pd.Series([m["test"][key] for m in done], dtype=float)
            row[key] = float(values.mean())
            row[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        row["published_accuracy"] = PUBLISHED_ACCURACY.get((m0["dataset"], m0["objective"]))
        rows.append(row)
    if not rows:
        return [], rows
    md = ["## Training for accuracy", "",
          "Every objective trains the same network with the same steps and batch; each tries the same learning rates "
          "and keeps the one whose checkpoint has the lowest validation error; test figures are mean ± std over "
          "seeds. Cross-entropy and calibration (ECE, 15 bins) use each objective's own predictive distribution: "
          "softmax (cross-entropy, Gumbel expected accuracy, and hinge, which has none of its own), the Gaussian "
          "or logistic argmax-of-noise layer, and for EXACT the Gaussian one at its final sigma. "
          + PUBLISHED_NOTE + ".", ""]
    pct = lambda r, k: _fmt(100 * r[k], 100 * r[f"{k}_std"], 2)  # noqa: E731
    num = lambda r, k: _fmt(r[k], r[f"{k}_std"], 3)  # noqa: E731
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        single = [r for r in rows if r["dataset"] == dataset and r.get("kind") == "classification"]
        multi = [r for r in rows if r["dataset"] == dataset and r.get("kind") == "multilabel"]
        if single:
            md += [f"### {dataset}: single-label", "",
                   "| objective | run | test accuracy % | test cross-entropy (nats) | ECE | published % | seeds | n | "
                   "learning rate chosen | training (all trials) |", "|---|---|---|---|---|---|---|---|---|---|"]
            for r in sorted(single, key=lambda r: -r["accuracy"]):
                pub = "—" if r["published_accuracy"] is None else f"{r['published_accuracy']:.2f}"
                md.append(f"| {r['objective']} | {r['run']} | {pct(r, 'accuracy')} | {num(r, 'cross_entropy')} | "
                          f"{num(r, 'ece')} | {pub} | {r['seeds']} | {r['n_test']} | {r['lr_chosen']} | "
                          f"{r['train_time_s'] / 60:.1f} min |")
            md.append("")
        if multi:
            md += [f"### {dataset}: multi-label composites (1-4 distinct digits on a 2 x 2 canvas)", "",
                   "| loss | run | micro F1 | macro F1 | exact match | Hamming loss | seeds | n | learning rate chosen |",
                   "|---|---|---|---|---|---|---|---|---|"]
            for r in multi:
                md.append(f"| {r['objective']} | {r['run']} | {num(r, 'micro_f1')} | {num(r, 'macro_f1')} | "
                          f"{num(r, 'exact_match')} | {num(r, 'hamming_loss')} | {r['seeds']} | {r['n_test']} | "
                          f"{r['lr_chosen']} |")
            md.append("")
    return md, rows


# --------------------------------------------------------------------------------------------------
# Sentence embeddings on STS-B: BERT-whitening against BERT-flow
# --------------------------------------------------------------------------------------------------
def _sts_method(r: dict[str, Any], dim: int) -> str:
    name = r["method"] + ("" if r["k"] == dim else f"-{r['k']}")
    return name + ("" if r["fit"] in (None, "all") else " (train only)")


def sts_sections(params) -> tuple[list[str], list[dict[str, Any]]]:
    """One table per sentence-embedding run: pooling x method rows, dev and test Spearman with their 95 %
    bootstrap intervals (the flow: mean ± std over its seeds, which change its initialisation and held-out
    sentences; encoding and whitening do not depend on the seed)."""
    from genbench.claims import PUBLISHED_STS, _metrics

    md, rows = [], []
    for run, spec in params.runs.items():
        if spec.model != "bertflow":
            continue
        ms = [m for m in _metrics(params, run) if m.get("kind") == "sts"]
        if not ms:
            continue
        m0, dim = ms[0], ms[0]["dim"]
        for r in m0["rows"]:
            same = [next(x for x in m["rows"] if (x["pooling"], x["method"], x["fit"], x["k"]) ==
                         (r["pooling"], r["method"], r["fit"], r["k"])) for m in ms]
            row = {"run": run, "encoder": m0["encoder"], "pooling": r["pooling"], "method": _sts_method(r, dim),
                   "fit": r["fit"], "k": r["k"], "seeds": len(ms) if r["method"] == "flow" else 1}
            for split in ("dev", "test"):
                values = pd.Series([x[split]["spearman"] for x in same], dtype=float)
                row[f"{split}_spearman"] = float(values.mean())
                row[f"{split}_spearman_seed_std"] = float(values.std(ddof=1)) if r["method"] == "flow" and len(values) > 1 \
                    else float("nan")
                row[f"{split}_spearman_ci95_lo"], row[f"{split}_spearman_ci95_hi"] = r[split]["spearman_ci95"]
                row[f"{split}_pearson"] = float(pd.Series([x[split]["pearson"] for x in same]).mean())
                row[f"{split}_n"] = r[split]["n"]
            key = row["method"] if r["fit"] in (None, "all") else None
            row["published_test"] = PUBLISHED_STS.get(key) if r["pooling"] == "first-last-avg" else None
            rows.append(row)
        enc = m0["encoding"]
        md += [f"## Sentence embeddings on STS-B: BERT-whitening vs BERT-flow ({run})", "",
               f"Encoder `{m0['encoder']}` ({enc['layers']} layers, {dim}-d, {enc['encoder_parameters'] / 1e6:.1f} M "
               f"parameters), frozen; {enc['sentences']} distinct sentences. Each pair is scored by the cosine of its "
               "two vectors; Spearman x 100 against the gold scores, [95 % bootstrap interval over pairs]. Whitening "
               f"(Su et al. 2021) and the flow (Li et al. 2020) are fitted on the unlabeled sentences of train + dev + "
               f"test ({m0['fitted_sentences']['all']}, the papers' setting) unless marked train only "
               f"({m0['fitted_sentences']['train']}); `-k` keeps the k largest-variance directions. The flow's figures "
               f"are the mean ± std over {len(ms)} seed(s). The papers use BERT-base; all-MiniLM-L6-v2 is fine-tuned "
               "contrastively for sentence similarity (unlike raw BERT), so its raw vectors are already "
               "isotropic-ish and the size, even the sign, of the effect may differ from the paper's. `first-last-avg` "
               "averages the first transformer layer with the last; `embed-last-avg` the embedding layer's output "
               "with the last (the papers' code differ on which \"first\" they mean). Published: Su et al. 2021, "
               "Table 1, BERT-base first-last-avg.", "",
               "| pooling | method | dev Spearman | test Spearman | test Pearson | published (test) |",
               "|---|---|---|---|---|---|"]
        for row in rows:
            if row["run"] != run:
                continue
            cells = []
            for split in ("dev", "test"):
                spread = row[f"{split}_spearman_seed_std"]
                value = f"{100 * row[f'{split}_spearman']:.2f}" + ("" if math.isnan(spread) else f" ± {100 * spread:.2f}")
                cells.append(f"{value} [{100 * row[f'{split}_spearman_ci95_lo']:.1f}, "
                             f"{100 * row[f'{split}_spearman_ci95_hi']:.1f}]")
            pub = "—" if row["published_test"] is None else f"{row['published_test']:.2f}"
            md.append(f"| {row['pooling']} | {row['method']} | {cells[0]} | {cells[1]} | "
                      f"{100 * row['test_pearson']:.2f} | {pub} |")
        flows = m0["flows"]
        md += ["", "Time: encoding {:.0f} s ({:.0f} sentences/s); whitening fit {:.3f} s; flow training {} "
               "(steps: {}).".format(enc["encode_s"], enc["sentences_per_s"], m0["fitting_s"]["whitening"],
                                     ", ".join(f"{p} {f['train_time_s']:.0f} s" for p, f in flows.items()),
                                     ", ".join(f"{p} {f['steps']}" for p, f in flows.items())), ""]
    return md, rows


def plot_sts(rows: list[dict[str, Any]], path: Path) -> None:
    """Test Spearman of each method, one panel per pooling, with the 95 % bootstrap intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    poolings = list(dict.fromkeys(r["pooling"] for r in rows))
    fig, axes = plt.subplots(1, len(poolings), figsize=(3.6 * len(poolings), 3.2), squeeze=False, sharey=True)
    for ax, pooling in zip(axes.flat, poolings):
        group = [r for r in rows if r["pooling"] == pooling]
        value = [100 * r["test_spearman"] for r in group]
        err = [[v - 100 * r["test_spearman_ci95_lo"] for v, r in zip(value, group)],
               [100 * r["test_spearman_ci95_hi"] - v for v, r in zip(value, group)]]
        colors = ["tab:gray" if r["method"] == "raw" else "tab:orange" if r["method"].startswith("flow") else "tab:blue"
                  for r in group]
        ax.barh([r["method"] for r in group], value, xerr=err, color=colors, capsize=3)
        ax.set_xlim(min(v - e for v, e in zip(value, err[0])) - 3, max(v + e for v, e in zip(value, err[1])) + 1)
        label_panel(ax, pooling, "STS-B test Spearman x 100")
    save_png(fig, path)
