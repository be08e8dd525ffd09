#!/usr/bin/env bash
# The one prepared command for the GPU machine (one H200; Python 3.12 with torch, transformers, peft
# and pandas; no install of jsarag, no hub, no faiss/snakemake/pyserini): the paper-shape benchmark
# at full shape, under a hard limit of 7.5 minutes (the benchmark plans 4.6 and stops starting
# sections at 290 s), writing everything into $OUT. It copies nothing; it runs in the repository
# root of the copied working tree:
#   JSARAG_COMMIT=<commit of the tree> bash benchmarks/run_on_device.sh [extra paper_shape.py flags]
# The copy may lack .git: JSARAG_COMMIT names the commit in the output instead (the rows also carry
# the sha256 of the sources that ran). Exit status: the benchmark's (124 or 137: the time limit).
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that comes back}"
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,power.limit,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1
"$PY" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda)" > "$OUT/python.txt" 2>&1
timeout -k 15 450 "$PY" benchmarks/paper_shape.py --device cuda --out "$OUT" "$@" 2>&1 | tee "$OUT/paper_shape.log"
rc=${PIPESTATUS[0]}
echo "paper_shape.py exit status $rc" | tee -a "$OUT/paper_shape.log"
exit "$rc"
