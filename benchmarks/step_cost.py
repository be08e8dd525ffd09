"""Step cost of JSA-RAG and VRAG relative to RAG, measured side by side in one process; and, with
`--world 2`, data-parallel training on 2 gloo processes against 1 (jsarag/train/distributed.py).

The default mode builds the three trainers once each, at the run's own shapes (the config's train
sections: k, proposals, token limits, LoRA layers, batch size, grad_accum), with the real retriever
and generator over a dense index of the first `--n-passages` passages, and times their optimizer
steps interleaved step by step in one process: A B C, B C A, C A B, ... for `--rounds` rounds after
`--warmup` rounds (jsarag.evaluate.step_cost, the module the workflow's step_cost rule runs). It
prints each method's seconds per 100 steps and each pair's step-time ratio with its 95% CI (a
t-interval over the per-round log ratios), all from this one run. Methods timed one after another
(one child process each, as this script did before) let the machine's load change between them:
the JSA/RAG ratio read 0.87 in one such run and 1.52 in another.

`--world 2 --method jsa` instead runs the real training loop (Trainer.train: DDP, the sharded
index, every sync) for `--steps` steps in 1 process (grad_accum 2) and in 2 processes (one
micro-batch each), alternating the two layouts for `--rounds` rounds, and prints the step-time
ratio per round. Inside the 2-process run it then compares the gradient sync on the same
micro-batch, interleaved step by step: DDP (all-reduce in buckets during backward) against the
all-reduce this suite used before (every gradient copied into one fp32 buffer after backward, then
all-reduced): the time each adds beyond a backward with no communication.

Usage (after the workflow has exported models and prepared data):
  python benchmarks/step_cost.py [--dataset nq --n-passages 64 --rounds 12 --warmup 2]
  python benchmarks/step_cost.py --world 2 --method jsa [--steps 4 --rounds 3]
  (defaults: the embedded default's passages, NQ train split and exported models, from jsarag.layout)
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from jsarag.layout import LAYOUT

METHODS = ("rag", "vrag", "jsa")


def first_passages(args) -> list[dict]:
    """The first --n-passages rows of --passages (read as JSONL: no offsets needed)."""
    import itertools

    from jsarag.io import read_jsonl

    return list(itertools.islice(read_jsonl(args.passages, required=("id", "contents")), args.n_passages))


def setup(args, method: str, tmp: str, dp=None, **overrides):
    """The method's trainer on the first N real passages (exact mode), with the real models."""
    from jsarag.config import GeneratorConfig, RetrieverConfig
    from jsarag.data.examples import load_examples
    from jsarag.fingerprint import stamp_index
    from jsarag.io import write_jsonl
    from jsarag.model.dense_index import build_small_index
    from jsarag.model.encoders import Encoder
    from jsarag.model.factory import build_model
    from jsarag.model.passages import build_offsets
    from jsarag.train import TRAINERS
    from jsarag.train.config import method_config

    cfg_all = yaml.safe_load(Path(args.config).read_text())
    train = {**cfg_all["train"]["common"], **cfg_all["train"][method]}
    train.update(exact=True, k=args.n_passages, epochs=1, max_steps=args.steps + args.warmup, checkpoint_every=10**9,
                 threads=args.threads, valid_every=0, keep_best="", **overrides)
    cfg = method_config(method, train)
    Path(tmp).mkdir(parents=True, exist_ok=True)
    passages = first_passages(args)
    if dp is None or dp.is_main:
        write_jsonl(f"{tmp}/passages.jsonl", passages)
        build_offsets(f"{tmp}/passages.jsonl")
        retriever = RetrieverConfig.from_dict(cfg_all["models"]["retriever"], "models.retriever")
        enc = Encoder.from_source(args.retriever, retriever.pooling, retriever.normalize, retriever.max_length)
        build_small_index(f"{tmp}/dense", enc, passages)
        stamp_index(f"{tmp}/dense", f"{tmp}/passages.jsonl")
    if dp is not None:
        dp.barrier()
    retriever = RetrieverConfig.from_dict(cfg_all["models"]["retriever"], "models.retriever")
    generator = GeneratorConfig.from_dict(cfg_all["models"]["generator"], "models.generator")
    model = build_model(cfg, retriever, generator, args.retriever, args.generator, f"{tmp}/dense", f"{tmp}/passages.jsonl",
                        TRAINERS[method].uses_posterior, device=dp.device if dp else "cpu", shard=dp)
    n = cfg.batch_size * cfg.grad_accum * (args.steps + args.warmup)
    examples = load_examples(args.examples)[:n]
    return TRAINERS[method](cfg, model, examples, f"{tmp}/run", dp=dp)


