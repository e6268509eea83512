"""The leaderboard as a static site people read, written by the report stage beside leaderboard.md.

reports/index.html              the overview: best run per (family, dataset), the claims with verdict badges,
                                the suite's time and the stale/pending notice, links to every page
reports/site/<dataset>.html     one page per dataset of the generative runs (mnist, toy_ring8, ...): the full
                                table (sortable, filterable, column groups to show or hide), the protocol in a
                                header, its figures (training curves per family, bits/dim beside the published
                                figure, modes covered per GAN objective)
reports/site/<family>.html      one page per scored family (accuracy, sts, discrete, codebook, ...) and one for
                                the diffusion studies (FID / KID against sampling steps, NLL bound against K)
reports/site/runs/<job>.html    one page per job: sample grids, training curve, resolved config, versions
reports/site/figures/*.svg      the site's own figures (matplotlib SVG, fixed hash salt, no date)

Built only from what the report stage already reads (metrics/*.json, the kept curves and figures,
pipelines/resolved/train/<job>.json): the same inputs give byte-identical files. Jinja2 templates and the
small sorting script live in genbench/templates/ (package data); nothing is fetched at view time.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup, escape

from genbench.io import read_json
from genbench.layout import job_name, metrics_path

TEMPLATES = Path(__file__).parent / "templates"
RUN_CURVE_VERSION = 1  # bump when RunCurves draws differently: the kept per-job curves are then redrawn
SVG_RC = {"svg.hashsalt": "genbench-site", "svg.fonttype": "none"}  # fixed ids; text as text (small files)

FAMILIES = {"vae": "VAE", "fvae": "VAE", "nice": "flow", "realnvp": "flow", "glow": "flow", "iresnet": "flow",
            "tarflow": "flow", "sgan": "GAN", "wgan_gp": "GAN", "wgan_div": "GAN", "gan_qp": "GAN", "ogan": "GAN",
            "meg": "GAN", "ddpm": "diffusion", "igebm": "EBM", "catvae": "categorical VAE", "glann": "GLANN",
            "codebook": "codebook", "dim": "representation"}
LIKELIHOOD_FAMILIES = {"VAE", "flow", "categorical VAE"}
SECTION_TITLES = {"accuracy": "Training for accuracy", "sts": "Sentence embeddings (STS-B)",
                  "discrete": "Categorical VAE", "codebook": "Codebooks: VQ-VAE vs FSQ",
                  "rate_distortion": "Rate and distortion (the VAE's beta sweep)",
                  "representation": "Representations (Deep InfoMax)", "theory": "Theory checks"}


@dataclass
class Section:
    """One scored family's report section: its markdown, its CSV rows, its figure (figures/<name>.png)."""
    name: str
    md: list[str]
    rows: list[dict[str, Any]]
    figure: str | None = None
    caption: str = ""


@dataclass
class SiteInputs:
    params: Any
    table: pd.DataFrame                      # aggregate(): one row per run
    rows: list[dict[str, Any]]               # collect(): one row per (run, seed)
    sections: list[Section]
    claim_rows: list[dict[str, Any]]
    suite_time: str
    notice: list[str]                        # stale_notice() lines
    curves: dict[str, Path]                  # job -> reports/curves/<job>.csv
    job_figures: dict[str, list[tuple[str, Path]]]  # run -> [(name, figures/<file>)], first seed
    diffusion_md: list[str] = field(default_factory=list)
    wgan_div_md: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# tables: columns in groups (shown or hidden by the page's column chooser), cells with a sort key
# --------------------------------------------------------------------------------------------------
@dataclass
class Table:
    id: str
    columns: list[dict[str, str]]            # {label, sub, group, title}
    groups: list[dict[str, Any]]             # {id, label, shown}
    rows: list[list[dict[str, Any]]]         # {text, sort, href}


def _cell(text: Any, sort: Any = None, href: str | None = None) -> dict[str, Any]:
    if isinstance(sort, float) and math.isnan(sort):
        sort = None
    return {"text": "—" if text in (None, "") else str(text), "sort": "" if sort is None else repr(float(sort))
            if isinstance(sort, (int, float)) else str(sort), "href": href}


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _fmt(mean: Any, std: Any = None, digits: int = 2) -> str:
    m, s = _num(mean), _num(std)
    if m is None:
        return "—"
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "g"


