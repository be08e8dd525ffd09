"""CPU scale evidence for the memory-mapped dense index: search time and resident memory at growing N.

For each N (default 250k, 500k, 1M, 2M rows of 768-d), writes a synthetic fp16 index file in the
dense index's format (the FAISS fp16 file jsarag.model.dense_index memory-maps), then a fresh child
process opens it with `DenseIndex` and runs search steps (one step = one call with the prior and
posterior queries of a batch of 4, k = 10). It prints one JSON line per N (seconds per step,
resident memory: peak, private (anon) and file-backed (the shared page cache), each over the
embedding bytes) and then a least-squares line for each against N, evaluated at 21,015,324 rows of
the same width and at 1024-d, so the paper-scale figure is read off a fit rather than guessed.

Rows are a repeated block of random unit vectors: the timing and the memory of an exhaustive scan
do not depend on the values.

  python benchmarks/index_scale.py [--sizes 250000 500000 1000000 2000000] [--dim 768] [--dir /tmp/x]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WIKI = 21_015_324


def status() -> dict:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(val.split()[0]) * 1024
    return out


def write_index(path: Path, n: int, d: int) -> None:
    from jsarag.model.dense_index import DOCID_FILE, INDEX_FILE, sq_fp16_header

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    block = rng.standard_normal((1 << 16, d), dtype=np.float32)
    block = (block / np.linalg.norm(block, axis=1, keepdims=True)).astype(np.float16).tobytes()
    with open(path / INDEX_FILE, "wb") as f:
        f.write(sq_fp16_header(d, n))
        for s in range(0, n, 1 << 16):
            f.write(block[: min(1 << 16, n - s) * d * 2])
    (path / DOCID_FILE).write_text("")


def child(path: str, steps: int, batch: int, k: int) -> None:
    import torch

    from jsarag.model.dense_index import DenseIndex

    base = status()
    index = DenseIndex(path)
    q = torch.nn.functional.normalize(torch.randn(2 * batch, index.dim), dim=-1)
    index.search_scores(q, k)  # warm: pages mapped
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        index.search_scores(q, k)
        times.append(time.perf_counter() - t)
    st = status()
    print(json.dumps({"step_s": float(np.median(times)), "base_rss": base["VmRSS"], **st}))


def fit(x, y) -> tuple[float, float]:
    slope, icept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(slope), float(icept)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[250_000, 500_000, 1_000_000, 2_000_000])
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dir", default=None, help="where the index files go (default: a temp dir, removed)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        return child(args.child, args.steps, args.batch, args.k)
    root = Path(args.dir or tempfile.mkdtemp(prefix="index_scale."))
    rows = []
    try:
        for n in args.sizes:
            path = root / f"n{n}"
            t = time.perf_counter()
            write_index(path, n, args.dim)
            write_s = time.perf_counter() - t
            out = subprocess.run([sys.executable, __file__, "--child", str(path), "--steps", str(args.steps), "--batch", str(args.batch),
                                  "--k", str(args.k), "--threads", str(args.threads)], check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            emb = n * args.dim * 2
            row = {"n": n, "dim": args.dim, "embedding_bytes": emb, "write_s": write_s, "step_s": r["step_s"],
                   "peak_rss_bytes": r["VmHWM"], "rss_anon_bytes": r["RssAnon"], "rss_file_bytes": r["RssFile"],
                   "peak_rss_over_embeddings": r["VmHWM"] / emb, "peak_rss_minus_start_over_embeddings": (r["VmHWM"] - r["base_rss"]) / emb}
            rows.append(row)
            print(json.dumps(row), flush=True)
            shutil.rmtree(path)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    if len(rows) >= 2:
        elems = [r["n"] * r["dim"] for r in rows]
        t_slope, t_icept = fit(elems, [r["step_s"] for r in rows])
        m_slope, m_icept = fit([r["embedding_bytes"] for r in rows], [r["peak_rss_bytes"] for r in rows])
        out = {"fit": "least squares on N x dim", "step_s_per_million_elements": t_slope * 1e6, "step_s_intercept": t_icept,
               "peak_rss_bytes_per_embedding_byte": m_slope, "peak_rss_intercept_mb": m_icept / 2 ** 20}
        for label, n, d in (("wiki_same_dim", WIKI, args.dim), ("wiki_1024", WIKI, 1024)):
            emb = n * d * 2
            rss = m_slope * emb + m_icept
            out[label] = {"n": n, "dim": d, "embedding_gb": emb / 1e9, "step_s": t_slope * n * d + t_icept,
                          "peak_rss_gb": rss / 1e9, "peak_rss_over_embeddings": rss / emb}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
