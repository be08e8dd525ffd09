"""CPU passage encoding: fp32 against int8 dynamic quantization (torch.ao, every nn.Linear), at two
batch sizes, on the same passages, the variants interleaved and each run twice (the best time kept).
Prints passages/s per variant, the speed ratios to fp32 at batch 16 (the workflow's setting), and the
cosine between the int8 and fp32 embeddings: what int8 would cost the index in fidelity.

  python benchmarks/encode_int8.py --passages resources/corpora/perldoc/collection/passages.jsonl \
      --model resources/models/retriever [--n 256 --threads 2]
"""
from __future__ import annotations

import argparse
import itertools
import json
import time

import torch

from jsarag.layout import LAYOUT
from jsarag.model.encoders import Encoder, passage_text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", default=LAYOUT.passages("perldoc"))
    ap.add_argument("--model", default=LAYOUT.model("retriever"))
    ap.add_argument("--n", type=int, default=256, help="passages, every 20th of the first 20n")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=128)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with open(args.passages, encoding="utf-8") as f:
        texts = [passage_text(json.loads(line)) for line in itertools.islice(f, 0, 20 * args.n, 20)]
    fp32 = Encoder.from_source(args.model, "mean", True, args.max_length).eval()
    int8 = Encoder.from_source(args.model, "mean", True, args.max_length).eval()
    int8.model = torch.ao.quantization.quantize_dynamic(int8.model, {torch.nn.Linear}, dtype=torch.qint8)
    variants = {"fp32_b16": (fp32, 16), "int8_b16": (int8, 16), "fp32_b64": (fp32, 64), "int8_b64": (int8, 64)}
    best, emb = {}, {}
    for _ in range(2):
        for name, (enc, bs) in variants.items():
            t = time.perf_counter()
            emb[name] = enc.encode(texts, batch_size=bs)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t)
    for name in variants:
        print(f"{name}: {len(texts) / best[name]:.1f} passages/s, x{best['fp32_b16'] / best[name]:.2f} of fp32_b16")
    cos = (emb["fp32_b16"] * emb["int8_b16"]).sum(1)
    print(f"cosine int8 vs fp32 embeddings: mean {cos.mean():.4f}, min {cos.min():.4f} over {len(texts)} passages")


if __name__ == "__main__":
    main()