def _digits(col: str) -> int:
    return 4 if col.startswith(("kid", "bpd")) else 3 if col.startswith(
        ("precision", "recall", "nll", "kl", "high-quality")) else 1 if col.startswith("modes") else 2


def run_page(run: str, seed: int, pages: set[str], prefix: str = "runs/") -> str | None:
    job = job_name(run.split(" [")[0], seed)
    return f"{prefix}{job}.html" if job in pages else None


def leaderboard_table(group: pd.DataFrame, table_id: str, seed: int, pages: set[str]) -> Table:
    """The dataset's runs: every metric column, in groups (one per feature extractor, likelihood, 2-D modes,
    training, reference); the protocol columns (n_gen) go to the page header instead."""
    metric = [c for c in group.columns if not c.endswith("_std") and c.startswith(
        ("fid[", "kid_mean[", "precision[", "recall[", "bpd[", "nll_nats[", "kl_nats[", "modes covered",
         "high-quality fraction"))]
    columns = [{"label": "run", "sub": "", "group": "id", "title": "run (links to its first seed's page)"},
               {"label": "model", "sub": "", "group": "id", "title": ""},
               {"label": "seeds", "sub": "", "group": "id", "title": "seeds averaged (mean ± std)"}]
    groups: dict[str, dict[str, Any]] = {"id": {"id": "id", "label": "run", "shown": True}}
    extractors = []
    for c in metric:
        if "[" in c and c.split("[")[0] in ("fid", "kid_mean", "precision", "recall"):
            name, extractor = c.split("[", 1)
            extractor = extractor.rstrip("]")
            if extractor not in extractors:
                extractors.append(extractor)
            gid = "x-" + _slug(extractor)
            groups.setdefault(gid, {"id": gid, "label": f"scores [{extractor}]", "shown": len(extractors) == 1})
            label = {"fid": "FID", "kid_mean": "KID"}.get(name, name)
            columns.append({"label": label, "sub": extractor, "group": gid, "title": f"{label}[{extractor}]"})
        elif c.startswith(("modes", "high-quality")):
            groups.setdefault("modes", {"id": "modes", "label": "2-D modes", "shown": True})
            columns.append({"label": c, "sub": "", "group": "modes", "title": c})
        else:
            groups.setdefault("lik", {"id": "lik", "label": "likelihood", "shown": True})
            name, kind = c.split("[", 1)
            label = {"bpd": "bits/dim", "nll_nats": "NLL nats", "kl_nats": "KL nats"}[name]
            columns.append({"label": label, "sub": kind.rstrip("]"), "group": "lik", "title": c})
    groups["train"] = {"id": "train", "label": "training and speed", "shown": False}
    groups["ref"] = {"id": "ref", "label": "status, measured / published", "shown": True}
    groups["reftext"] = {"id": "reftext", "label": "published reference (text)", "shown": False}
    extra = [("params", "train", "parameters"), ("steps", "train", "steps trained, G updates, what ended the run"),
             ("train time (s)", "train", ""), ("train img/s", "train", ""), ("sample img/s", "train", ""),
             ("status", "ref", ""), ("published reference", "reftext", "genbench/references.py"),
             ("measured / published", "ref", "")]
    columns += [{"label": label, "sub": "", "group": g, "title": title} for label, g, title in extra]
    rows = []
    for r in group.to_dict("records"):
        cells = [_cell(r["run"], r["run"], run_page(r["run"], seed, pages)), _cell(r["model"], r["model"]),
                 _cell(r["seeds"], r["seeds"])]
        cells += [_cell(_fmt(r.get(c), r.get(f"{c}_std"), _digits(c)), _num(r.get(c))) for c in metric]
        cells += [_cell(_fmt(r.get("parameters"), None, 0), _num(r.get("parameters"))),
                  _cell(r.get("length") or "—", _num(str(r.get("length") or "").split(" ")[0])),
                  _cell(_fmt(r.get("train_time_s"), None, 0), _num(r.get("train_time_s"))),
                  _cell(_fmt(r.get("train_images_per_s"), None, 0), _num(r.get("train_images_per_s"))),
                  _cell(_fmt(r.get("sample_images_per_s"), None, 0), _num(r.get("sample_images_per_s"))),
                  _cell(r.get("status")), _cell(r.get("reference") or "—"),
                  _cell(_fmt(r.get("ratio"), None, 2), _num(r.get("ratio")))]
        rows.append(cells)
    return Table(table_id, columns, list(groups.values()), rows)


