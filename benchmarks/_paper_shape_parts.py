"""Parts of benchmarks/paper_shape.py: generated text and tokenizers trained on it in memory, the
paper's shapes, the run's provenance (the commit, read from .git without the git binary), JSON-lines
output, and the hardware limits measured in the same run (bf16 matmul peak, device copy bandwidth).

Nothing here needs the model hub, an installed jsarag, faiss, snakemake or pyserini."""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
WIKI_PASSAGES = 21_015_324  # the DPR Wikipedia split (psgs_w100), configs/paper.yaml expect_passages
NQ_TEST = 3_610  # questions of the NQ test set (DPR's nq-test.qa.csv)
PAPER_WORLD = 4  # configs/paper.yaml trains on 4 GPUs; each rank holds 1/4 of the index rows
SEARCH_QUERIES = (2, 8, 128, 1024, NQ_TEST)
# Lengths of the paper's data, in Mistral tokens: a 100-word DPR passage with its title is about
# 200; NQ questions are about 9 words, answers 2-3 words. The caps are configs/paper.yaml's.
PASSAGE_TOKENS, QUESTION_WORDS, ANSWER_WORDS = 200, 9, 3
SYLLABLES = ("ka lo mi ne tor an re sil ve da mu pra ith on el gar shi bu zen or qua fe lin dro st ing ed er al um ba co di "
             "fu go hu ja ke ly ny po ru sa ti wu xe yo ze").split()


def scaled(x: float, s: float, multiple: int = 1, low: int = 1) -> int:
    return max(low, multiple * round(x * s / multiple))


