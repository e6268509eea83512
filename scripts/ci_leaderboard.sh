#!/usr/bin/env bash
# Regenerate the leaderboard on the `ci` profile with `dvc repro` in a clean clone of HEAD, print it,
# and copy reports/ to OUT (default reports/ci). The committed cpu-profile reports are not touched.
# Prints where the time went: every stage process's start-up, MLflow bookkeeping and own work
# (logs/stage-times.jsonl, written by genbench itself), and what DVC added around them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-reports/ci}
bash scripts/setup.sh
source scripts/env.sh
export PATH="$PWD/.venv/bin:$PATH"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q . "$work/repo"
ln -s "$PWD/.venv" "$work/repo/.venv"
(
  cd "$work/repo"
  mkdir -p reports/timing
  # `dvc status` on the committed state (a clean clone: only outputs absent from its empty cache differ)
  s0=$(date +%s.%N); dvc status > /dev/null; s1=$(date +%s.%N)
  echo "$s1 - $s0" | bc > reports/timing/dvc-status-seconds
  echo "dvc status on the committed state: $(cat reports/timing/dvc-status-seconds) s"
  sed -i 's/^profile: .*/profile: ci/' params.yaml
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the clone's code, whatever the editable install points to
  genbench validate
  genbench resolve > /dev/null   # the job list of this profile, before DVC reads it
  # the committed dvc.lock describes the cpu profile's figures; the ci profile rebuilds every stage, and DVC
  # re-parses and rewrites the whole lock around each one (~10 000 lines: seconds a stage), so start empty
  rm dvc.lock
  start=$(date +%s.%N)
  dvc repro --quiet
  end=$(date +%s.%N)
  cat reports/leaderboard.md
  cp logs/stage-times.jsonl reports/timing/
  # where the time went; fails when a stage kind's median fixed cost exceeds 8 s (budget 3 s alone; .ci/run runs
  # this beside the test suite, where the medians were 3.0-4.9 s on 2026-12-01 against 2.1-3.0 s alone; README "Budgets")
  python scripts/stage_times.py logs/stage-times.jsonl --wall "$(echo "$end - $start" | bc)" --max-fixed-s 8
)
mkdir -p "$out"
cp -r "$work/repo/reports/." "$out/"
