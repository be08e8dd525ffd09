"""`python -m jsarag.train`: train one method on one dataset and seed (the workflow's train rule).

--params is the job's config as JSON (jsarag.config.run_params): method, dataset, task, the merged
train section, models.retriever and models.generator. The loss of each method is computed by its
trainer's `loss_from_scores` (jsarag/train/{rag,vrag,jsa}.py) on top of jsarag/train/objectives.py.
"""
from __future__ import annotations

import argparse
import sys

import torch

from jsarag.cli import read_params, run_cli
from jsarag.config import RunParams
from jsarag.data.examples import load_examples
from jsarag.fingerprint import check_split
from jsarag.io import write_json
from jsarag.layout import RunFiles
from jsarag.model.factory import build_model
from jsarag.train import TRAINERS
from jsarag.train.distributed import DataParallel, rank_threads


def train(p: RunParams, examples_path: str, passages: str, index: str, retriever: str, generator: str, out: str,
          progress: bool = True, valid_path: str | None = None) -> dict:
    cfg = p.train
    # the rank first: its device (cuda:LOCAL_RANK) is bound and its process group joined before
    # any model, encoder or index is built, and everything below is placed on dp.device
    dp = DataParallel.from_env(cfg.device)
    try:
        torch.set_num_threads(rank_threads(cfg.threads, dp.world))  # the job's CPUs shared by its ranks
        check_split(examples_path, passages)  # the split as prepared, from this corpus (jsarag/fingerprint.py)
        examples = load_examples(examples_path)
        trainer_cls = TRAINERS[p.method]
        model = build_model(cfg, p.retriever, p.generator, retriever, generator, index, passages, trainer_cls.uses_posterior,
                            device=dp.device, shard=dp)  # each rank holds its own rows of the index
        valid = load_examples(valid_path) if valid_path and cfg.valid_every > 0 and check_split(valid_path, passages) else None
        trainer = trainer_cls(cfg, model, examples, out, valid_examples=valid, dp=dp)
        summary = trainer.train(progress=progress and dp.is_main)
        if dp.is_main:  # one writer under torchrun
            write_json(RunFiles(out).summary, {"dataset": p.dataset, "seed": cfg.seed, **summary})
            trainer.drop_checkpoint()
        return summary
    finally:
        dp.close()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m jsarag.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", required=True, help="the job's config as JSON (see above)")
    ap.add_argument("--train", required=True, help="train split JSONL")
    ap.add_argument("--valid", default=None, help="validation split JSONL (read when train.valid_every > 0)")
    ap.add_argument("--passages", required=True, help="passage collection JSONL")
    ap.add_argument("--index", required=True, help="dense index directory")
    ap.add_argument("--retriever", required=True, help="retriever model directory or source")
    ap.add_argument("--generator", required=True, help="generator model directory or source")
    ap.add_argument("--out", required=True, help="run directory")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    run_cli(lambda: train(read_params(args.params, RunParams), args.train, args.passages, args.index, args.retriever,
                          args.generator, args.out, progress=not args.no_progress, valid_path=args.valid))


if __name__ == "__main__":
    sys.exit(main())
