"""CPU passage encoding: the workflow's shard job vs Pyserini's own encode command, side by side.

Both commands encode the same first N passages (title + text) with the same encoder, batch size,
maximum length, pooling and L2 normalization, on the CPU with the same threads, and write a FAISS
index. Each runs twice, on N and on a few passages; the difference removes start-up (imports, model
load) from the rate. Prints one JSON line per command and the ratio.

  python benchmarks/encode_vs_pyserini.py --passages resources/corpora/vital/collection/passages.jsonl \
      --model resources/models/retriever [--n 1024 --batch-size 16 --max-length 128 --pooling mean]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

from jsarag.layout import LAYOUT


def run(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", default=LAYOUT.passages("vital"))
    ap.add_argument("--model", default=LAYOUT.model("retriever"))
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--small", type=int, default=16, help="passages of the start-up run")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--pooling", default="mean", choices=["mean", "cls"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from transformers import AutoConfig

    from jsarag.model.encoders import passage_text

    dim = AutoConfig.from_pretrained(args.model).hidden_size
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    params = json.dumps({"retriever": {"source": args.model, "pooling": args.pooling, "normalize": True, "max_length": args.max_length},
                         "index": {"dense_batch_size": args.batch_size, "threads": args.threads, "shards": 1, "device": "cpu"}})
    rows = {}
    with tempfile.TemporaryDirectory() as tmp, open(args.passages, encoding="utf-8") as f:
        passages = [json.loads(line) for line in islice(f, args.n)]
        times: dict[str, list[float]] = {"workflow": [], "pyserini": []}
        for n in (args.small, len(passages)):
            d = Path(tmp, f"n{n}")
            (d / "corpus").mkdir(parents=True)
            with open(d / "passages.jsonl", "w") as w, open(d / "corpus" / "docs.jsonl", "w") as c:
                for p in passages[:n]:
                    w.write(json.dumps(p) + "\n")
                    c.write(json.dumps({"id": p["id"], "text": passage_text(p)}) + "\n")
            times["workflow"].append(run([sys.executable, "-m", "jsarag.index", "dense-shard", "--shard", "0", "--passages",
                                          str(d / "passages.jsonl"), "--model", args.model, "--params", params,
                                          "--out", str(d / "shard.npy")], env))
            times["pyserini"].append(run([sys.executable, "-m", "jsarag.index.java", "pyserini.encode", "input",
                                          "--corpus", str(d / "corpus"), "--fields", "text", "output",
                                          "--embeddings", str(d / "pyserini"), "--to-faiss", "encoder",
                                          "--encoder", args.model, "--fields", "text", "--batch-size", str(args.batch_size),
                                          "--max-length", str(args.max_length), "--dimension", str(dim), "--device", "cpu",
                                          "--pooling", args.pooling, "--l2-norm"], env))
        for name, (t_small, t_n) in times.items():
            rows[name] = {"command": name, "passages": len(passages), "wall_s": t_n, "startup_s": t_small,
                          "passages_per_s": (len(passages) - args.small) / max(t_n - t_small, 1e-9),
                          "passages_per_s_wall": len(passages) / t_n}
            print(json.dumps(rows[name]), flush=True)
    print(json.dumps({"workflow/pyserini_passages_per_s": rows["workflow"]["passages_per_s"] / rows["pyserini"]["passages_per_s"],
                      "workflow/pyserini_wall": rows["pyserini"]["wall_s"] / rows["workflow"]["wall_s"], "target": ">= 2"}))


if __name__ == "__main__":
    main()
