"""The bytes and the write time of a training checkpoint, at a scaled paper shape, extrapolated to
the paper's (jsarag/train/checkpoint.py writes it; the SIGTERM lead of the train job is sized from
it in jsarag/resources.py).

The scaled shape keeps every tensor at its paper size and keeps fewer layers: `--layers L` of the
24 layers of each of the two bge-large query encoders (prior and posterior; fp32, 1024-d, MLP 4096)
and L * 32 / 24 of Mistral-7B's 32 layers of LoRA r = 8 on q, k, v, o, gate, up, down; embeddings
are scaled the same way. Each parameter gets AdamW's state from one real optimizer step, and the
checkpoint is written as the trainer writes it (a temp file, fsync, last.pt -> previous.pt, rename,
fsync of the folder), then read as a resume reads it (CRC-32 check, torch.load). Bytes and
seconds are linear in the parameters, so the paper's figures are the measured ones times
(paper parameters / scaled parameters).

  python benchmarks/checkpoint_write.py --layers 3 --dir /path/on/the/shared/filesystem
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, without installing the project

from jsarag.train.checkpoint import CheckpointFiles, checkpoint_bytes, mistral_7b_lora_params, read_checkpoint  # noqa: E402

BGE_LARGE = 335_141_888  # BertModel(bge-large-en-v1.5): 24 layers, 1024-d, vocabulary 30522, with its pooler
POOLER = 1024 * 1024 + 1024  # frozen: not trained, not saved (jsarag.model.encoders)


def encoder_shapes(layers: int) -> list[tuple[int, ...]]:
    h, f = 1024, 4096
    layer = [(h, h), (h,)] * 4 + [(h,), (h,)] + [(f, h), (f,), (h, f), (h,)] + [(h,), (h,)]
    emb_rows = round((30522 + 512 + 2) * layers / 24)
    return [(emb_rows, h), (h,), (h,)] + layer * layers


def lora_shapes(layers: int, r: int = 8) -> list[tuple[int, ...]]:
    h, kv, mlp = 4096, 1024, 14336
    dims = [(h, h), (h, kv), (h, kv), (h, h), (h, mlp), (h, mlp), (mlp, h)]
    return [s for i, o in dims for s in ((r, i), (o, r))] * layers


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=3, help="encoder layers of 24 kept (generator layers: x 32/24)")
    ap.add_argument("--dir", default=None, help="where to write (default: a temp folder)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    gen_layers = max(1, round(args.layers * 32 / 24))
    params = [torch.nn.Parameter(torch.randn(s) * 0.02) for _ in range(2) for s in encoder_shapes(args.layers)]
    params += [torch.nn.Parameter(torch.randn(s) * 0.02) for s in lora_shapes(gen_layers)]
    opt = torch.optim.AdamW(params, lr=1e-5)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    n = sum(p.numel() for p in params)
    paper = 2 * (BGE_LARGE - POOLER) + mistral_7b_lora_params(8)
    ck = {"fingerprint": "benchmark", "step": 1, "model": {f"p{i}": p.detach() for i, p in enumerate(params)},
          "optimizer": opt.state_dict(), "scheduler": {}, "state": {"cache": {f"q{i}": [i % 1000] for i in range(80_000)}},
          "log": [{"step": i, "loss": 1.0} for i in range(1000)], "rng": {"torch": torch.get_rng_state()}, "index_refresh_step": None}
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        files = CheckpointFiles(d)
        for i in range(args.repeat):
            t0 = time.perf_counter()
            files.write(ck)
            write_s = time.perf_counter() - t0
            size = files.latest.stat().st_size
            t0 = time.perf_counter()
            read_checkpoint(files.latest)
            read_s = time.perf_counter() - t0
            x = paper / n
            print(json.dumps({"repeat": i, "dir": d, "trainable_params": n, "bytes": size, "tensor_bytes": checkpoint_bytes(n),
                              "write_s": round(write_s, 2), "write_MB_per_s": round(size / write_s / 1e6), "read_s": round(read_s, 2),
                              "paper_trainable_params": paper, "paper_bytes": round(size * x), "paper_write_s": round(write_s * x, 1),
                              "paper_read_s": round(read_s * x, 1)}), flush=True)


if __name__ == "__main__":
    main()
