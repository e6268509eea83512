"""Where a pipeline run's time went, from the rows genbench's stage processes append to
logs/stage-times.jsonl: per stage kind, the count, total wall time, start-up (interpreter, imports,
params), MLflow bookkeeping and own work; with --wall, what the pipeline tool (DVC: hashing, caching,
lock writing, process launch) added beyond the stage processes.

Usage: python scripts/stage_times.py logs/stage-times.jsonl [--wall SECONDS] [--max-fixed-s 4.5]
Exits 1 when the median fixed cost of a stage kind (its time beyond its own work) exceeds --max-fixed-s.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--wall", type=float, default=None, help="the pipeline's wall time, seconds")
    parser.add_argument("--max-fixed-s", type=float, default=None,
                        help="fail when a stage kind's median fixed cost exceeds this (budget x 1.5)")
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.log) if line.strip()]
    kinds: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        kinds[row["stage"]].append(row)
    print(f"{'stage':<11}{'n':>5}{'total s':>10}{'startup s':>11}{'mlflow s':>10}{'work s':>10}"
          f"{'fixed/stage s (median)':>24}")
    over = []
    for kind, group in kinds.items():
        total = sum(r["total_s"] for r in group)
        work = sum(r["work_s"] or 0.0 for r in group)
        fixed = [r["fixed_s"] for r in group if r.get("fixed_s") is not None]
        median = statistics.median(fixed) if fixed else float("nan")
        print(f"{kind:<11}{len(group):>5}{total:>10.1f}{sum(r['startup_s'] for r in group):>11.1f}"
              f"{sum(r['tracking_s'] for r in group):>10.1f}{work:>10.1f}{median:>24.2f}")
        if args.max_fixed_s is not None and fixed and median > args.max_fixed_s:
            over.append(f"{kind}: median fixed cost {median:.2f} s > {args.max_fixed_s} s")
    processes = sum(r["total_s"] for r in rows)
    print(f"{len(rows)} stage processes: {processes:.1f} s in all, "
          f"{sum(r['work_s'] or 0.0 for r in rows):.1f} s of own work")
    if args.wall is not None:
        print(f"pipeline wall time {args.wall:.1f} s: the tool around the processes added "
              f"{args.wall - processes:.1f} s ({(args.wall - processes) / max(len(rows), 1):.2f} s per stage)")
    for line in over:
        print(f"over budget: {line}", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