def records_table(records: list[dict[str, Any]], table_id: str, shown: int = 12,
                  link=lambda run: None) -> Table:
    """A CSV's rows as a table: every column, `x_std` folded into `x` as mean ± std; columns after the first
    `shown` start hidden (the column chooser has one box per column here)."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    keys = [k for k in keys if not (k.endswith("_std") and k[:-4] in keys)
            and any(_present(r.get(k)) for r in records)]
    columns, groups = [], []
    for i, k in enumerate(keys):
        gid = f"c{i}"
        columns.append({"label": k, "sub": "", "group": gid, "title": k})
        groups.append({"id": gid, "label": k, "shown": i < shown})
    rows = []
    for r in records:
        cells = []
        for k in keys:
            v = r.get(k)
            if isinstance(v, float):
                std = r.get(f"{k}_std")
                digits = 4 if abs(v) < 10 else 2
                cells.append(_cell(_fmt(v, std, digits), v))
            elif k == "run" and isinstance(v, str):   # the run's first seed's page
                cells.append(_cell(v, v, link(v)))
            else:
                cells.append(_cell(v if _present(v) else None, v if isinstance(v, (int, float)) else None))
        rows.append(cells)
    return Table(table_id, columns, groups, rows)


def _present(v: Any) -> bool:
    return v is not None and v != "" and not (isinstance(v, float) and math.isnan(v))


def markdown_table(lines: list[str], table_id: str) -> Table:
    """A markdown table of the report (header, rule, rows) as a sortable table: numbers sort by value."""
    split = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    head, body = split[0], split[2:]
    columns = [{"label": _plain(h), "sub": "", "group": "all", "title": ""} for h in head]
    rows = [[_cell(_plain(c), _leading_number(_plain(c))) for c in row] for row in body]
    return Table(table_id, columns, [{"id": "all", "label": "all", "shown": True}], rows)


def _plain(text: str) -> str:
    return text.replace("**", "").replace("`", "")


def _leading_number(text: str) -> float | None:
    m = re.match(r"^\s*[-+−]?\d[\d,]*(\.\d+)?(e[-+]?\d+)?", text.replace("−", "-"), re.I)
    return None if m is None else float(m.group(0).replace(",", ""))


def _inline(text: str) -> Markup:
    """Escaped text with the report's inline markdown: `code` and **bold**."""
    out = str(escape(text))
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    return Markup(out)