def small_index(args, tmp: str, cfg_all: dict) -> tuple[str, str]:
    """passages.jsonl of the first --n-passages passages, with its offsets and a stamped dense index."""
    from jsarag.config import RetrieverConfig
    from jsarag.fingerprint import stamp_index
    from jsarag.io import write_jsonl
    from jsarag.model.dense_index import build_small_index
    from jsarag.model.encoders import Encoder
    from jsarag.model.passages import build_offsets

    passages = first_passages(args)
    write_jsonl(f"{tmp}/passages.jsonl", passages)
    build_offsets(f"{tmp}/passages.jsonl")
    retriever = RetrieverConfig.from_dict(cfg_all["models"]["retriever"], "models.retriever")
    build_small_index(f"{tmp}/dense", Encoder.from_source(args.retriever, retriever.pooling, retriever.normalize, retriever.max_length),
                      passages)
    stamp_index(f"{tmp}/dense", f"{tmp}/passages.jsonl")
    return f"{tmp}/passages.jsonl", f"{tmp}/dense"


def interleaved(args) -> None:
    """The methods' steps at the run's shapes, interleaved in this process (jsarag.evaluate.step_cost)."""
    from jsarag.config import RunParams, step_cost_params
    from jsarag.data.examples import load_examples
    from jsarag.evaluate.step_cost import measure

    cfg_all = yaml.safe_load(Path(args.config).read_text())
    cfg_all["train"]["common"]["threads"] = args.threads
    params = {m: RunParams.from_dict(v, f"params.{m}") for m, v in step_cost_params(cfg_all, args.dataset).items()}
    with tempfile.TemporaryDirectory() as tmp:
        passages, index = small_index(args, tmp, cfg_all)
        rec = measure(params, load_examples(args.examples), passages, index, args.retriever, args.generator, args.rounds, args.warmup)
    for m, r in rec["per_method"].items():
        print(json.dumps({"method": m, **r, "shapes": rec["shapes"][m]}), flush=True)
    print(json.dumps({"ratios": {f"{r['a']}/{r['b']}": {k: round(r[k], 4) for k in ("ratio", "lo", "hi", "ratio_of_means")}
                                 for r in rec["ratios"]},
                      "rounds": rec["rounds"], "warmup": rec["warmup"], "order": "rotated per round", "wall_seconds": rec["wall_seconds"],
                      "memory": rec["memory"]}))


def old_all_reduce(params) -> None:
    """The gradient sync this suite used before DDP: every gradient copied into one fp32 buffer after
    backward, one all-reduce, copied back (kept here only as the reference DDP is measured against)."""
    import torch
    import torch.distributed as td

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    td.all_reduce(flat)
    i = 0
    for p, g in zip(params, grads):
        p.grad = flat[i:i + g.numel()].view_as(g).to(g.device, g.dtype)
        i += g.numel()


