"""Paper-shape dry run: random-weight models in the paper's shapes and a random fp16 index, timed.

Two bge-large-shaped BERT encoders (prior and posterior retrievers, 24 layers, 1024-d), a
Mistral-7B-shaped generator (32 layers, 4096-d, GQA 8 kv heads, SwiGLU 14336) with LoRA r = 8 on
q, k, v, o, gate, up, down, and a random fp16 index of N passages (default 21,015,324, the DPR
Wikipedia split). Prints JSON lines: encoding passages/s, one retrieval call for a batch (prior and
posterior queries together) in ms against the time to read the matrix once, one training step of
each method with K passages per retriever, peak memory, and model FLOP utilization against the
device's peak (bf16 on a GPU; a measured fp32 matmul peak on the CPU).

  python benchmarks/paper_shape.py                      # full shape (a GPU with ~140 GB)
  python benchmarks/paper_shape.py --scale 0.01         # every shape shrunk: seconds on a CPU

MFU counts model FLOPs, not hardware FLOPs: 2 x params per token forward (plus attention), and for
the generator, whose base is frozen, 2 x params backward (input gradients only, no weight
gradients); checkpointing recomputation is not counted.
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

WIKI_PASSAGES = 21_015_324
WORDS = ("the of and in to was is for on as by with he at from his an were are which this also be has or had first one their its new "
         "after who they two her she been other when there all during into school time may years more most only over city some world "
         "would where later up such used many can state about national out known university united then made").split()


def scaled(x: int, s: float, multiple: int = 1, low: int = 1) -> int:
    return max(low, multiple * round(x * s / multiple))


def shapes(s: float) -> dict:
    enc_h = scaled(1024, s, 64, 64)
    gen_h = scaled(4096, s, 128, 128)
    ls = max(s, 0.1)  # sequence lengths shrink less than widths
    return {
        "encoder": dict(hidden_size=enc_h, num_hidden_layers=scaled(24, s), num_attention_heads=enc_h // 64,
                        intermediate_size=4 * enc_h, max_position_embeddings=512, vocab_size=30522),
        "generator": dict(hidden_size=gen_h, num_hidden_layers=scaled(32, s), num_attention_heads=gen_h // 128,
                          num_key_value_heads=max(1, gen_h // 512), intermediate_size=scaled(14336, gen_h / 4096, 64, 64),
                          max_position_embeddings=4096, vocab_size=32000),
        "passage_words": scaled(100, ls, 1, 8), "question_words": scaled(12, ls, 1, 4), "answer_words": 3,
        "max_length": scaled(512, ls, 8, 32), "max_input_tokens": scaled(512, ls, 8, 32), "max_target_tokens": 32,
    }


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeat: int = 3) -> float:
    """Median seconds of `repeat` calls after one warm-up."""
    fn()
    out = []
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t)
    return float(np.median(out))


def device_peak(device: str) -> tuple[float, str]:
    """Peak FLOP/s: the bf16 dense tensor-core figure of known GPUs, else a measured matmul peak
    (fp32 on the CPU, bf16 on an unknown GPU)."""
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        for key, peak in (("H200", 989e12), ("H100", 989e12), ("A100", 312e12), ("L40S", 362e12), ("A10", 125e12)):
            if key in name:
                return peak, f"{name} bf16 dense spec"
    n = 4096 if device.startswith("cuda") else 1024
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sec = timed(lambda: [a @ b for _ in range(8)], device, repeat=5)
    return 8 * 2 * n ** 3 / sec, f"measured {dtype} matmul {n}^3"


def non_embedding_params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class SyntheticStore:
    """passage text for any row, generated from the row number (no 21M-line file needed)."""

    def __init__(self, n: int, words: int):
        self.n, self.words = n, words

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, row: int) -> dict:
        rng = np.random.default_rng(int(row))
        return {"id": f"p{row}", "title": WORDS[int(row) % len(WORDS)], "contents": " ".join(rng.choice(WORDS, self.words))}

    def get(self, rows) -> list[dict]:
        return [self[r] for r in rows]


def random_index(n: int, d: int, device: str, tmp: str):
    """A random unit-norm fp16 index: in GPU memory on a GPU, a memory-mapped file on the CPU."""
    from jsarag.model.dense_index import DenseIndex, sq_fp16_header

    chunk = 1 << 18
    if device.startswith("cuda"):
        m = torch.empty(n, d, dtype=torch.float16, device=device)
        for s in range(0, n, chunk):
            m[s: s + chunk] = torch.nn.functional.normalize(torch.randn(min(chunk, n - s), d, device=device), dim=-1).half()
        return DenseIndex.from_matrix(m)
    Path(tmp, "ix").mkdir()
    rng = np.random.default_rng(0)
    with open(Path(tmp, "ix", "index"), "wb") as f:
        f.write(sq_fp16_header(d, n))
        for s in range(0, n, chunk):
            x = rng.standard_normal((min(chunk, n - s), d), dtype=np.float32)
            f.write((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16).tobytes())
    return DenseIndex(Path(tmp, "ix"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="shrink every width, depth and length by this factor")
    ap.add_argument("--passages", type=int, default=None, help=f"index rows (default {WIKI_PASSAGES:,} x scale)")
    ap.add_argument("--batch", type=int, default=4, help="examples per training step and queries per retriever")
    ap.add_argument("--k", type=int, default=10, help="passages per retriever in the candidate set")
    ap.add_argument("--steps", type=int, default=2, help="timed training steps per method (after one warm-up)")
    ap.add_argument("--encode", type=int, default=None, help="passages to encode (default: 8 batches)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    from transformers import BertConfig, BertModel, MistralConfig, MistralForCausalLM

    from jsarag.evaluate.tiny_kb import tokenizer
    from jsarag.model.device import compute_dtype, resolve_device
    from jsarag.model.encoders import Encoder, passage_text
    from jsarag.model.generator import Generator
    from jsarag.model.latent import LatentModel
    from jsarag.train import TRAINERS
    from jsarag.train.config import method_config

    t_setup = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, "--device")
    dtype = compute_dtype(device)
    sh = shapes(args.scale)
    n_passages = args.passages or scaled(WIKI_PASSAGES, args.scale, 1, 1000)
    peak, peak_how = device_peak(device)
    emit(what="setup", device=torch.cuda.get_device_name() if device == "cuda" else "cpu", dtype=str(dtype), scale=args.scale,
         passages=n_passages, encoder=sh["encoder"], generator=sh["generator"], peak_flops=peak, peak=peak_how,
         threads=torch.get_num_threads())
    torch.manual_seed(0)
    tok = tokenizer(eos=True)
    enc_cfg = BertConfig(**sh["encoder"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    prior = Encoder(BertModel(enc_cfg), tok, "cls", True, sh["max_length"]).to(device)
    store = SyntheticStore(n_passages, sh["passage_words"])

    # -- encoding (the frozen passage encoder, in the device's dtype) --------------------------
    passage_enc = copy.deepcopy(prior).to(dtype)
    bs = 256 if device == "cuda" else 16
    texts = [passage_text(p) for p in store.get(range(args.encode or 8 * bs))]
    n_tok = int(sum(min(len(x), sh["max_length"]) for x in tok(texts)["input_ids"]))
    sec = timed(lambda: passage_enc.encode(texts, batch_size=bs), device, repeat=2)
    L, d = enc_cfg.num_hidden_layers, enc_cfg.hidden_size
    flops = 2 * non_embedding_params(passage_enc.model) * n_tok + 2 * L * d * n_tok * n_tok / len(texts)
    emit(what="encode", passages_per_s=len(texts) / sec, tokens_per_passage=n_tok / len(texts), mfu=flops / sec / peak,
         wiki_hours=WIKI_PASSAGES / (len(texts) / sec) / 3600)
    passage_enc = None  # frees it

    with tempfile.TemporaryDirectory() as tmp:
        # -- one retrieval call: prior and posterior queries of a batch together -------------
        index = random_index(n_passages, enc_cfg.hidden_size, device, tmp)
        q = torch.nn.functional.normalize(torch.randn(2 * args.batch, enc_cfg.hidden_size), dim=-1).to(device)
        sec = timed(lambda: index.search_scores(q, args.k), device, repeat=5)
        m = index.blocks[0][1] if index.blocks else index.matrix
        read = timed(lambda: m.amax() if isinstance(m, torch.Tensor)
                     else [np.asarray(m[s: s + (1 << 18)]).max() for s in range(0, len(m), 1 << 18)], device, repeat=3)
        emit(what="retrieve", queries=2 * args.batch, k=args.k, rows=n_passages, dim=enc_cfg.hidden_size, ms=1e3 * sec,
             read_matrix_once_ms=1e3 * read, ratio_to_read=sec / read, matrix_gb=n_passages * enc_cfg.hidden_size * 2 / 1e9)

        # -- one training step per method -----------------------------------------------------
        gen_cfg = MistralConfig(**sh["generator"], pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                bos_token_id=tok.cls_token_id)
        with torch.device(device):  # built in place, in the compute dtype: no fp32 host copy of 7B weights
            gen_model = MistralForCausalLM._from_config(gen_cfg, dtype=dtype)
        lora = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                                         "down_proj"]}
        gen = Generator(gen_model, tok, max_input_tokens=sh["max_input_tokens"], max_target_tokens=sh["max_target_tokens"])
        gen.enable_gradient_checkpointing()
        gen.add_lora(**lora)
        n_gen = non_embedding_params(gen.model.get_base_model())
        n_enc = non_embedding_params(prior.model)
        model = LatentModel(prior, gen, index, store, tau=0.1, posterior=LatentModel.posterior_from_prior(prior))
        rng = np.random.default_rng(1)
        examples = [{"id": f"q{i}", "question": " ".join(rng.choice(WORDS, sh["question_words"])),
                     "answers": [" ".join(rng.choice(WORDS, sh["answer_words"]))]} for i in range(args.batch * (args.steps + 1))]
        emit(what="models", generator_params=sum(p.numel() for p in gen.model.parameters()),
             lora_params=sum(p.numel() for p in gen.model.parameters() if p.requires_grad),
             encoder_params=sum(p.numel() for p in prior.parameters()))
        for method in ("rag", "vrag", "jsa"):
            cfg = method_config(method, {"k": args.k, "batch_size": args.batch, "max_steps": args.steps + 1, "lora": lora,
                                         "max_input_tokens": sh["max_input_tokens"], "max_target_tokens": sh["max_target_tokens"],
                                         "checkpoint_every": 10 ** 9})
            trainer = TRAINERS[method](cfg, model, examples, Path(tmp, method))
            model.train()
            times, tokens, cands = [], [], []
            for i, (_, batch) in enumerate(trainer.batches(0)):
                sync(device)
                t = time.perf_counter()
                loss, logs, s = trainer.compute_loss(batch)
                loss.backward()
                trainer.optimizer.step()
                trainer.optimizer.zero_grad(set_to_none=True)
                sync(device)
                if i:  # the first step warms up
                    times.append(time.perf_counter() - t)
                    tokens.append(s.n_tokens)
                    cands.append(logs["candidates"])
            sec, tok_n = float(np.mean(times)), float(np.mean(tokens))
            n_q = 2 if TRAINERS[method].uses_posterior else 1
            flops = 4 * n_gen * tok_n + 6 * n_enc * n_q * args.batch * sh["question_words"]
            emit(what="train_step", method=method, seconds=sec, candidates=float(np.mean(cands)), generator_tokens=tok_n,
                 mfu=flops / sec / peak)
            del trainer
        emit(what="peak_memory", mb=peak_memory_mb(device), kind="cuda max_memory_allocated" if device == "cuda" else "VmHWM (host)",
             setup_and_run_s=time.perf_counter() - t_setup)


if __name__ == "__main__":
    main()
