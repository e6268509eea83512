#!/usr/bin/env bash
# Regenerate the leaderboard on the `ci` profile and check the pipeline that made it, in a clean clone of HEAD;
# print it and copy its reports/ to OUT (default reports/ci). The committed cpu-profile reports are not touched.
# The run is the end-to-end pipeline test (tests/test_pipelines.py) on every run of the ci profile
# (GENBENCH_E2E_RUNS=all): `dvc repro` builds the leaderboard, then the test checks its figures, that nothing
# re-runs, that an edit makes exactly its stages stale, and that Snakemake re-running some of its jobs gives the
# same numbers. (Before 2026-12-01 this script ran `dvc repro` itself and the test suite ran the same test
# on five runs: the same stages twice in CI.)
# Prints where the time went: every stage process's start-up, MLflow bookkeeping and own work
# (logs/stage-times.jsonl, written by genbench itself), and what DVC added around them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-reports/ci}")
bash scripts/setup.sh
source scripts/env.sh
export PATH="$PWD/.venv/bin:$PATH"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q . "$work/repo"
ln -s "$PWD/.venv" "$work/repo/.venv"
mkdir -p "$out/timing"
(
  cd "$work/repo"
  # `dvc status` on the committed state (a clean clone: only outputs absent from its empty cache differ): the
  # median of five consecutive runs, the first one cold (it also hashes the dependencies into DVC's state). One
  # run was the figure until 2026-12-03, when CI failed at 7.6 s against 7.5 while this machine read 3.4-8.8 s
  # for the same 601 stages: a single run of a 5-s command on a shared 2-core machine is mostly its noise. Three
  # runs then, and CI failed again on their median, 7.7 s (601 stages); the same state read 3.8-6.4 s in eight
  # alternated runs here, its 375-stage successor 2.5-4.6 s (one run to the next, the CPU time moves as much)
  status_runs=()
  for _ in 1 2 3 4 5; do
    s0=$(date +%s.%N); dvc status > /dev/null; s1=$(date +%s.%N)
    status_runs+=("$(echo "$s1 - $s0" | bc)")
  done
  printf '%s\n' "${status_runs[@]}" | sort -g | sed -n 3p > "$out/timing/dvc-status-seconds"
  echo "dvc status on the committed state: $(cat "$out/timing/dvc-status-seconds") s" \
       "(median of ${status_runs[*]} s; $(grep -c -E '^  [^ ]+:$' dvc.lock) stages in dvc.lock)"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the clone's code, whatever the editable install points to
  GENBENCH_E2E_RUNS=all GENBENCH_E2E_OUT="$out" \
    bash scripts/test.sh tests/test_pipelines.py -k test_dvc_and_snakemake_run_the_ci_profile_to_the_same_numbers
)
cat "$out/leaderboard.md"
# where the time went; fails when a stage kind's median fixed cost exceeds 8 s (budget 3 s alone; .ci/run runs
# this beside the test suite, where the medians were 3.0-4.9 s on 2026-12-01 against 2.1-3.0 s alone; README "Budgets")
.venv/bin/python scripts/stage_times.py "$out/timing/stage-times.jsonl" --wall "$(cat "$out/timing/dvc-repro-seconds")" \
  --max-fixed-s 8
