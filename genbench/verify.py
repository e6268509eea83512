"""`genbench verify [RUN ...]`: re-run committed rows from nothing and say which figures reproduce.

The repository's HEAD is cloned into a scratch directory; there `genbench resolve`, then
`dvc repro --force evaluate@<run>-<seed> ...` for every committed seed of every named run (PYTHONPATH
set to the clone, so the clone's code runs; GENBENCH_TRACKING=off); the settings are HEAD's params.yaml,
which `dvc repro` in the clone reads (the top-level `--params` does not apply). Every figure of each new
metrics/<run>-s<seed>.json (scores, likelihood, variants' scores, the NLL table; not timings,
throughput, versions, code_version, paths or protocol settings) is compared with the committed file,
by two tiers:

- **bit-identical**: the same machine and software give exactly the committed value (the same command
  run twice);
- **within noise**: on another machine, a figure is reproduced when it lies inside the interval its
  committed seeds give, mean +- K x (sample std over the seeds), K = 3 by default, when at least 3
  committed seeds carry it (training noise). A figure of fewer seeds that carries its own standard error
  (likelihood `stderr`, `kl_stderr`) gets committed +- K x stderr, labelled as such: that is test-set
  sampling noise, NOT training noise. A figure with no noise estimate (modes covered, a single seed's
  FID) that differs is "differs, no interval".

Exit status: 0 when every figure is bit-identical or within its interval, 1 when any is OUTSIDE (with
`--strict`, also when any differs with no interval), 2 on a user-fixable problem (GenbenchError).

The comparison is pure functions (`figures`, `own_stderrs`, `seed_interval`, `stderr_interval`,
`tolerance`, `classify`, `compare_run`, `exit_status`, `select_runs`), unit-tested without running anything.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from genbench import GenbenchError

K_DEFAULT = 3.0
MIN_SEEDS = 3  # an interval from the seeds needs at least this many committed seeds

# tiers (codes in the JSON; labels in the table)
BIT = "bit-identical"
WITHIN = "within-noise"
OUTSIDE = "OUTSIDE"
NO_INTERVAL = "differs-no-interval"

# numeric entries of a score / likelihood record that are settings of the protocol, not figures
SETTINGS = frozenset({"n", "n_gen", "n_ref", "k", "kid_subsets", "kid_subset_size", "kid_subset_size_requested",
                      "prc_neighborhood", "seed", "modes_total", "min_share"})
# a likelihood figure's own standard error (over test examples): its interval, not a figure of its own
STDERR_OF = {"nll_nats": "stderr", "bits_per_dim": "stderr", "kl_nats": "kl_stderr", "accuracy": "accuracy_stderr",
             "cross_entropy": "cross_entropy_stderr", "exact_match": "exact_match_stderr", "spearman": "spearman_stderr"}
NOISE_KEYS = frozenset(STDERR_OF.values())


# --------------------------------------------------------------------------------------------------
# Pure: figures of a metrics dict, intervals, classification
# --------------------------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_timing(key: str) -> bool:
    return key.endswith("_s") or "per_s" in key or "time" in key


def _record_figures(prefix: str, record: dict[str, Any], skip: Iterable[str] = ()) -> dict[str, float]:
    skip = set(skip) | SETTINGS
    return {f"{prefix}.{key}": value for key, value in record.items()
            if _is_number(value) and key not in skip and not _is_timing(key)}


def figures(metrics: dict[str, Any]) -> dict[str, float]:
    """Every numeric figure of a metrics file, flat: `scores.<extractor>.<key>`,
    `likelihood.<kind>.<key>`, `variants.<name>.<extractor>.<key>`, `nll_table.<entry>.bits_per_dim`
    (and `diverged_at_step` for a diverged run). Left out: timings, throughput, versions, code_version,
    paths, protocol settings (sample counts, subset sizes, seeds) and the likelihood standard errors
    (they are the intervals of their figures: `own_stderrs`)."""
    out: dict[str, float] = {}
    if _is_number(metrics.get("diverged_at_step")):
        out["diverged_at_step"] = metrics["diverged_at_step"]
    for extractor, record in (metrics.get("scores") or {}).items():
        out.update(_record_figures(f"scores.{extractor}", record))
    for kind, record in (metrics.get("likelihood") or {}).items():
        out.update(_record_figures(f"likelihood.{kind}", record, NOISE_KEYS))
    for name, variant in (metrics.get("variants") or {}).items():
        for extractor, record in (variant.get("scores") or {}).items():
            out.update(_record_figures(f"variants.{name}.{extractor}", record))
    for name, record in (metrics.get("nll_table") or {}).items():
        out.update(_record_figures(f"nll_table.{name}", record, NOISE_KEYS))
    if isinstance(metrics.get("test"), dict):  # a supervised run's test figures (genbench.score)
        out.update(_record_figures("test", metrics["test"], NOISE_KEYS))
    for kind, record in _binarized(metrics):  # the categorical VAE's bounds on binarized images
        out.update(_record_figures(f"studies.binarized.{kind}", record, NOISE_KEYS))
    for row in metrics.get("rows") or []:  # a sentence-embedding run's correlations (genbench.sts)
        for split in ("dev", "test"):
            out.update(_record_figures(f"sts.{_sts_row(row)}.{split}", row[split], NOISE_KEYS))
    return out


def _binarized(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = ((metrics.get("studies") or {}).get("binarized") or {}).items()
    return [(kind, record) for kind, record in found if isinstance(record, dict)]


def _sts_row(row: dict[str, Any]) -> str:
    return f"{row['pooling']}.{row['method']}-{row['fit']}-{row['k']}"


def own_stderrs(metrics: dict[str, Any]) -> dict[str, float]:
    """{figure: its standard error over test examples} for the figures that carry one."""
    out: dict[str, float] = {}
    records = [(f"{section}.{name}", record) for section in ("likelihood", "nll_table")
               for name, record in (metrics.get(section) or {}).items()]
    records += [("test", metrics["test"])] if isinstance(metrics.get("test"), dict) else []
    records += [(f"studies.binarized.{kind}", record) for kind, record in _binarized(metrics)]
    records += [(f"sts.{_sts_row(row)}.{split}", row[split]) for row in metrics.get("rows") or [] for split in ("dev", "test")]
    for prefix, record in records:
        for key, noise in STDERR_OF.items():
            if _is_number(record.get(key)) and _is_number(record.get(noise)):
                out[f"{prefix}.{key}"] = record[noise]
    return out


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float
    kind: str          # "seeds" (training noise) or "stderr" (test-set sampling noise)
    k: float
    n_seeds: int

    def describe(self) -> str:
        span = f"[{self.lo:.6g}, {self.hi:.6g}]"
        if self.kind == "seeds":
            return f"{span} mean±{self.k:g}·std, {self.n_seeds} seeds (training noise)"
        return f"{span} ±{self.k:g}·stderr (test-set sampling noise, not training noise)"


def seed_interval(values: list[float], k: float = K_DEFAULT) -> Interval | None:
    """mean ± k x sample std over the committed seeds' values; None below MIN_SEEDS seeds or when a
    value is not finite."""
    if len(values) < MIN_SEEDS or not all(math.isfinite(v) for v in values):
        return None
    mean, std = statistics.fmean(values), statistics.stdev(values)
    return Interval(mean - k * std, mean + k * std, "seeds", k, len(values))


def stderr_interval(committed: float, stderr: float | None, k: float = K_DEFAULT, n_seeds: int = 1) -> Interval | None:
    """committed ± k x the figure's own standard error (test-set sampling noise, not training noise)."""
    if stderr is None or not (math.isfinite(committed) and math.isfinite(stderr)):
        return None
    return Interval(committed - k * stderr, committed + k * stderr, "stderr", k, n_seeds)