def blocks(md: list[str], prefix: str, figure_root: str) -> list[dict[str, Any]]:
    """The report's markdown lines as page blocks: headings, paragraphs, lists, sortable tables, images."""
    out: list[dict[str, Any]] = []
    table: list[str] = []
    items: list[str] = []
    for line in md + [""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            out.append({"kind": "table", "table": markdown_table(table, f"{prefix}-t{len(out)}")})
            table = []
        if line.startswith("- "):
            items.append(line[2:])
            continue
        if items:
            out.append({"kind": "ul", "lines": [_inline(i) for i in items]})
            items = []
        if line.startswith("### "):
            out.append({"kind": "h3", "text": _inline(line[4:])})
        elif line.startswith("## "):
            out.append({"kind": "h2", "text": _inline(line[3:])})
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            out.append({"kind": "img", "src": figure_root + src.rstrip(")"), "alt": alt})
        elif line:
            out.append({"kind": "p", "text": _inline(line)})
    return out


# --------------------------------------------------------------------------------------------------
# figures: matplotlib SVG, deterministic
# --------------------------------------------------------------------------------------------------
def _figure(ncols: int = 1, width: float = 4.2, height: float = 3.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes.flat)


def save_svg(fig, path: Path) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with matplotlib.rc_context(SVG_RC):
        fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def plot_steps(m: dict[str, Any], path: Path) -> bool:
    """FID and KID against the sampling steps S, one line per sampler, per feature extractor; KID with
    ± its std over subsets (one seed's FID has no interval)."""
    cells = [v for v in m.get("variants", {}).values() if v["sample"].get("table") == "steps"]
    extractors = list(dict.fromkeys(e for v in cells for e in v["scores"]))
    if not extractors:
        return False
    fig, axes = _figure(2 * len(extractors), 3.6, 2.9)
    for i, extractor in enumerate(extractors):
        label = extractor
        for sampler in dict.fromkeys(v["sample"]["sampler"] for v in cells):
            pts = sorted((int(v["sample"]["steps"]), v["scores"][extractor]) for v in cells
                         if v["sample"]["sampler"] == sampler and extractor in v["scores"])
            if not pts:
                continue
            label = pts[0][1]["protocol"]["extractor"]
            s = [p[0] for p in pts]
            axes[2 * i].plot(s, [p[1]["fid"] for p in pts], "o-", ms=3, lw=1, label=sampler)
            axes[2 * i + 1].errorbar(s, [p[1]["kid_mean"] for p in pts], yerr=[p[1].get("kid_std", 0.0) for p in pts],
                                     fmt="o-", ms=3, lw=1, capsize=2, label=sampler)
        _style(axes[2 * i], f"FID [{label}]", "sampling steps S", "FID")
        _style(axes[2 * i + 1], f"KID [{label}] ± std over subsets", "sampling steps S", "KID")
        for ax in axes[2 * i:2 * i + 2]:
            ax.set_xscale("log")
        axes[2 * i].legend(fontsize=6)
    save_svg(fig, path)
    return True


def plot_nll_table(nll: dict[str, Any], path: Path) -> None:
    """The NLL bound (bits/dim) against the number of steps K per reverse variance, ± its test-set stderr."""
    fig, (ax,) = _figure(1, 5.0, 3.2)
    series: dict[str, list[tuple[int, float, float]]] = {}
    for name, v in nll.items():
        kind, k = name.rsplit("_K", 1)
        series.setdefault(kind, []).append((int(k), v["bits_per_dim"], v["stderr"]))
    for kind, pts in series.items():
        pts.sort()
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], fmt="o-", ms=3, lw=1,
                    capsize=2, label=kind)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _style(ax, f"NLL bound against K (n = {next(iter(nll.values()))['n']})", "steps K", "bits/dim (log scale)")
    ax.legend(fontsize=6)
    save_svg(fig, path)


def plot_bpd_vs_published(group: pd.DataFrame, path: Path) -> bool:
    """Bits/dim of each likelihood model beside the published figure (genbench/references.py), where the
    published setting is comparable."""
    from genbench.references import reference_for

    items = []
    for r in group.to_dict("records"):
        if "[" in r["run"]:
            continue
        ref = reference_for(r["model"], r["dataset"])
        col = ref["metric"] if ref and ref.get("comparable") == "yes" else None
        if col is None or _num(r.get(col)) is None:
            continue
        items.append((r["run"], col, float(r[col]), _num(r.get(f"{col}_std")) or 0.0, float(ref["value"])))
    if not items:
        return False
    fig, (ax,) = _figure(1, max(4.0, 1.0 * len(items) + 1.5), 3.0)
    x = list(range(len(items)))
    ax.bar([i - 0.2 for i in x], [it[2] for it in items], 0.4, yerr=[it[3] for it in items], capsize=3,
           label="measured", color="tab:blue")
    ax.bar([i + 0.2 for i in x], [it[4] for it in items], 0.4, label="published", color="tab:gray")
    ax.set_xticks(x, [f"{it[0]}\n{it[1]}" for it in items], fontsize=7)
    _style(ax, "bits/dim: measured beside published", "", "bits/dim")
    ax.legend(fontsize=7)
    save_svg(fig, path)
    return True


