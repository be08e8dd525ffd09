"""Paper-shape benchmark: the production path at the paper's shapes, with random weights, on one device.

Two bge-large-shaped BERT towers (prior and posterior retrievers: 24 layers, 1024-d), a
Mistral-7B-shaped generator (32 layers, 4096-d, 8 KV heads, SwiGLU 14336, bf16 on a GPU) with
configs/paper.yaml's LoRA, tokenizers trained in memory (WordPiece 30522, byte-level BPE 32000) on
generated text, and random unit fp16 indexes of 21,015,324 rows (DPR Wikipedia: evaluation's
one-GPU index) and of 1/4 of them (one rank's shard in the paper's 4-GPU training). Measured, each
with CUDA events on a GPU:

- limits: the bf16 matmul peak and the device-to-device copy bandwidth, in this run;
- encode: passages/s of the frozen passage encoder (Encoder.encode: bf16 autocast, length-sorted
  batches), tokenizing serially (as the shard job does) and overlapped with the GPU; MFU; hours
  for 21M passages on one GPU;
- search: DenseIndex.search_scores at 2, 8, 128, 1,024 and 3,610 (NQ test) queries, k = 10, over
  both indexes: ms, bytes of index read per second against the copy bandwidth, the score tile and
  the transient peak memory;
- train: each method through jsarag.train's Trainer (configs/paper.yaml: 1 example per rank,
  K = 10 per retriever, JSA-RAG with m = 50 proposals, cache false, clipping, every sync), at
  realistic lengths (passages of ~200 Mistral tokens, NQ-length questions and answers) and at the
  caps (512 input, 256 target tokens): time per phase over the timed steps after warm-up, model
  and hardware FLOPs (MFU against the measured peak), peak memory allocated and reserved (reset
  per method) against the memory plan (jsarag.plan) of the same shape. The posterior tower has
  random weights of its own, so its top-k differs from the prior's and VRAG and JSA-RAG steps
  score the largest candidate set, 2K = 20 passages; RAG scores K = 10.

  python benchmarks/paper_shape.py               # full shape: one GPU of ~140 GB, under 5 minutes
  python benchmarks/paper_shape.py --scale 0.01  # every shape shrunk: every branch, on a CPU, in seconds

Needs torch, transformers, peft, tokenizers and numpy only (no install of jsarag, no hub, no faiss,
snakemake or pyserini). Writes JSON lines to stdout and to --out (default benchmarks/results/,
named by device and date).
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the repository root (jsarag, not installed) and the helpers

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _paper_shape_parts import (  # noqa: E402
    ANSWER_WORDS,
    PAPER_WORLD,
    QUESTION_WORDS,
    ROOT,
    SEARCH_QUERIES,
    WIKI_PASSAGES,
    Prefetch,
    Rows,
    Text,
    copy_bandwidth,
    default_out,
    environment,
    matmul_peak,
    memory,
    reset_peak,
    shapes,
    timed,
    tokenizers,
    tokens_per_word,
)
from _paper_shape_train import dims, forward_flops, plan_for, run_method  # noqa: E402

# Planned seconds per section on one H200 at full shape (from the FLOPs and bytes each moves at about
# half the hardware's limits, plus model building); 275 s in all, under the 5-minute budget.
PLANNED_S = {"setup": 30, "limits": 10, "encode": 25, "search_full": 35, "search_shard": 15, "generator": 20, "train": 140}
METHODS = ("rag", "vrag", "jsa")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0,
                    help="widths and depths x scale, index rows x scale^2, lengths and vocabularies x max(scale, 0.1)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--warmup", type=int, default=2, help="untimed training steps per method (default 2)")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per method (default 5)")
    ap.add_argument("--encode-batches", type=int, default=None, help="batches to encode (default 64 on a GPU, 4 on the CPU)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of torch (default: torch's own)")
    ap.add_argument("--budget-s", type=float, default=290.0, help="sections that would start after this many seconds are skipped")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON-lines file, or a directory for the default name (default benchmarks/results/paper_shape-DEVICE-DATE.jsonl)")
    a = ap.parse_args(argv)
    if a.scale <= 0 or a.steps < 1 or a.warmup < 0:
        ap.error("--scale must be > 0, --steps >= 1, --warmup >= 0")
    return a


def random_rows(n: int, d: int, device: str, seed: int):
    """n random unit vectors in fp16: a tensor on a GPU, a numpy array on the CPU."""
    g = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty(n, d, dtype=torch.float16, device=device)
    for s in range(0, n, 1 << 20):
        x = torch.randn(min(1 << 20, n - s), d, device=device, generator=g)
        out[s: s + x.shape[0]] = torch.nn.functional.normalize(x, dim=-1).half()
    return out if device.startswith("cuda") else out.numpy()


def encode_section(R: Rows, prior, enc_tok, text: Text, words: int, batches: int, device: str, peak: float, gen_tok) -> dict:
    """Passages/s of the passage encoder, tokenizing serially and overlapped; MFU; hours for 21M."""
    from jsarag.model.encoders import passage_text

    bs = 256 if device.startswith("cuda") else 16  # configs/paper.yaml index.dense_batch_size
    texts = [passage_text(p) for p in text.passages(batches * bs, words)]
    lengths = [len(x) for x in enc_tok(texts, truncation=True, max_length=prior.max_length)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # Encoder.encode's batches
    padded = [max(lengths[i] for i in order[s: s + bs]) for s in range(0, len(texts), bs) for _ in order[s: s + bs]]
    m = dims(prior.model)
    flops, hw = sum(forward_flops(m, s) for s in lengths), sum(forward_flops(m, s) for s in padded)
    prior.encode(texts[: 2 * bs], batch_size=bs)  # warm-up
    serial = timed(lambda: prior.encode(texts, batch_size=bs), device, warmup=0)[0]
    pre = {}

    def overlapped():
        pre["p"] = prior.tokenizer = Prefetch(enc_tok, texts, bs, padding=True, truncation=True, max_length=prior.max_length,
                                              return_tensors="pt")
        try:
            prior.encode(texts, batch_size=bs)
        finally:
            prior.tokenizer = enc_tok
    sec = timed(overlapped, device, warmup=0)[0]
    pps = len(texts) / sec
    gen_len = np.mean([len(x) for x in gen_tok(texts[:256], add_special_tokens=False)["input_ids"]])
    return R.emit("encode", passages=len(texts), batch_size=bs, dtype="bf16 autocast" if device.startswith("cuda") else "fp32",
                  encoder_tokens_per_passage=float(np.mean(lengths)), generator_tokens_per_passage=float(gen_len),
                  padding_fraction=1 - sum(lengths) / sum(padded), serial_passages_per_s=len(texts) / serial, passages_per_s=pps,
                  overlap_gain=serial / sec, prefetch_hits=pre["p"].hits, prefetch_misses=pre["p"].misses,
                  mfu=flops / sec / peak, hfu=hw / sec / peak, wiki_hours=WIKI_PASSAGES / pps / 3600)


def search_section(R: Rows, name: str, index, device: str, bandwidth: float, k: int = 10) -> list[dict]:
    """Search times of `index` at each query count; bytes of the index read per second."""
    from jsarag.model.search import CPU_CHUNK_ROWS, tiling

    out, cuda = [], device.startswith("cuda")
    g = torch.Generator(device=device).manual_seed(7)
    index.search_scores(torch.nn.functional.normalize(torch.randn(2, index.dim, device=device, generator=g), dim=-1), k)  # warm-up
    for q in SEARCH_QUERIES:
        queries = torch.nn.functional.normalize(torch.randn(q, index.dim, device=device, generator=g), dim=-1)
        reset_peak(device)
        before = memory(device)["allocated"]
        index.scan.peak_score_bytes = 0
        repeat = 5 if q <= 128 else (2 if q <= 1024 else 1)
        secs = timed(lambda queries=queries: index.search_scores(queries, k), device, repeat=repeat, warmup=1 if q <= 128 else 0)
        t = tiling(q, index.ntotal, index.scan.budget_bytes, None if cuda else CPU_CHUNK_ROWS)
        passes = math.ceil(q / t.query_chunk)
        read = passes * index.ntotal * index.dim * 2
        sec = float(np.median(secs))
        after = memory(device)
        out.append(R.emit("search", index=name, rows=index.ntotal, dim=index.dim, queries=q, k=k, ms=1e3 * sec,
                          ms_each=[1e3 * s for s in secs], query_chunk=t.query_chunk, passes=passes,
                          index_bytes=index.ntotal * index.dim * 2, bytes_read=read, read_bytes_per_s=read / sec,
                          over_copy_bandwidth=read / sec / bandwidth,
                          buffer_budget_bytes=index.scan.budget_bytes, peak_score_bytes=index.peak_score_bytes,
                          transient_peak_bytes=after["peak_allocated"] - before if cuda else None))
    return out


def paper_train_config(method: str, sh: dict, steps: int, device: str):
    """configs/paper.yaml's train section for `method` on one GPU: 1 example per step (one rank's micro-batch)."""
    import yaml

    from jsarag.train.config import method_config

    train = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text())["train"]
    d = {**train["common"], **(train.get(method) or {})}
    d.update(max_steps=steps, grad_accum=1, batch_size=1, checkpoint_every=10 ** 9, threads=torch.get_num_threads(), device=device,
             max_input_tokens=sh["caps"][0], max_target_tokens=sh["caps"][1], search_buffer_mb=max(1, sh["buffer_bytes"] >> 20))
    return method_config(method, d)


def build_in_place(cls, config, device: str, dtype):
    """A transformers model built on `device` in `dtype` (no host copy of 7B weights), with random weights."""
    with torch.device(device):
        try:
            return cls._from_config(config, dtype=dtype)
        except TypeError:  # transformers before `dtype` replaced `torch_dtype`
            return cls._from_config(config, torch_dtype=dtype)


def cyclic_store(path: Path, passages: list[dict]):
    """A real PassageStore (passages.jsonl read by offsets) over a few passages, row i -> i mod n, so a
    21M-row index needs no 21M-line file."""
    from jsarag.model.passages import PassageStore

    class CyclicStore(PassageStore):
        def __getitem__(self, row: int) -> dict:
            return super().__getitem__(int(row) % len(self))

    path.write_text("".join(json.dumps(p) + "\n" for p in passages))
    return CyclicStore(path)


def main(argv=None) -> int:
    a = parse_args(argv)
    t_start = time.perf_counter()
    if a.threads:
        torch.set_num_threads(a.threads)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout's TERM still writes the error row
    from transformers import BertConfig, BertModel, MistralConfig, MistralForCausalLM

    from jsarag.model.device import compute_dtype
    from jsarag.model.encoders import Encoder
    from jsarag.model.generator import Generator
    from jsarag.model.latent import LatentModel
    from jsarag.train import TRAINERS
    from jsarag.train.distributed import DataParallel

    dp = DataParallel.from_env(a.device, "--device")  # binds cuda:0 (set_device) before anything is built
    device, cuda, sh = dp.device, dp.device.startswith("cuda"), shapes(a.scale)
    out = a.out if a.out is not None and not a.out.is_dir() else default_out(device, a.scale, a.out)
    R = Rows(out)
    deadline, done = t_start + a.budget_s, {}
    try:
        torch.manual_seed(0)
        text = Text(0)
        enc_tok, gen_tok = tokenizers(text, sh["tokenizer_lines"], (sh["encoder"]["vocab_size"], sh["generator"]["vocab_size"]))
        tpw = tokens_per_word(gen_tok, text)
        words = max(4, round(sh["passage_tokens"] / tpw))
        R.emit("setup", **environment(device), scale=a.scale, shapes=sh, planned_s=PLANNED_S, planned_total_s=sum(PLANNED_S.values()),
               budget_s=a.budget_s, tokenizer_vocab=[len(enc_tok), len(gen_tok)], generator_tokens_per_word=tpw, passage_words=words,
               setup_s=time.perf_counter() - t_start)

        def due(section: str) -> bool:
            if time.perf_counter() < deadline:
                return True
            R.emit("skipped", section=section, why=f"past --budget-s {a.budget_s:g}", elapsed_s=time.perf_counter() - t_start)
            return False

        t = time.perf_counter()
        mm, bw = matmul_peak(device), copy_bandwidth(device)
        peak, bandwidth = mm["flops_per_s"], bw["read_write_bytes_per_s"]
        R.emit("limits", matmul=mm, copy=bw, device_memory_bytes=torch.cuda.get_device_properties(device).total_memory if cuda else None,
               seconds=time.perf_counter() - t)

        enc_cfg = BertConfig(**sh["encoder"])
        with torch.device(device):
            prior = Encoder(BertModel(enc_cfg), enc_tok, "cls", True, sh["encoder_max_length"])  # paper.yaml: cls pooling, normalized
        if due("encode"):
            t = time.perf_counter()
            done["encode"] = encode_section(R, prior, enc_tok, text, words, a.encode_batches or (64 if cuda else 4), device, peak, gen_tok)
            R.emit("section", section="encode", seconds=time.perf_counter() - t)

        from jsarag.model.dense_index import DenseIndex

        n_full = sh["passages"]
        n_shard = n_full // PAPER_WORLD
        if due("search_full"):
            t = time.perf_counter()
            full = DenseIndex.from_matrix(random_rows(n_full, enc_cfg.hidden_size, device, 0), device=device,
                                          buffer_bytes=sh["buffer_bytes"])
            done["search_full"] = search_section(R, "full (one-GPU evaluation)", full, device, bandwidth)
            del full
            R.emit("section", section="search_full", seconds=time.perf_counter() - t)
        t = time.perf_counter()
        shard = DenseIndex.from_matrix(random_rows(n_shard, enc_cfg.hidden_size, device, 1), device=device, buffer_bytes=sh["buffer_bytes"])
        if due("search_shard"):
            done["search_shard"] = search_section(R, f"one rank's shard (1/{PAPER_WORLD})", shard, device, bandwidth)
            R.emit("section", section="search_shard", seconds=time.perf_counter() - t)

        t = time.perf_counter()
        cfg0 = paper_train_config("rag", sh, 1, a.device)
        gen_cfg = MistralConfig(**sh["generator"], pad_token_id=gen_tok.eos_token_id, eos_token_id=gen_tok.eos_token_id,
                                bos_token_id=gen_tok.bos_token_id)
        gen_model = build_in_place(MistralForCausalLM, gen_cfg, device, compute_dtype(device))
        gen = Generator(gen_model, gen_tok, instruction=cfg0.instruction, max_input_tokens=sh["caps"][0], max_target_tokens=sh["caps"][1])
        gen.enable_gradient_checkpointing()
        gen.add_lora(**cfg0.lora)
        # The posterior tower starts as a copy of the prior in training and drifts from it; random weights
        # of its own make the two top-k sets disjoint, the largest candidate set (2K) of a step.
        with torch.device(device):
            post = Encoder(BertModel(enc_cfg), enc_tok, "cls", True, sh["encoder_max_length"])
        parts_shape = {"generator": dims(gen.model.get_base_model(), lora=True), "prior": dims(prior.model), "posterior": dims(prior.model)}
        R.emit("models", generator_params=sum(p.numel() for p in gen.model.parameters()),
               lora_params=sum(p.numel() for p in gen.model.parameters() if p.requires_grad),
               encoder_params=sum(p.numel() for p in prior.parameters()),
               shapes=parts_shape, memory=memory(device), seconds=time.perf_counter() - t)

        gc.freeze()  # what exists now lives to the end: the collections between methods need not scan it
        in_cap, tgt_cap = sh["caps"]
        settings = {"realistic": (words, QUESTION_WORDS, ANSWER_WORDS),
                    "caps": (math.ceil(1.3 * in_cap / tpw), QUESTION_WORDS, math.ceil(1.2 * tgt_cap / tpw))}
        n_steps = a.warmup + a.steps
        done["train"] = []
        with tempfile.TemporaryDirectory() as tmp:
            for setting, (p_words, q_words, ans_words) in settings.items():
                store = cyclic_store(Path(tmp, f"{setting}.jsonl"), text.passages(1024 if cuda else 64, p_words))
                examples = [{"id": f"{setting}{i}", "question": text.line(q_words) + "?", "answers": [text.line(ans_words)]}
                            for i in range(n_steps)]
                for method in METHODS:
                    if not due(f"train {method} {setting}"):
                        continue
                    t = time.perf_counter()
                    uses_post = TRAINERS[method].uses_posterior
                    post.to(device if uses_post else "cpu")  # the rag model has no posterior tower on the device
                    model = LatentModel(prior, gen, shard, store, tau=cfg0.tau, posterior=post if uses_post else None)
                    row = run_method(method, setting, paper_train_config(method, sh, n_steps, a.device), model, examples, dp, a.warmup,
                                     Path(tmp, f"{method}-{setting}"), peak, parts_shape)
                    row.update(plan_for(gen_cfg, enc_cfg, row, lora=cfg0.lora, posterior=uses_post, buffer_bytes=sh["buffer_bytes"],
                                        compute_dtype=str(compute_dtype(device)).removeprefix("torch."), measured=(1, n_shard),
                                        paper=(PAPER_WORLD, n_full)))
                    done["train"].append(R.emit("train_step", **row, index_rows=n_shard, seconds=time.perf_counter() - t))
                    del model
                store.close()
        R.emit("summary", **summary(done, cuda), total_s=time.perf_counter() - t_start, planned_total_s=sum(PLANNED_S.values()))
        R.finish()
        return 0
    except BaseException as e:
        R.emit("error", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-4000:], elapsed_s=time.perf_counter() - t_start)
        R.close()
        raise


def summary(done: dict, cuda: bool) -> dict:
    """Each figure over its limit: encode MFU, search read rate over the copy bandwidth, step MFU, peak memory over the plan."""
    out: dict = {"limits_measured_on": "this run's bf16 matmul and device copy" if cuda else "this run's fp32 matmul and host copy (CPU)"}
    if "encode" in done:
        out["encode"] = {k: done["encode"][k] for k in ("passages_per_s", "mfu", "wiki_hours")}
    for key in ("search_full", "search_shard"):
        if key in done:
            out[key] = {r["queries"]: {"ms": r["ms"], "over_copy_bandwidth": r["over_copy_bandwidth"]} for r in done[key]}
    out["train"] = {f"{r['method']} {r['setting']}": {"step_s": r["step_s"], "mfu": r["mfu"], "hfu": r["hfu"],
                                                      "peak_allocated": r["memory"]["peak_allocated"],
                                                      "peak_over_plan": r.get("peak_allocated_over_plan")} for r in done.get("train", [])}
    return out


if __name__ == "__main__":
    from jsarag import InputError

    try:
        sys.exit(main())
    except InputError as e:  # e.g. --device cuda without a GPU
        sys.exit(f"paper_shape.py: {e}")