def shapes(s: float) -> dict:
    """Widths and depths scale by s, index rows by s^2 (the search buffer by s, so that the NQ test set
    still takes several passes), sequence lengths and vocabularies by max(s, 0.1)."""
    enc_h, gen_h, ls = scaled(1024, s, 64, 64), scaled(4096, s, 128, 128), max(s, 0.1)
    vocab = scaled(30522, ls, 1, 1000), scaled(32000, ls, 1, 1000)
    return {
        "encoder": dict(hidden_size=enc_h, num_hidden_layers=scaled(24, s), num_attention_heads=enc_h // 64, intermediate_size=4 * enc_h,
                        max_position_embeddings=512, vocab_size=vocab[0], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
        "generator": dict(hidden_size=gen_h, num_hidden_layers=scaled(32, s), num_attention_heads=gen_h // 128,
                          num_key_value_heads=max(1, gen_h // 512), intermediate_size=scaled(14336, gen_h / 4096, 64, 64),
                          max_position_embeddings=32768, vocab_size=vocab[1], sliding_window=None),
        "passages": scaled(WIKI_PASSAGES, s * s, 1, 1000), "buffer_bytes": scaled(1 << 30, s, 2, 1 << 12),
        "passage_tokens": scaled(PASSAGE_TOKENS, ls, 1, 8), "caps": (scaled(512, ls, 8, 32), scaled(256, ls, 8, 16)),
        "encoder_max_length": scaled(512, ls, 8, 32), "tokenizer_lines": scaled(6000, ls, 1, 300),
    }


# -- text and tokenizers ----------------------------------------------------------------------
class Text:
    """Pseudo-English: a Zipf-distributed vocabulary of syllable words, whose long tail the tokenizers
    split into pieces as they split rare English words."""

    def __init__(self, seed: int = 0, n_words: int = 150_000):
        self.rng = rng = np.random.default_rng(seed)
        syl = np.array(SYLLABLES)
        parts, lens = rng.choice(len(syl), size=(n_words, 4)), rng.integers(1, 5, n_words)
        words = np.unique(np.array(["".join(syl[parts[i, :lens[i]]]) for i in range(n_words)]))
        rng.shuffle(words)
        self.words, self.cdf = words, np.cumsum(1.0 / np.arange(1, len(words) + 1))
        self.cdf /= self.cdf[-1]

    def line(self, n: int) -> str:
        idx = np.searchsorted(self.cdf, self.rng.random(max(1, n))).clip(max=len(self.words) - 1)
        return " ".join(self.words[idx])

    def lines(self, n: int, words: int) -> list[str]:
        return [self.line(words) for _ in range(n)]

    def passages(self, n: int, words: int) -> list[dict]:
        """n passages of about `words` words (spread +-15%, as titles and article ends vary)."""
        sizes = np.clip(self.rng.normal(words, 0.15 * words, n), max(2, words // 2), 2 * words).round().astype(int)
        return [{"id": f"p{i}", "title": self.line(2).title(), "contents": self.line(int(w))} for i, w in enumerate(sizes)]


def tokenizers(text: Text, lines: int, vocab: tuple[int, int] = (30522, 32000)):
    """(WordPiece for the BERT-shaped encoders, byte-level BPE for the Mistral-shaped generator),
    trained in memory on generated text, by default to bge-large's and Mistral's vocabulary sizes."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = text.lines(lines, 100)
    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer, wp.decoder = pre_tokenizers.BertPreTokenizer(), decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wp.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=vocab[0], special_tokens=specials, show_progress=False))
    wp.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                      special_tokens=[(t, wp.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    enc = PreTrainedTokenizerFast(tokenizer_object=wp, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                                  mask_token="[MASK]", model_max_length=512)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab[1], special_tokens=["<unk>", "<s>", "</s>"], show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bpe.token_to_id("<s>"))])
    gen = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    return enc, gen


def tokens_per_word(tok, text: Text) -> float:
    sample = text.lines(64, 100)
    return float(np.mean([len(x) for x in tok(sample, add_special_tokens=False)["input_ids"]])) / 100


# -- provenance -------------------------------------------------------------------------------
def git_commit(root: Path = ROOT) -> tuple[str | None, str]:
    """(commit, how it was found), read from .git itself (a directory, or a worktree's `gitdir:` file;
    loose refs, then packed-refs), else from $JSARAG_COMMIT: the copy on a GPU machine may lack both
    git and .git."""
    dot = root / ".git"
    try:
        gitdir = dot if dot.is_dir() else (root / dot.read_text().split(":", 1)[1].strip()).resolve()
        common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve() if (gitdir / "commondir").exists() else gitdir
        head = (gitdir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head, ".git HEAD (detached)"
        ref = head[4:].strip()
        for d in (gitdir, common):
            if (d / ref).exists():
                return (d / ref).read_text().strip(), f".git {ref}"
        for line in (common / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0], f".git packed-refs {ref}"
    except (OSError, IndexError):
        pass
    env = os.environ.get("JSARAG_COMMIT")
    return (env, "$JSARAG_COMMIT") if env else (None, "no .git and no $JSARAG_COMMIT")


def source_digest(root: Path = ROOT) -> str:
    """sha256 of the code this run executed (jsarag/ and benchmarks/ sources, configs/paper.yaml):
    pins a run even where the copy carried no .git."""
    h = hashlib.sha256()
    for p in sorted([*root.glob("jsarag/**/*.py"), *root.glob("benchmarks/*.py"), root / "configs" / "paper.yaml"]):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else f"cpu ({platform.processor() or platform.machine()})"


def environment(device: str) -> dict:
    import tokenizers
    import transformers

    import jsarag

    commit, how = git_commit()
    env = {"commit": commit, "commit_from": how, "source_sha256": source_digest(), "jsarag": str(Path(jsarag.__file__).parent),
           "device": device, "device_name": device_name(device), "python": sys.version.split()[0], "torch": torch.__version__,
           "cuda": torch.version.cuda, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
           "threads": torch.get_num_threads(), "host": platform.node(), "utc": datetime.datetime.now(datetime.UTC).isoformat()}
    try:
        import peft

        env["peft"] = peft.__version__
    except ImportError:
        env["peft"] = None
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(device)
        env.update(device_memory_bytes=p.total_memory, capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count,
                   cudnn=torch.backends.cudnn.version())
    return env


def default_out(device: str, scale: float, folder: Path | None = None) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-") if device.startswith("cuda") else "cpu"
    tag = "" if scale == 1 else f"-scale{scale:g}"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return (folder or ROOT / "benchmarks" / "results") / f"paper_shape-{slug}{tag}-{when}.jsonl"


class Rows:
    """JSON lines to stdout and to `path`, written as `path`.partial and renamed when the run completes
    (a failed or killed run leaves only the .partial, ending in an error row when it could write one).
    A non-finite number is written as null and named in the row's `nonfinite`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.f = open(self.partial, "w", encoding="utf-8")

    def emit(self, what: str, **row) -> dict:
        bad: list[str] = []
        line = json.dumps({"what": what, **_finite(row, "", bad), **({"nonfinite": bad} if bad else {})})
        print(line, flush=True)
        self.f.write(line + "\n")
        self.f.flush()
        return row

    def finish(self) -> None:
        self.f.close()
        os.replace(self.partial, self.path)

    def close(self) -> None:
        self.f.close()


def _finite(v, key: str, bad: list):
    if isinstance(v, dict):
        return {k: _finite(x, f"{key}.{k}" if key else k, bad) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x, f"{key}[{i}]", bad) for i, x in enumerate(v)]
    if isinstance(v, float | np.floating) and not math.isfinite(v):
        bad.append(key)
        return None
    return v.item() if isinstance(v, np.generic) else v


# -- timing and the hardware's limits ---------------------------------------------------------
def timed(fn, device: str, repeat: int = 1, warmup: int = 1) -> list[float]:
    """Seconds of each of `repeat` calls after `warmup` calls: CUDA events around the call on a GPU
    (the end event is recorded after fn returns, so host work inside fn counts), the wall clock on the CPU."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        if device.startswith("cuda"):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            out.append(a.elapsed_time(b) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return out


def matmul_peak(device: str) -> dict:
    """The best FLOP/s of large square matmuls in the compute dtype (bf16 on a GPU, fp32 on the CPU)."""
    cuda = device.startswith("cuda")
    n, inner, dtype = (8192, 20, torch.bfloat16) if cuda else (512, 4, torch.float32)
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    c = torch.empty(n, n, dtype=dtype, device=device)

    def run():
        for _ in range(inner):
            torch.matmul(a, b, out=c)
    sec = min(timed(run, device, repeat=5, warmup=2))
    return {"flops_per_s": inner * 2 * n ** 3 / sec, "dtype": str(dtype), "n": n, "seconds": sec}


def copy_bandwidth(device: str) -> dict:
    """Device-to-device copy of a large buffer: bytes read + written per second (what a scan that only
    reads can at most approach)."""
    nbytes = (4 << 30) if device.startswith("cuda") else (64 << 20)
    src = torch.ones(nbytes // 2, dtype=torch.float16, device=device)
    dst = torch.empty_like(src)
    sec = min(timed(lambda: dst.copy_(src), device, repeat=5, warmup=2))
    return {"bytes": nbytes, "seconds": sec, "read_write_bytes_per_s": 2 * nbytes / sec}


def reset_peak(device: str) -> None:
    """Reset the peak-memory counters: CUDA's allocator stats, or the process's peak RSS on Linux."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def memory(device: str) -> dict:
    """Allocated / reserved now and at peak (CUDA), or the resident set now and at peak (CPU host)."""
    if device.startswith("cuda"):
        return {"allocated": torch.cuda.memory_allocated(device), "reserved": torch.cuda.memory_reserved(device),
                "peak_allocated": torch.cuda.max_memory_allocated(device), "peak_reserved": torch.cuda.max_memory_reserved(device)}
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    kb = lambda key: int(status[key].split()[0]) * 1024 if key in status else None
    return {"allocated": kb("VmRSS"), "reserved": None, "peak_allocated": kb("VmHWM"), "peak_reserved": None,
            "kind": "host resident set (VmRSS / VmHWM)"}


class Prefetch:
    """Stands in for an Encoder's tokenizer during `Encoder.encode`: a background thread tokenizes
    the batches encode will ask for (its length-sorted order), so tokenizing batch i + 1 overlaps
    the device's work on batch i (the Rust tokenizer releases the GIL). A call that does not match
    the next prepared batch is tokenized on the spot and counted as a miss."""

    def __init__(self, tok, texts: list[str], batch_size: int, **kw):
        import queue
        import threading

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # Encoder.encode's order
        batches = [[texts[i] for i in order[s: s + batch_size]] for s in range(0, len(texts), batch_size)]
        self.tok, self.kw, self.hits, self.misses = tok, kw, 0, 0
        self.ready: queue.Queue = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=lambda: [self.ready.put((b, tok(b, **kw))) for b in batches], daemon=True)
        self.thread.start()

    def __call__(self, texts, **kw):
        if kw == self.kw and (self.thread.is_alive() or not self.ready.empty()):
            batch, enc = self.ready.get()
            if batch == list(texts):
                self.hits += 1
                return enc
        self.misses += 1
        return self.tok(texts, **kw)

    def __getattr__(self, name):
        return getattr(self.tok, name)