def plot_modes(rows: list[dict[str, Any]], dataset: str, path: Path) -> bool:
    """Modes covered per GAN objective on a 2-D mixture: each seed a dot, the mean a bar, the total a line."""
    gans = [r for r in rows if r.get("dataset") == dataset and r.get("status") == "completed"
            and FAMILIES.get(r.get("model", "")) == "GAN" and "[" not in r["run"] and "modes covered" in r]
    if not gans:
        return False
    models = list(dict.fromkeys(r["model"] for r in gans))
    fig, (ax,) = _figure(1, max(4.0, 0.8 * len(models) + 1.5), 3.0)
    for i, model in enumerate(models):
        vals = [r["modes covered"] for r in gans if r["model"] == model]
        ax.bar(i, sum(vals) / len(vals), 0.6, color="tab:blue", alpha=0.4)
        ax.plot([i] * len(vals), vals, "o", ms=4, color="tab:blue")
    ax.axhline(gans[0]["modes total"], color="k", lw=0.8, ls="--")
    ax.set_xticks(range(len(models)), models, fontsize=7)
    _style(ax, f"{dataset}: modes covered per GAN objective (dots: seeds)", "", "modes covered")
    save_svg(fig, path)
    return True


def _read_curve(csv: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(csv)
    except (pd.errors.EmptyDataError, FileNotFoundError):
        return pd.DataFrame()


def plot_family_curves(curves: dict[str, tuple[str, Path]], path: Path) -> bool:
    """Training loss of every run of a dataset, one panel per family, runs overlaid (a rolling mean over
    5 log rows; losses of different objectives have different units, so compare shapes, not levels)."""
    families: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for job, (family, csv) in curves.items():
        df = _read_curve(csv)
        if "loss" in df:
            families.setdefault(family, []).append((job, df.dropna(subset=["loss"])))
    if not families:
        return False
    fig, axes = _figure(len(families), 3.8, 2.8)
    for ax, (family, items) in zip(axes, families.items()):
        for job, df in items:
            ax.plot(df["step"], df["loss"].rolling(5, min_periods=1).mean(), lw=1, label=job)
        _style(ax, family, "step", "training loss")
        ax.legend(fontsize=5)
    save_svg(fig, path)
    return True


class RunCurves:
    """Each job's training loss (and validation loss on its own axis) drawn on one reused figure with a fixed
    layout: a figure per job would spend most of the report stage's time in matplotlib's set-up and layout."""

    def __init__(self):
        fig, (ax,) = _figure(1, 5.0, 3.0)
        fig.subplots_adjust(left=0.14, right=0.86, bottom=0.16, top=0.9)
        self.fig, self.ax, self.twin = fig, ax, ax.twinx()

    def draw(self, csv: Path, job: str, figures: Path) -> Path | None:
        """figures/run-<job>-<key>.svg, the key a hash of the CSV's bytes, this drawing's version and
        matplotlib's: a file already there (the last report's, same key) is the same drawing and is kept."""
        import hashlib

        import matplotlib

        data = csv.read_bytes() if csv.is_file() else b""
        key = hashlib.sha256(data + f"|{RUN_CURVE_VERSION}|{matplotlib.__version__}".encode()).hexdigest()[:12]
        path = figures / f"run-{job}-{key}.svg"
        if path.is_file():
            return path
        df = _read_curve(csv)
        if "loss" not in df:
            return None
        ax, twin = self.ax, self.twin
        ax.cla()
        twin.cla()
        train = df.dropna(subset=["loss"])
        ax.plot(train["step"], train["loss"], lw=1, label="train")
        _style(ax, job, "step", "training loss")
        twin.set_visible("val_loss" in df)
        if "val_loss" in df:
            val = df.dropna(subset=["val_loss"])
            twin.plot(val["step"], val["val_loss"], "o-", ms=3, lw=1, color="tab:orange")
            twin.set_ylabel("val loss / example", fontsize=7, color="tab:orange")
            twin.tick_params(labelsize=7)
        with matplotlib.rc_context(SVG_RC):
            self.fig.savefig(path, format="svg", metadata={"Date": None})
        return path

    def close(self) -> None:
        import matplotlib.pyplot as plt

        plt.close(self.fig)


# --------------------------------------------------------------------------------------------------
# pages
# --------------------------------------------------------------------------------------------------
def _env():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined)


def verdict_class(verdict: str) -> str:
    v = verdict.lower()
    return "holds" if v.startswith("holds") else "fails" if v.startswith("does not hold") else "open"