def tolerance(seed_values: list[float], committed: float, stderr: float | None, k: float = K_DEFAULT
              ) -> Interval | None:
    """The interval a reproduced figure must lie in: its seeds' (>= 3 seeds), else its own stderr's, else none."""
    return seed_interval(seed_values, k) or stderr_interval(committed, stderr, k, len(seed_values))


def same(a: float, b: float) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def classify(committed: float | None, reproduced: float | None, interval: Interval | None) -> str:
    """BIT when equal; else WITHIN / OUTSIDE by the interval; NO_INTERVAL when there is none. A figure
    the reproduction lacks is OUTSIDE; one only the reproduction has is NO_INTERVAL."""
    if reproduced is None:
        return OUTSIDE
    if committed is None:
        return NO_INTERVAL
    if same(committed, reproduced):
        return BIT
    if interval is None:
        return NO_INTERVAL
    return WITHIN if interval.lo <= reproduced <= interval.hi else OUTSIDE


@dataclass
class Row:
    run: str
    seed: int
    figure: str
    committed: float | None
    reproduced: float | None
    tier: str
    interval: list[float] | None
    interval_kind: str | None
    tolerance: str
    tier_label: str


def tier_label(tier: str, interval: Interval | None, n_seeds: int, committed: float | None) -> str:
    if tier == WITHIN:
        return "within noise" + (" (stderr)" if interval and interval.kind == "stderr" else "")
    if tier == NO_INTERVAL:
        if committed is None:
            return "differs, no interval (not in the committed file)"
        if n_seeds >= MIN_SEEDS:
            return "differs, no interval (a seed's value is not finite)"
        return f"differs, no interval ({n_seeds} seed{'s' if n_seeds != 1 else ''}: needs >= {MIN_SEEDS} seeds)"
    if tier == OUTSIDE and interval is None:
        return "OUTSIDE (not reproduced)"
    return tier


