"""Keep pipelines/stale.yaml in step with `dvc status`: list every job whose train/evaluate (or fit) stages
`dvc status` reports changed (with the reason given for newly listed jobs), and drop the jobs whose
stages are all up to date again. Other changed stages (prepare, classifier, ...) are printed, never
listed: those are cheap and are re-run, not marked.

    python scripts/mark_stale.py --reason "what changed, and why the figures could or could not move"
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

JOB_STAGES = ("train", "evaluate", "fit")
STALE = Path("pipelines/stale.yaml")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reason", required=True, help="the reason recorded for newly listed jobs")
    args = ap.parse_args()
    status = json.loads(subprocess.run(["dvc", "status", "--json"], capture_output=True, text=True,
                                       check=True).stdout or "{}")
    changed: dict[str, list[str]] = {}
    for stage, changes in status.items():
        # a stage whose only change is outputs absent from this workspace is not stale
        real = [c for c in changes if not isinstance(c, dict) or any(
            state not in ("deleted", "not in cache") for entries in c.values() for state in entries.values())]
        kind, _, name = stage.partition("@")
        if not real:
            continue
        if kind not in JOB_STAGES:
            print(f"not listed (re-run it): {stage}", file=sys.stderr)
            continue
        run, _, seed = name.rpartition("-")
        changed.setdefault(f"{run}-s{seed}", []).append(stage)
    lines = STALE.read_text().splitlines() if STALE.exists() else []
    header = "\n".join(line for line in lines[:next((i for i, l in enumerate(lines) if not l.startswith("#")),
                                                    len(lines))])
    old = (yaml.safe_load(STALE.read_text()) or {}) if STALE.exists() else {}
    new = {job: {"stages": sorted(stages), "reason": old.get(job, {}).get("reason", args.reason)}
           for job, stages in sorted(changed.items())}
    body = yaml.safe_dump(new, sort_keys=False, width=110) if new else ""
    STALE.write_text(header + "\n" + body if header else body)
    print(f"{len(new)} job(s) listed stale; dropped: {sorted(set(old) - set(new)) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
