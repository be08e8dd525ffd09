"""Sharded, resumable dense encoding (`python -m jsarag.index dense-shard|dense-merge`).

Shard i of n encodes rows [i*N//n, (i+1)*N//n) of passages.jsonl (row = line) with the frozen
passage encoder, bf16 on a GPU and fp32 on the CPU, and writes them as an fp16 .npy, atomically:
a killed job leaves no shard file, so only that shard is redone. The merge streams the shards, in
order, into one FAISS fp16 index file (jsarag.model.dense_index) with its docid list, checking that
the rows add up to the passage count.
"""
from __future__ import annotations

import json
import logging
import time
from itertools import islice
from pathlib import Path

import numpy as np

from jsarag import InputError
from jsarag.config import IndexParams
from jsarag.io import atomic_dir, atomic_path

log = logging.getLogger("jsarag.index")
CHUNK = 4096


def shard_range(n_rows: int, shards: int, shard: int) -> tuple[int, int]:
    """The [start, stop) rows of shard `shard` of `shards` (equal slices, the remainder spread)."""
    if not 0 <= shard < shards:
        raise InputError(f"shard {shard} is out of range for {shards} shards")
    return shard * n_rows // shards, (shard + 1) * n_rows // shards


def load_encoder(model: str, p: IndexParams):
    """The passage encoder on the configured device (cuda:N for local rank N). On a GPU it encodes
    under bf16 autocast, the precision of the query encoders in training and evaluation (the same
    Encoder forward), so passages and queries are encoded alike; fp32 on the CPU."""
    from jsarag.model.device import resolve_device
    from jsarag.model.encoders import Encoder
    from jsarag.model.sources import load_model, load_tokenizer

    device = resolve_device(p.index.device, "index.device")
    r = p.retriever
    enc = Encoder(load_model(model, "encoder", device=device), load_tokenizer(model), r.pooling, r.normalize, r.max_length)
    return enc.to(device)


def read_rows(passages: str | Path, start: int, stop: int) -> list[dict]:
    """Lines [start, stop) of a passage file, read from the byte offset of `start`."""
    from jsarag.model.passages import PassageStore

    store = PassageStore(passages)
    store._f.seek(int(store.offsets[start]) if start < len(store) else 0)
    rows = [json.loads(line) for line in islice((ln for ln in store._f if ln.strip()), stop - start)]
    store.close()
    return rows


def encode_shard(passages: str | Path, model: str, out: str | Path, p: IndexParams, shard: int, chunk: int = CHUNK) -> int:
    """Encode shard `shard` of `p.index.shards` into `out` (an fp16 [rows, d] .npy); rows written."""
    from jsarag.model.dense_index import encode_passages
    from jsarag.model.passages import PassageStore

    store = PassageStore(passages)
    n = len(store)
    store.close()
    if n == 0:
        raise InputError(f"{passages}: no passages")
    start, stop = shard_range(n, p.index.shards, shard)
    enc = load_encoder(model, p)
    t0 = time.time()
    if stop == start:  # more shards than passages: an empty shard
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.save(f, np.zeros((0, enc.dim), dtype=np.float16))
        return 0
    with atomic_path(out) as tmp:
        mat = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(stop - start, enc.dim))
        for s in range(start, stop, chunk):
            batch = read_rows(passages, s, min(s + chunk, stop))
            for b in batch:
                if "id" not in b or "contents" not in b:
                    raise InputError(f"{passages}:{s + 1}: a passage needs id and contents")
            mat[s - start: s - start + len(batch)] = encode_passages(enc, batch, p.index.dense_batch_size)
            done = s - start + len(batch)
            log.info("shard %d/%d: %d/%d passages (%.1f/s)", shard, p.index.shards, done, stop - start, done / (time.time() - t0))
        mat.flush()
        del mat
    return stop - start


def merge_shards(shard_files: list[str], passages: str | Path, out: str | Path, chunk_rows: int = 1 << 16) -> int:
    """Stream the shards into the dense index at `out` (FaissSearcher layout); rows written."""
    from jsarag.model.dense_index import INDEX_FILE, sq_fp16_header, write_docids
    from jsarag.model.passages import PassageStore

    mats = [np.load(f, mmap_mode="r") for f in shard_files]
    dims = {m.shape[1] for m in mats}
    if len(dims) != 1:
        raise InputError(f"shards disagree on the embedding size: {sorted(dims)} ({', '.join(shard_files)})")
    n = sum(m.shape[0] for m in mats)
    store = PassageStore(passages)
    if n != len(store):
        raise InputError(f"{passages}: {len(store)} passages but the {len(mats)} shards hold {n} rows: re-encode the shards")
    with atomic_dir(out) as tmp:
        with open(Path(tmp) / INDEX_FILE, "wb") as f:
            f.write(sq_fp16_header(dims.pop(), n))
            for m in mats:
                for s in range(0, m.shape[0], chunk_rows):
                    f.write(np.ascontiguousarray(m[s: s + chunk_rows]).tobytes())
        store._f.seek(0)
        write_docids(tmp, (json.loads(line)["id"] for line in store._f if line.strip()))
    store.close()
    return n


def build_dense(passages: str | Path, model: str, out: str | Path, p: IndexParams, shard_dir: str | Path) -> int:
    """One-shot build: every shard in turn (skipping those already written), then the merge."""
    files = []
    for i in range(p.index.shards):
        f = Path(shard_dir) / f"{i}.f16.npy"
        if not f.exists():
            Path(shard_dir).mkdir(parents=True, exist_ok=True)
            encode_shard(passages, model, f, p, i)
        files.append(str(f))
    return merge_shards(files, passages, out)