def compare_run(run: str, committed: dict[int, dict[str, Any]], reproduced: dict[int, dict[str, Any]],
                k: float = K_DEFAULT, seeds: list[int] | None = None) -> list[Row]:
    """One row per (seed, figure): the committed metrics of each seed in `seeds` (default: every committed
    seed of `run`) against the reproduced metrics of the same seed. The interval of a figure comes from
    every committed seed, re-run or not."""
    committed_figures = {seed: figures(m) for seed, m in committed.items()}
    rows = []
    for seed in sorted(committed if seeds is None else seeds):
        ours, theirs = committed_figures[seed], figures(reproduced.get(seed) or {})
        stderrs = own_stderrs(committed[seed])
        for name in list(ours) + [n for n in theirs if n not in ours]:
            c, r = ours.get(name), theirs.get(name)
            seed_values = [f[name] for f in committed_figures.values() if name in f]
            interval = tolerance(seed_values, c, stderrs.get(name), k) if c is not None else None
            tier = classify(c, r, interval)
            rows.append(Row(run, seed, name, c, r, tier, [interval.lo, interval.hi] if interval else None,
                            interval.kind if interval else None,
                            interval.describe() if interval else
                            f"none ({len(seed_values)} seed{'s' if len(seed_values) != 1 else ''}, no stderr)",
                            tier_label(tier, interval, len(seed_values), c)))
    return rows


def provenance_notes(job: str, old: dict, new: dict) -> list[str]:
    """Where the committed and the reproduced figures' software or machine (`versions`, with `cpu`) differ: there
    bit-identical is not expected and the noise tier applies. A committed file without a `cpu` entry (written
    before it was recorded) is named as such: its machine is unknown."""
    before, after = old.get("versions") or {}, new.get("versions") or {}
    if not before or not after or before == after:
        return []
    diff = ", ".join(f"{k} {before.get(k, '(not recorded)')} -> {v}" for k, v in after.items() if before.get(k) != v)
    return [f"{job}: software or machine differs from the committed run: {diff}: bit-identical is not "
            "expected, the noise tier applies"]


def exit_status(rows: list[Row], strict: bool = False) -> int:
    """0 when every figure is bit-identical or within its interval; 1 when any is OUTSIDE (`strict`:
    or differs with no interval)."""
    failing = {OUTSIDE, NO_INTERVAL} if strict else {OUTSIDE}
    return 1 if any(row.tier in failing for row in rows) else 0


def counts(rows: list[Row]) -> dict[str, int]:
    return {tier: sum(row.tier == tier for row in rows) for tier in (BIT, WITHIN, OUTSIDE, NO_INTERVAL)}


STAGE_OVERHEAD_S = 10.0  # start-up of a job's stages, added to its committed compute time


def committed_cost_s(metrics: list[dict[str, Any]]) -> float:
    """Seconds a run's committed seeds took to train, sample and score (from their metrics files)."""
    total = 0.0
    for m in metrics:
        total += STAGE_OVERHEAD_S + float((m.get("train") or {}).get("train_time_s") or 0.0) + \
            float(m.get("eval_time_s") or 0.0) + float((m.get("sample") or {}).get("seconds") or 0.0)
    return total


