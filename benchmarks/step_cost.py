"""Step cost of JSA-RAG and VRAG relative to RAG, measured side by side in one run.

Every method scores the same candidate set (exact mode over the same N real passages, so the
candidate count is equal), with the real retriever and generator. Each method runs in its own
child process (so peak memory is its own); the parent prints the ratios as JSON.

Usage (after the workflow has exported models and prepared data):
  python benchmarks/step_cost.py [--n-passages 8 --steps 8 --warmup 2]
  (defaults: the embedded default's passages, NQ train split and exported models, from jsarag.layout)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from jsarag.layout import LAYOUT

METHODS = ("rag", "vrag", "jsa")


def vm(field: str) -> float:
    """A /proc/self/status memory field in MiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def child(args) -> None:
    import torch

    from jsarag.config import GeneratorConfig, RetrieverConfig
    from jsarag.data.examples import load_examples
    from jsarag.io import write_jsonl
    from jsarag.model.dense_index import build_small_index
    from jsarag.model.encoders import Encoder
    from jsarag.model.factory import build_model
    from jsarag.model.passages import PassageStore, build_offsets
    from jsarag.train import TRAINERS
    from jsarag.train.config import method_config

    torch.set_num_threads(args.threads)
    cfg_all = yaml.safe_load(Path(args.config).read_text())
    train = {**cfg_all["train"]["common"], **cfg_all["train"][args.child]}
    train.update(exact=True, k=args.n_passages, epochs=1, max_steps=args.steps + args.warmup, checkpoint_every=10**9,
                 threads=args.threads)
    cfg = method_config(args.child, train)
    with tempfile.TemporaryDirectory() as tmp:
        store = PassageStore(args.passages)
        passages = store.get(range(args.n_passages))
        write_jsonl(f"{tmp}/passages.jsonl", passages)
        build_offsets(f"{tmp}/passages.jsonl")
        retriever = RetrieverConfig.from_dict(cfg_all["models"]["retriever"], "models.retriever")
        generator = GeneratorConfig.from_dict(cfg_all["models"]["generator"], "models.generator")
        enc = Encoder.from_source(args.retriever, retriever.pooling, retriever.normalize, retriever.max_length)
        build_small_index(f"{tmp}/dense", enc, passages)
        model = build_model(cfg, retriever, generator, args.retriever, args.generator, f"{tmp}/dense", f"{tmp}/passages.jsonl",
                            TRAINERS[args.child].uses_posterior)
        examples = load_examples(args.examples)[: cfg.batch_size * (args.steps + args.warmup)]
        trainer = TRAINERS[args.child](cfg, model, examples, f"{tmp}/run")
        model.train()
        batches = list(trainer.batches(0))
        for _, batch in batches[: args.warmup]:
            trainer.compute_loss(batch)[0].backward()
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)
        rss0 = vm("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (VmHWM)
        times, cands = [], []
        for _, batch in batches[args.warmup:]:
            t = time.perf_counter()
            loss, logs, _ = trainer.compute_loss(batch)
            loss.backward()
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t)
            cands.append(logs["candidates"])
        print(json.dumps({"method": args.child, "step_s": sum(times) / len(times), "steps": len(times),
                          "candidates": sum(cands) / len(cands), "peak_rss_mb": vm("VmHWM"),
                          "step_peak_over_rss_mb": vm("VmHWM") - rss0}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--passages", default=LAYOUT.passages("vital"))
    ap.add_argument("--examples", default=LAYOUT.split("nq", "train"))
    ap.add_argument("--retriever", default=LAYOUT.model("retriever"))
    ap.add_argument("--generator", default=LAYOUT.model("generator"))
    ap.add_argument("--n-passages", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    res = {}
    for m in METHODS:
        cmd = [sys.executable, __file__, "--child", m] + [a for a in sys.argv[1:]]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        res[m] = json.loads(out)
        print(out, flush=True)
    r = res["rag"]
    print(json.dumps({
        "candidates": {m: res[m]["candidates"] for m in METHODS},
        "jsa/rag_step_time": res["jsa"]["step_s"] / r["step_s"], "vrag/rag_step_time": res["vrag"]["step_s"] / r["step_s"],
        "jsa/rag_peak_rss": res["jsa"]["peak_rss_mb"] / r["peak_rss_mb"],
        "vrag/rag_peak_rss": res["vrag"]["peak_rss_mb"] / r["peak_rss_mb"],
        "jsa/rag_step_peak_over_rss": res["jsa"]["step_peak_over_rss_mb"] / r["step_peak_over_rss_mb"],
        "vrag/rag_step_peak_over_rss": res["vrag"]["step_peak_over_rss_mb"] / r["step_peak_over_rss_mb"],
    }))


if __name__ == "__main__":
    main()