def world_rank(args) -> None:
    """One rank of a --world run: the real training loop, then the interleaved gradient-sync comparison."""
    import torch

    from jsarag.train.distributed import DataParallel, rank_threads

    dp = DataParallel.from_env("cpu")
    torch.set_num_threads(rank_threads(args.threads, dp.world))
    trainer = setup(args, args.method, args.tmp, dp=dp, grad_accum=2, batch_size=1)
    trainer.train(progress=False)
    times = [r["step_time"] for r in trainer.log_rows if "step_time" in r][args.warmup:]
    out = {"world": dp.world, "step_s": statistics.median(times), "steps": len(times)}
    if dp.world > 1:  # the same micro-batch, three ways, interleaved: no sync, DDP's sync, the old all-reduce
        params = [p for ps in trainer.model.components().values() for p in ps]
        batch = next(iter(trainer.batches(0)))[1]
        rows = {"local": [], "ddp": [], "old_backward": [], "old_all_reduce": []}
        for _ in range(args.steps):
            for way in ("local", "ddp", "old"):
                trainer.optimizer.zero_grad(set_to_none=True)
                with dp.no_sync(trainer.net, sync=way == "ddp"):
                    loss = trainer.compute_loss(batch)[0] * dp.loss_scale(2)
                    dp.barrier()
                    t = time.perf_counter()
                    loss.backward()
                    dt = time.perf_counter() - t
                rows["old_backward" if way == "old" else way].append(dt)
                if way == "old":
                    dp.barrier()
                    t = time.perf_counter()
                    old_all_reduce(params)
                    rows["old_all_reduce"].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in rows.items()}
        out.update({"backward_no_sync_s": med["local"], "backward_ddp_s": med["ddp"],
                    "ddp_sync_beyond_backward_s": med["ddp"] - med["local"],
                    "old_sync_after_backward_s": med["old_all_reduce"] + med["old_backward"] - med["local"],
                    "trainable_params": sum(p.numel() for p in params)})
    if dp.is_main:
        print(json.dumps(out), flush=True)
    dp.close()


def launch_world(args, world: int, tmp: str) -> dict:
    """Run `world` ranks of this script (torchrun's environment, gloo); rank 0's JSON line."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = []
    for rank in range(world):
        env = {**os.environ, "WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port)}
        cmd = [sys.executable, __file__, "--world-rank", "--tmp", f"{tmp}/w{world}"] + sys.argv[1:]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate() for p in procs]
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise SystemExit(f"rank failed ({p.returncode}):\n{err[-3000:]}")
    return json.loads(outs[0][0].strip().splitlines()[-1])


def compare_world(args) -> None:
    """1 process against `--world` processes, alternated for `--rounds` rounds; ratios per round."""
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            one = launch_world(args, 1, f"{tmp}/{r}")
            many = launch_world(args, args.world, f"{tmp}/{r}")
            print(json.dumps({"round": r, "one": one, "many": many}), flush=True)
            rounds.append((one, many))
    ratio = [o["step_s"] / m["step_s"] for o, m in rounds]
    print(json.dumps({
        "method": args.method, "world": args.world, "speedup_per_round": ratio, "speedup_median": statistics.median(ratio),
        "ddp_sync_beyond_backward_s": statistics.median(m["ddp_sync_beyond_backward_s"] for _, m in rounds),
        "old_sync_after_backward_s": statistics.median(m["old_sync_after_backward_s"] for _, m in rounds),
    }))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--passages", default=LAYOUT.passages("vital"))
    ap.add_argument("--dataset", default="nq", help="the dataset whose run shapes (config) are measured")
    ap.add_argument("--examples", default=LAYOUT.split("nq", "train"))
    ap.add_argument("--retriever", default=LAYOUT.model("retriever"))
    ap.add_argument("--generator", default=LAYOUT.model("generator"))
    ap.add_argument("--n-passages", type=int, default=64, help="passages of the index (--world: of the exact candidate set)")
    ap.add_argument("--steps", type=int, default=8, help="--world: training steps per layout")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds (--world: steps) first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--world", type=int, default=0, help="compare this many gloo processes against 1 (training loop, DDP)")
    ap.add_argument("--method", choices=METHODS, default="jsa", help="the method of a --world run")
    ap.add_argument("--rounds", type=int, default=None, help="timed interleaved rounds (default 12); --world: alternations of 1 "
                    "and --world processes (default 3)")
    ap.add_argument("--world-rank", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.world_rank:
        return world_rank(args)
    if args.world:
        args.rounds = args.rounds or 3
        return compare_world(args)
    args.rounds = args.rounds or 12
    return interleaved(args)


if __name__ == "__main__":
    main()
