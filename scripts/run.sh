#!/usr/bin/env bash
# The main job: set up, then `dvc repro` on the profile selected in params.yaml (default `cpu`),
# ending with reports/leaderboard.md, reports/leaderboard.csv and reports/index.html.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
export PATH="$PWD/.venv/bin:$PATH"
genbench validate
genbench resolve > /dev/null   # the job list of params.yaml, before DVC reads it
dvc repro "$@"
cat reports/leaderboard.md
