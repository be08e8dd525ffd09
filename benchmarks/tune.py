"""One row of a tuning table: train one method on one dataset of a config with some train keys
changed, validating every --valid-every steps (the validation split only; the test split is never
read). The rows of the README's tuning tables are this script's training logs (metrics.jsonl: the
rows with valid/* keys), read at the same steps of the same schedule.

  python benchmarks/tune.py --root RUN_DIR --dataset perlfaq --method jsa --out /tmp/tune/k2 k=2
  python benchmarks/tune.py --root RUN_DIR --dataset perlfaq --method jsa --out /tmp/tune/l4 "layers=[26,27,28,29]"

RUN_DIR is a run of the workflow whose resources/ hold the dataset's splits, its corpus and dense
index, and the exported models (`snakemake --cores all resources/indexes/perldoc/dense ...`).
KEY=VALUE sets train.common.KEY (YAML values; `layers` sets train.common.lora.layers); the dataset's
own train keys still apply on top, as in the workflow. Prints the validation rows when done.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from jsarag.config import load_config, run_params
from jsarag.layout import Layout


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="a workflow run directory (its resources/ are read)")
    ap.add_argument("--config", default=None, help="default: ROOT/config.yaml")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--method", required=True, choices=("rag", "vrag", "jsa"))
    ap.add_argument("--out", required=True, help="the run folder to write")
    ap.add_argument("--valid-every", type=int, default=62)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("changes", nargs="*", help="KEY=VALUE for train.common")
    args = ap.parse_args(argv)
    root = Path(args.root)
    cfg = load_config(args.config or root / "config.yaml")
    common = cfg["train"]["common"]
    common.update(threads=args.threads, valid_every=args.valid_every, checkpoint_every=1000)
    for kv in args.changes:
        key, sep, value = kv.partition("=")
        if not sep:
            sys.exit(f"error: {kv!r} is not KEY=VALUE")
        if key == "layers":
            common["lora"] = {**common["lora"], "layers": yaml.safe_load(value)}
        else:
            common[key] = yaml.safe_load(value)
    p = run_params(cfg, args.dataset, args.method, cfg["seeds"][0])
    L = Layout(str(root))
    corpus = cfg["datasets"][args.dataset]["corpus"]
    cmd = [sys.executable, "-m", "jsarag.train", "--params", json.dumps(p), "--train", L.split(args.dataset, "train"),
           "--valid", L.split(args.dataset, "valid"), "--passages", L.passages(corpus), "--index", L.dense_index(corpus),
           "--retriever", L.model("retriever"), "--generator", L.model("generator"), "--out", args.out]
    rc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)}).returncode
    log = Path(args.out) / "metrics.jsonl"
    for line in log.read_text().splitlines() if log.exists() else []:
        row = json.loads(line)
        if "valid/r@1" in row:
            print(row["step"], {k.split("/", 1)[1]: round(v, 2) for k, v in row.items() if k.startswith("valid/")})
    sys.exit(rc)


if __name__ == "__main__":
    main()