def _headline(group: pd.DataFrame, family: str) -> tuple[str, str, float] | None:
    """(column, direction, value) of a (family, dataset) group's headline figure and its best run's row."""
    cols = [c for c in group.columns if not c.endswith("_std")]
    lik = [c for c in cols if c.startswith(("bpd[", "nll_nats["))]
    fid = [c for c in cols if c.startswith("fid[")]
    order = (lik + fid) if family in LIKELIHOOD_FAMILIES else (["modes covered"] + fid + lik)
    for c in order:
        if c in group and group[c].notna().any():
            return c, "max" if c == "modes covered" else "min", 0.0
    return None


def overview_rows(inp: SiteInputs, pages: set[str], datasets: dict[str, str]) -> list[dict[str, Any]]:
    seed = inp.params.seeds[0]
    out = []
    base = inp.table[~inp.table["run"].astype(str).str.contains(r"\[", regex=True)] if not inp.table.empty \
        else inp.table
    if not base.empty:
        base = base.assign(family=[FAMILIES.get(m, m) for m in base["model"]])
        for (family, dataset), group in base.groupby(["family", "dataset"], sort=False):
            head = _headline(group, family)
            row = {"family": family, "dataset": dataset, "page": datasets[dataset], "runs": len(group),
                   "best": None, "best_href": None, "figure": "—", "thumb": None}
            if head:
                col, direction, _ = head
                values = pd.to_numeric(group[col], errors="coerce")
                best = group.loc[values.idxmax() if direction == "max" else values.idxmin()]
                row["best"] = best["run"]
                row["best_href"] = run_page(best["run"], seed, pages, "site/runs/")
                label = col.replace("kid_mean", "KID").replace("fid", "FID").replace("bpd", "bits/dim")
                row["figure"] = f"{label} = {_fmt(best[col], best.get(f'{col}_std'), _digits(col))} " \
                                f"({'higher' if direction == 'max' else 'lower'} is better)"
                thumb = next((p for name, p in inp.job_figures.get(best["run"], []) if name == "grid"), None)
                row["thumb"] = f"figures/{thumb.name}" if thumb else None
            out.append(row)
    for s in inp.sections:
        if not s.rows:
            continue
        out += _section_overview(s)
    return out


def _section_overview(s: Section) -> list[dict[str, Any]]:
    """Overview rows of a scored family: its best row per dataset by its headline figure where it has one."""
    page = f"site/{s.name}.html"
    spec = {"accuracy": ("accuracy", "max", 100, "test accuracy %"), "sts": ("test_spearman", "max", 100,
                                                                              "test Spearman x 100"),
            "discrete": ("neg_elbo_nats", "min", 1, "-ELBO nats")}.get(s.name)
    title = SECTION_TITLES.get(s.name, s.name)
    if spec is None:
        return [{"family": title, "dataset": ", ".join(dict.fromkeys(str(r.get("dataset", "—")) for r in s.rows
                                                                    if r.get("dataset"))) or "—",
                 "page": page, "runs": len(s.rows), "best": None, "best_href": None,
                 "figure": f"{len(s.rows)} rows: see the page", "thumb": None}]
    key, direction, scale, label = spec
    out = []
    for dataset in dict.fromkeys(r.get("dataset", "—") for r in s.rows):
        group = [r for r in s.rows if r.get("dataset", "—") == dataset and _num(r.get(key)) is not None]
        if not group:
            continue
        best = (max if direction == "max" else min)(group, key=lambda r: r[key])
        name = best.get("objective") or best.get("method") or best.get("estimator") or best.get("run")
        out.append({"family": title, "dataset": dataset, "page": page, "runs": len(group),
                    "best": f"{best.get('run')} ({name})" if name != best.get("run") else best.get("run"),
                    "best_href": None, "figure": f"{label} = {_fmt(scale * best[key], None, 2)}", "thumb": None})
    return out


def resolved_config(job: str) -> tuple[str, str] | None:
    """(path, text) of the job's resolved training settings: its train stage's file, a supervised job's fit file."""
    for stage in ("train", "fit"):
        path = Path("pipelines/resolved") / stage / f"{job}.json"
        if path.is_file():
            return path.as_posix(), json.dumps(read_json(path), indent=2, sort_keys=True)
    return None


def _kv(d: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)) for k, v in d.items()]