def select_runs(runs: dict[str, str], names: list[str], sample: int | None, rotation: int,
                costs: dict[str, float] | None = None, max_seconds: float | None = None) -> tuple[list[str], str]:
    """The runs to verify and a sentence saying why. `runs`: {run: dataset} in params order; `names`:
    the ones asked for (none: the 2-D toy runs, datasets `toy_*`, and with `max_seconds` only those whose
    committed seeds cost at most that in all, by `costs`); `sample` N: N of them, a window that moves by N
    per commit (`rotation`: HEAD's commit count), so consecutive commits cover all."""
    unknown = [n for n in names if n not in runs]
    if unknown:
        raise GenbenchError(f"not in params.yaml `runs`: {', '.join(unknown)}; known runs: {', '.join(runs)}")
    chosen = list(dict.fromkeys(names)) if names else [r for r, d in runs.items() if d.startswith("toy_")]
    why = "the runs named" if names else "the 2-D toy runs (datasets toy_*) of the profile"
    if max_seconds is not None and not names:
        cheap = [r for r in chosen if (costs or {}).get(r, math.inf) <= max_seconds]
        why += f", the {len(cheap)} of {len(chosen)} whose committed seeds (those re-run) took <= {max_seconds:.0f} s"
        chosen = cheap
    if not chosen:
        raise GenbenchError("no run to verify: the profile has no 2-D toy run within the limit; name the runs")
    if sample is not None:
        if sample < 1:
            raise GenbenchError(f"--sample: expected a positive count, got {sample}")
        if sample < len(chosen):
            start = (rotation * sample) % len(chosen)
            window = [chosen[(start + i) % len(chosen)] for i in range(sample)]
            why += (f", {sample} of {len(chosen)} by rotation (window at {start}, moved by {sample} per commit; "
                    f"commit count {rotation})")
            chosen = window
    return chosen, why


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------
def fmt_value(value: float | None) -> str:
    if value is None:
        return "—"
    return str(value) if isinstance(value, int) else f"{value:.10g}"


