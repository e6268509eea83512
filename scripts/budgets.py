"""The speed budgets of CI (README, "Budgets"), checked against measured seconds.

Usage: python scripts/budgets.py name=seconds [name=seconds ...] [--warn-only name ...]
Prints each figure against its budget; exits 1 when one exceeds its budget by more than 50 %, so that a
regression fails CI visibly while ordinary machine noise does not. Budgets named after --warn-only are
printed but do not fail (those not yet brought under budget: see the README's table).
"""
from __future__ import annotations

import sys

BUDGETS_S = {
    "tests": 10 * 60,        # scripts/test.sh: the whole pytest suite
    "leaderboard": 12 * 60,  # scripts/ci_leaderboard.sh: the end-to-end test on the whole ci profile (its `dvc repro`
                             # is the leaderboard), in a clean clone
    "ci": 30 * 60,           # .ci/run in all
    "dvc_status": 5,         # `dvc status` on the committed state
}
TOLERANCE = 1.5


def main(argv: list[str]) -> int:
    warn_only: set[str] = set()
    if "--warn-only" in argv:
        at = argv.index("--warn-only")
        argv, warn_only = argv[:at], set(argv[at + 1:])
    failed = []
    print(f"{'budget':<13}{'measured s':>11}{'budget s':>10}{'fails above s':>15}")
    for arg in argv:
        name, _, value = arg.partition("=")
        if name not in BUDGETS_S:
            raise SystemExit(f"unknown budget {name!r}; known: {', '.join(BUDGETS_S)}")
        seconds, budget = float(value), BUDGETS_S[name]
        flag = "" if seconds <= budget else ("  over budget" if seconds <= TOLERANCE * budget else "  FAIL")
        print(f"{name:<13}{seconds:>11.1f}{budget:>10}{TOLERANCE * budget:>15.0f}{flag}")
        if seconds > TOLERANCE * budget:
            if name in warn_only:
                print(f"  ({name}: not yet enforced)")
            else:
                failed.append(name)
    if failed:
        print(f"budgets exceeded by more than {TOLERANCE - 1:.0%}: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
