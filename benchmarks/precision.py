"""Retrieval quality of bf16 against fp32 encodings, on the embedded default's corpus and questions.

On a GPU, passages are encoded under bf16 autocast (jsarag/index/shards.py) and so are the prior's
and posterior's queries (jsarag/model/encoders.py). This prints R@k of the untrained dense
retriever for three encodings of the same passages and questions, on the CPU (bf16 autocast:
bf16 matmul inputs, fp32 accumulation, as on a GPU):
  fp32 / fp32     passages and queries in fp32 (the CPU path)
  bf16 / bf16     both under bf16 autocast (the GPU path now)
  bf16 / fp32     bf16 passages, fp32 queries (the GPU path before: queries and passages differed)
and the change of each against fp32 / fp32, with the paired bootstrap CI of the R@k difference.

  python benchmarks/precision.py [--split test --max-passages 0]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsarag.data.examples import context_text, load_examples  # noqa: E402
from jsarag.evaluate.metrics import passage_hits  # noqa: E402
from jsarag.layout import LAYOUT  # noqa: E402
from jsarag.model.dense_index import DenseIndex, encode_passages  # noqa: E402
from jsarag.model.encoders import Encoder  # noqa: E402
from jsarag.model.passages import PassageStore  # noqa: E402

KS = (1, 5, 20)


def encode(enc: Encoder, texts_or_passages, bf16: bool, passages: bool) -> np.ndarray:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if passages:
            return encode_passages(enc, texts_or_passages, batch_size=64)
        return enc.encode(texts_or_passages, batch_size=64)


def hits_at(index: DenseIndex, q: np.ndarray, examples, store, k: int) -> np.ndarray:
    rows = index.search(torch.from_numpy(q), k)
    return np.array([[bool(h) for h in passage_hits(e, store.get(r))] for e, r in zip(examples, rows)])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="vital")
    ap.add_argument("--dataset", default="nq")
    ap.add_argument("--split", default="test")
    ap.add_argument("--retriever", default=LAYOUT.model("retriever"))
    ap.add_argument("--max-passages", type=int, default=0, help="encode only the first N passages (0: all)")
    ap.add_argument("--boot", type=int, default=2000)
    args = ap.parse_args()
    torch.manual_seed(0)
    enc = Encoder.from_source(args.retriever)  # the embedded default's retriever: mean pooling, normalized
    enc.eval()
    store = PassageStore(LAYOUT.passages(args.corpus))
    n = len(store) if args.max_passages <= 0 else min(args.max_passages, len(store))
    examples = load_examples(LAYOUT.split(args.dataset, args.split))
    texts = [context_text(e) for e in examples]
    mats, queries, secs = {}, {}, {}
    for bf16 in (False, True):
        name = "bf16" if bf16 else "fp32"
        t = time.perf_counter()
        mats[name] = np.concatenate([encode(enc, store.get(range(s, min(s + 4096, n))), bf16, True) for s in range(0, n, 4096)])
        queries[name] = encode(enc, texts, bf16, False)
        secs[name] = time.perf_counter() - t
    variants = {"fp32/fp32": ("fp32", "fp32"), "bf16/bf16": ("bf16", "bf16"), "bf16/fp32": ("bf16", "fp32")}
    hits = {v: hits_at(DenseIndex.from_matrix(mats[p].astype(np.float16)), queries[q], examples, store, max(KS))
            for v, (p, q) in variants.items()}
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(examples), (args.boot, len(examples)))
    out = {"corpus": args.corpus, "passages": n, "questions": len(examples), "encode_seconds": secs,
           "cosine_passages_fp32_vs_bf16": float(np.mean(np.sum(mats["fp32"] * mats["bf16"], 1)))}
    for v, h in hits.items():
        row = {}
        for k in KS:
            r = h[:, :k].any(1).astype(float)
            base = hits["fp32/fp32"][:, :k].any(1).astype(float)
            diff = r - base
            boot = diff[idx].mean(1)
            row[f"r@{k}"] = 100 * r.mean()
            row[f"r@{k}_minus_fp32"] = 100 * diff.mean()
            row[f"r@{k}_ci95"] = [100 * float(np.quantile(boot, 0.025)), 100 * float(np.quantile(boot, 0.975))]
            row[f"r@{k}_questions_changed"] = int((diff != 0).sum())
        out[v] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