def format_table(rows: list[Row]) -> str:
    header = ("run", "seed", "figure", "committed", "reproduced", "tolerance", "tier")
    body = [(r.run, str(r.seed), r.figure, fmt_value(r.committed), fmt_value(r.reproduced), r.tolerance,
             r.tier_label) for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary(rows: list[Row], strict: bool) -> str:
    c = counts(rows)
    status = exit_status(rows, strict)
    text = (f"{len(rows)} figure(s): {c[BIT]} bit-identical, {c[WITHIN]} within noise, {c[OUTSIDE]} OUTSIDE, "
            f"{c[NO_INTERVAL]} differ with no interval")
    if status:
        text += f" -> exit 1 ({'OUTSIDE or no interval, --strict' if strict and c[NO_INTERVAL] else 'OUTSIDE'})"
    else:
        text += " -> exit 0" + (" (--strict would fail: no interval)" if c[NO_INTERVAL] and not strict else "")
    return text


# --------------------------------------------------------------------------------------------------
# Running: clone HEAD, reproduce, compare
# --------------------------------------------------------------------------------------------------
def _git(root: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise GenbenchError(f"`git {' '.join(args)}` failed in {root}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.rstrip()  # not strip(): `git status --porcelain` lines begin with a status column


def project_root(start: Path | None = None) -> Path:
    start = start or Path.cwd()
    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, text=True)
    if proc.returncode != 0:
        raise GenbenchError(f"{start} is not in a git checkout: verify re-runs the committed HEAD")
    return Path(proc.stdout.strip())


def tool_env(clone: Path) -> dict[str, str]:
    """The clone's code (PYTHONPATH), this environment's tools (genbench, dvc), no MLflow tracking."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(clone)
    env["GENBENCH_TRACKING"] = "off"
    return env


def _run_logged(cmd: list[str], clone: Path, log: Path) -> None:
    with open(log, "a") as handle:
        handle.write(f"$ {' '.join(cmd)}\n")
        handle.flush()
        proc = subprocess.run(cmd, cwd=clone, env=tool_env(clone), stdout=handle, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise GenbenchError(f"`{' '.join(cmd)}` exited {proc.returncode} in the scratch clone {clone} (kept; "
                            f"full log {log}); its output ends:\n{tail}")


def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GenbenchError(f"cannot read {path}: {exc}") from exc


def _log(message: str) -> None:
    print(f"genbench verify: {message}", file=sys.stderr, flush=True)


def main(args) -> int:
    from genbench.config import load
    from genbench.layout import metrics_path

    if not args.k > 0:
        raise GenbenchError(f"--k: expected a positive number, got {args.k}")
    root = project_root()
    head = _git(root, "rev-parse", "HEAD")
    dirty = _git(root, "status", "--porcelain", "--untracked-files=normal", "--", "genbench", "params.yaml")
    if dirty:
        _log("warning: uncommitted changes under genbench/ or in params.yaml are NOT verified (HEAD "
             f"{head[:12]} is):\n  " + "\n  ".join(dirty.splitlines()))
    rotation = int(_git(root, "rev-list", "--count", "HEAD"))

    scratch = Path(tempfile.mkdtemp(prefix="genbench-verify-"))
    clone, log = scratch / "repo", scratch / "verify.log"
    keep, started = args.keep, False
    try:
        _git(root, "clone", "--quiet", str(root), str(clone))
        params = load(clone / "params.yaml")  # HEAD's: what `dvc repro` in the clone reads
        wanted = None if args.seeds is None else set(args.seeds)
        costs = {}  # of the seeds that would be re-run
        for name in params.runs:
            files = [clone / metrics_path(r, seed) for r, seed in params.jobs()
                     if r == name and (wanted is None or seed in wanted)]
            if files and all(f.is_file() for f in files):
                costs[name] = committed_cost_s([_read_metrics(f) for f in files])
        max_seconds = None if args.max_minutes is None else 60.0 * args.max_minutes
        runs, why = select_runs({name: spec.dataset for name, spec in params.runs.items()}, args.runs,
                                args.sample, rotation, costs, max_seconds)
        all_jobs = [(run, seed) for run in runs for run_, seed in params.jobs() if run_ == run]
        jobs = [(run, seed) for run, seed in all_jobs if wanted is None or seed in wanted]
        missing = [run for run in runs if not any(r == run for r, _ in jobs)]
        if missing:
            raise GenbenchError(f"--seeds {' '.join(map(str, args.seeds))}: {', '.join(missing)} has no such seed "
                                "in the profile; name seeds it has (params.yaml `seeds`, `repeat`)")
        committed: dict[str, dict[int, dict[str, Any]]] = {}
        for run, seed in all_jobs:  # every committed seed gives the interval; `jobs` are re-run
            path = clone / metrics_path(run, seed)
            if not path.is_file():
                raise GenbenchError(f"{metrics_path(run, seed)} is not committed (HEAD {head[:12]}): "
                                    f"nothing to verify for {run} seed {seed}; run and commit "
                                    f"`dvc repro` of {run}-{seed} first, or leave {run} out")
            metrics = _read_metrics(path)
            if metrics.get("profile", params.profile) != params.profile:
                raise GenbenchError(f"{metrics_path(run, seed)} was produced on profile '{metrics.get('profile')}' "
                                    f"but HEAD's params.yaml selects '{params.profile}': commit that profile's "
                                    "metrics or set `profile:` to match")
            committed.setdefault(run, {})[seed] = metrics
        from genbench.resolve import is_supervised  # scored runs (accuracy, sentence embeddings) end in `fit`

        targets = [f"{'fit' if is_supervised(params, run) else 'evaluate'}@{run}-{seed}" for run, seed in jobs]
        print(f"verifying HEAD {head[:12]} (profile {params.profile}, K = {args.k:g}): {', '.join(runs)}\n"
              f"  runs: {why}\n  jobs: {', '.join(f'{r}-s{s}' for r, s in jobs)}", flush=True)
        if args.dry_run:
            print(f"  would run in a scratch clone: genbench resolve; dvc repro --force {' '.join(targets)}")
            return 0

        t0, started = time.perf_counter(), True
        _log(f"scratch clone {clone}; reproducing {len(targets)} job(s) from nothing (log {log})")
        _run_logged(["genbench", "resolve"], clone, log)
        # --force: every stage of these rows runs (never restored from a cache), as on a fresh machine
        _run_logged(["dvc", "repro", "--force", *targets], clone, log)
        _log(f"reproduced in {time.perf_counter() - t0:.0f} s")

        rows: list[Row] = []
        notes: list[str] = []
        for run in runs:
            reproduced = {}
            seeds = [seed for r, seed in jobs if r == run]
            for seed in seeds:
                old = committed[run][seed]
                path = clone / metrics_path(run, seed)
                if not path.is_file():
                    raise GenbenchError(f"dvc repro did not write {metrics_path(run, seed)} in {clone}")
                reproduced[seed] = new = _read_metrics(path)
                notes += provenance_notes(f"{run}-s{seed}", old, new)
                if (old.get("code_version") or {}).get("code_dirty"):
                    notes.append(f"{run}-s{seed}: the committed figures were produced with uncommitted code edits "
                                 f"(code_version {old['code_version']})")
                if old.get("status") != new.get("status"):
                    notes.append(f"{run}-s{seed}: committed status {old.get('status')}, reproduced {new.get('status')}")
            rows += compare_run(run, committed[run], reproduced, args.k, seeds)
    except BaseException:
        keep = keep or started  # a failed reproduction keeps its clone to look into
        raise
    finally:
        if keep:
            _log(f"scratch clone kept: {clone}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    status = exit_status(rows, args.strict)
    print(format_table(rows))
    for note in notes:
        print(f"note: {note}")
    print(summary(rows, args.strict))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "commit": head, "profile": params.profile, "k": args.k, "strict": args.strict, "runs": runs,
            "selection": why, "rotation": rotation, "jobs": [f"{r}-s{s}" for r, s in jobs],
            "rows": [asdict(row) for row in rows], "counts": counts(rows), "notes": notes, "exit_status": status,
        }, indent=2) + "\n")
    return status

