#!/usr/bin/env bash
# The test command: sets up .venv if needed, then runs the whole test suite (pytest arguments pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
export PATH="$PWD/.venv/bin:$PATH"
exec python -m pytest -q -p no:cacheprovider tests "$@"