def write_site(inp: SiteInputs, out_dir: Path) -> list[Path]:
    """Write index.html and site/ under out_dir (the report's staging folder); returns the pages written."""
    params, seed = inp.params, inp.params.seeds[0]
    site = out_dir / "site"   # the last report's copy: only its per-job curves are reused (RunCurves)
    for path in sorted(site.rglob("*")) if site.is_dir() else []:
        if path.is_file() and not (path.parent == site / "figures" and path.name.startswith("run-")):
            path.unlink()
    (site / "figures").mkdir(parents=True, exist_ok=True)
    (site / "runs").mkdir(exist_ok=True)
    written: list[Path] = []
    for name in ("site.js", "site.css"):
        shutil.copyfile(TEMPLATES / name, site / name)
        written.append(site / name)
    env = _env()

    def render(template: str, path: Path, **ctx) -> None:
        path.write_text(env.get_template(template).render(**ctx))
        written.append(path)

    # the jobs that have a metrics file get a page
    jobs = [(run, s) for run, s in params.jobs() if metrics_path(run, s).is_file()]
    pages = {job_name(run, s) for run, s in jobs}
    datasets = {d: f"site/{_slug(d)}.html" for d in dict.fromkeys(inp.table.get("dataset", pd.Series(dtype=str)))}
    sections = [s for s in inp.sections if s.rows or s.md]
    nav = [{"label": d, "href": href} for d, href in datasets.items()]
    nav += [{"label": SECTION_TITLES.get(s.name, s.name), "href": f"site/{s.name}.html"} for s in sections]
    if inp.diffusion_md:
        nav.append({"label": "diffusion studies", "href": "site/diffusion.html"})
    common = {"nav": nav, "profile": params.profile}

    # one page per dataset of the generative runs
    for dataset, href in datasets.items():
        group = inp.table[inp.table["dataset"] == dataset].dropna(axis=1, how="all")
        slug = _slug(dataset)
        figures = []
        first = {job_name(run, seed): run for run in dict.fromkeys(group["run"]) if "[" not in run}
        model_of = dict(zip(group["run"], group["model"]))
        family_curves = {job: (FAMILIES.get(model_of[run], model_of[run]), inp.curves[job])
                         for job, run in first.items() if job in inp.curves}
        if plot_family_curves(family_curves, site / "figures" / f"{slug}-curves.svg"):
            figures.append({"src": f"figures/{slug}-curves.svg", "caption": "training loss per run (first seed), "
                            "one panel per family, rolling mean over 5 log rows"})
        if plot_bpd_vs_published(group, site / "figures" / f"{slug}-bpd.svg"):
            figures.append({"src": f"figures/{slug}-bpd.svg", "caption": "bits/dim beside the published figure "
                            "where its setting is comparable (genbench/references.py); bars: ± std over seeds"})
        if plot_modes(inp.rows, dataset, site / "figures" / f"{slug}-modes.svg"):
            figures.append({"src": f"figures/{slug}-modes.svg", "caption": "modes covered per GAN objective: "
                            "dots are seeds, bars their mean, the dashed line the number of modes"})
        protocol = []
        for c in group.columns:
            if c.startswith("n_gen[") and not c.endswith("_std"):
                ns = sorted({int(v) for v in group[c].dropna()})
                protocol.append(f"{c[6:-1]}: n_gen {', '.join(map(str, ns))}")
        grids = [{"src": f"../figures/{p.name}", "caption": f"{job_name(run, seed)} ({name})",
                  "href": run_page(run, seed, pages, "runs/")}
                 for run in first.values() for name, p in inp.job_figures.get(run, []) if name == "grid"]
        render("dataset.html", site / f"{slug}.html", root="../", title=dataset,
               table=leaderboard_table(group, f"lb-{slug}", seed, pages), protocol=protocol,
               split=params.eval.reference_split, seeds=list(params.seeds), repeat=params.repeat,
               figures=figures, grids=grids, diffusion=bool(inp.diffusion_md) and "ddpm" in set(group["model"]),
               **common)

    # one page per scored family
    for s in sections:
        render("family.html", site / f"{s.name}.html", root="../", title=SECTION_TITLES.get(s.name, s.name),
               blocks=blocks(s.md, s.name, "../"), data=records_table(s.rows, f"{s.name}-data", link=lambda run: run_page(run, seed, pages))
               if s.rows else None,
               csv=f"../{s.name}.csv", **common)

    # the diffusion studies: figures of FID / KID against S and of the NLL bound against K, then the tables
    if inp.diffusion_md:
        figures = []
        for run in params.runs:
            path = metrics_path(run, seed)
            if not path.is_file():
                continue
            m = read_json(path)
            job = job_name(run, seed)
            if plot_steps(m, site / "figures" / f"{job}-steps.svg"):
                figures.append({"src": f"figures/{job}-steps.svg", "caption": f"{job}: FID and KID against the "
                                "sampling steps S per sampler (KID ± its std over subsets; one seed's FID has no "
                                "interval)"})
            if m.get("nll_table"):
                plot_nll_table(m["nll_table"], site / "figures" / f"{job}-nll.svg")
                figures.append({"src": f"figures/{job}-nll.svg", "caption": f"{job}: NLL bound against the number "
                                "of steps K per reverse variance, ± test-set standard error"})
        render("family.html", site / "diffusion.html", root="../", title="Diffusion studies",
               blocks=[{"kind": "img", "src": f["src"], "alt": f["caption"]} for f in figures]
               + blocks(inp.diffusion_md, "diffusion", "../"), data=None, csv=None, **common)

    # one page per job
    curve_jobs, run_curves = set(inp.curves), RunCurves()
    for run, s in jobs:
        job = job_name(run, s)
        m = read_json(metrics_path(run, s))
        curve = None
        if job in curve_jobs and (drawn := run_curves.draw(inp.curves[job], job, site / "figures")):
            curve = f"../figures/{drawn.name}"
            written.append(drawn)
        dataset = m.get("dataset")
        back = f"../{_slug(dataset)}.html" if dataset in datasets else None
        scores = [{"extractor": sc.get("protocol", {}).get("extractor", name), "fid": _fmt(sc.get("fid")),
                   "kid": _fmt(sc.get("kid_mean"), sc.get("kid_std"), 4), "precision": _fmt(sc.get("precision"), None, 3),
                   "recall": _fmt(sc.get("recall"), None, 3), "n_gen": sc.get("protocol", {}).get("n_gen", "—")}
                  for name, sc in (m.get("scores") or {}).items() if name != "modes"]
        seeds = [{"seed": other, "href": f"{job_name(run, other)}.html", "this": other == s}
                 for r2, other in jobs if r2 == run]
        render("run.html", site / "runs" / f"{job}.html", root="../../", title=job, m=m, back=back, seeds=seeds,
               grids=[{"src": f"../../figures/{p.name}", "caption": name} for name, p in inp.job_figures.get(run, [])]
               if s == seed else [], curve=curve, scores=scores,
               modes=_kv(m["scores"]["modes"]) if "modes" in (m.get("scores") or {}) else [],
               likelihood=[(k, _fmt(v.get("bits_per_dim", v.get("nll_nats")), v.get("stderr"), 4),
                            "bits/dim" if "bits_per_dim" in v else "nats", v.get("n", "—"))
                           for k, v in (m.get("likelihood") or {}).items() if isinstance(v, dict)],
               train=_kv(m["train"]) if isinstance(m.get("train"), dict) else [],
               test=_kv(m["test"]) if isinstance(m.get("test"), dict) else [],
               code=_kv(m.get("code_version") or {}), versions=_kv(m.get("versions") or {}),
               config=resolved_config(job), stale=job in set(_stale_jobs(inp.notice)), **common)

    run_curves.close()

    # the overview
    claims = [{**r, "cls": verdict_class(r["verdict"])} for r in inp.claim_rows]
    notice = [_inline(line[2:]) for line in inp.notice if line.startswith("- ")]
    render("index.html", out_dir / "index.html", root="", title="genbench leaderboard",
           overview=overview_rows(inp, pages, datasets), claims=claims, suite_time=inp.suite_time, notice=notice,
           wgan_div=[_inline(line[2:]) for line in inp.wgan_div_md if line.startswith("- ")],
           seeds=list(params.seeds), split=params.eval.reference_split, **common)
    for path in sorted((site / "figures").glob("run-*.svg")):   # curves of jobs gone or changed since
        if path not in written:
            path.unlink()
    return written


def _stale_jobs(notice: list[str]) -> list[str]:
    return [m.group(1) for line in notice if (m := re.match(r"- `([^`]+)`", line))]
