"""`python -m jsarag.train`: train one method on one dataset (the workflow's train rule).

params JSON: {"method": "rag"|"vrag"|"jsa", "train": {...merged common + method section...},
              "retriever": {"pooling", "normalize", "max_length"}, "generator": {"kind"}}
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from jsarag import InputError
from jsarag.encoders import Encoder
from jsarag.examples import load_examples
from jsarag.generator import Generator
from jsarag.io import write_json
from jsarag.passages import PassageStore
from jsarag.rag_model import RAGModel
from jsarag.retriever import DenseIndex
from jsarag.trainers import TRAINERS
from jsarag.trainers.base import seed_everything
from jsarag.trainers.config import TrainConfig


def method_config(method: str, train: dict) -> TrainConfig:
    if method not in TRAINERS:
        raise InputError(f"unknown method {method!r} (choose from {', '.join(TRAINERS)})")
    return TRAINERS[method].config_class.from_dict(train, where=f"train.{method}")


def build_model(method: str, cfg: TrainConfig, retriever: dict, generator: dict, retriever_dir: str,
                generator_dir: str, index_dir: str, passages: str) -> RAGModel:
    """Base models (+ LoRA), the index and the store. Seeded, so LoRA init is reproducible."""
    seed_everything(cfg.seed)
    prior = Encoder.from_source(retriever_dir, retriever.get("pooling", "mean"), retriever.get("normalize", True),
                                retriever.get("max_length", 256))
    gen = Generator.from_source(generator_dir, generator.get("kind", "causal"), lora=cfg.lora, instruction=cfg.instruction,
                                max_input_tokens=cfg.max_input_tokens, max_target_tokens=cfg.max_target_tokens)
    posterior = RAGModel.posterior_from_prior(prior) if TRAINERS[method].uses_posterior else None
    model = RAGModel(prior, gen, DenseIndex(index_dir), PassageStore(passages), tau=cfg.tau, posterior=posterior)
    if torch.cuda.is_available():  # bf16 generator on a GPU; retrievers stay fp32
        gen.model.to(torch.bfloat16)
        model.to_device("cuda")
    return model


def load_trained(model: RAGModel, model_dir: str) -> None:
    state = torch.load(f"{model_dir}/trainable.pt", weights_only=True)
    missing = set(state) - {n for n, _ in model.named_parameters()}
    if missing:
        raise InputError(f"{model_dir}/trainable.pt has parameters the model lacks: {sorted(missing)[:3]}")
    model.load_state_dict(state, strict=False)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m jsarag.train", description=__doc__)
    ap.add_argument("--params", required=True, help="JSON, see module doc")
    ap.add_argument("--train", required=True, help="train split JSONL")
    ap.add_argument("--passages", required=True)
    ap.add_argument("--index", required=True, help="dense index directory")
    ap.add_argument("--retriever", required=True, help="retriever model directory or source")
    ap.add_argument("--generator", required=True, help="generator model directory or source")
    ap.add_argument("--out", required=True, help="run directory")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    from jsarag.cli import run_cli

    def run():
        p = json.loads(args.params)
        train = dict(p["train"])
        if args.seed is not None:
            train["seed"] = args.seed
        cfg = method_config(p["method"], train)
        torch.set_num_threads(cfg.threads)
        examples = load_examples(args.train)
        model = build_model(p["method"], cfg, p.get("retriever", {}), p.get("generator", {}), args.retriever, args.generator,
                            args.index, args.passages)
        trainer = TRAINERS[p["method"]](cfg, model, examples, args.out)
        summary = trainer.train(progress=not args.no_progress)
        write_json(f"{args.out}/train_summary.json", {"dataset": p.get("dataset"), "seed": cfg.seed, **summary})
        trainer.drop_checkpoint()

    run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
