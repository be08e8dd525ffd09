"""Sharded, resumable dense encoding (`python -m jsarag.index dense-shard|dense-merge`).

Shard i of n encodes rows [i*N//n, (i+1)*N//n) of passages.jsonl (row = line) with the frozen
passage encoder, bf16 on a GPU and fp32 on the CPU, and writes them as an fp16 .npy, atomically:
a killed job leaves no shard file, so only that shard is redone. The merge streams the shards, in
order, into one FAISS fp16 index file (jsarag.model.dense_index) with its docid list, checking that
the rows add up to the passage count.

Each shard records the passages.jsonl it was encoded from (size and sampled hash, jsarag.fingerprint)
and its row range; the merge refuses a shard of another passages.jsonl or another slicing, and
records the passages in the index folder (`source.json`), which
`jsarag.fingerprint.check_index_against_passages` checks at load.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from jsarag import InputError
from jsarag.config import IndexParams
from jsarag.fingerprint import check, fingerprint, forget, stamp, stamp_index
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
    """Rows [start, stop) of a passage file, read from the byte offset of `start`: exactly
    stop - start of them, or an InputError naming the file (and the line of a malformed one)."""
    from jsarag.model.passages import PassageStore

    with PassageStore(passages) as store:
        return store.read_range(start, stop)


def shard_rebuild(out: str | Path) -> str:
    return f"delete {out} and rerun (snakemake reruns dense_shard), or: snakemake --forcerun dense_shard"


def encode_shard(passages: str | Path, model: str, out: str | Path, p: IndexParams, shard: int, chunk: int = CHUNK) -> int:
    """Encode shard `shard` of `p.index.shards` into `out` (an fp16 [rows, d] .npy); rows written."""
    from jsarag.model.dense_index import encode_passages
    from jsarag.model.passages import PassageStore

    with PassageStore(passages) as store:  # refuses a passages.jsonl changed since its offsets (and an empty one)
        before = fingerprint(passages)
        n = len(store)
        start, stop = shard_range(n, p.index.shards, shard)
        enc = load_encoder(model, p)
        t0 = time.time()
        forget(out)
        if stop == start:  # more shards than passages: an empty shard
            with atomic_path(out) as tmp, open(tmp, "wb") as f:
                np.save(f, np.zeros((0, enc.dim), dtype=np.float16))
        else:
            with atomic_path(out) as tmp:
                mat = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(stop - start, enc.dim))
                for s in range(start, stop, chunk):
                    batch = store.read_range(s, min(s + chunk, stop))  # exactly these rows, or an InputError
                    mat[s - start: s - start + len(batch)] = encode_passages(enc, batch, p.index.dense_batch_size)
                    done = s - start + len(batch)
                    log.info("shard %d/%d: %d/%d passages (%.1f/s)", shard, p.index.shards, done, stop - start, done / (time.time() - t0))
                mat.flush()
                del mat
    if fingerprint(passages) != before:  # the shard stays without a record: the merge refuses it
        raise InputError(f"{passages} changed while shard {shard} was encoded; rerun the shard")
    stamp(out, {"passages": passages}, stop - start, shard=shard, shards=p.index.shards, start=start, stop=stop)
    return stop - start


def merge_shards(shard_files: list[str], passages: str | Path, out: str | Path, chunk_rows: int = 1 << 16) -> int:
    """Stream the shards into the dense index at `out` (FaissSearcher layout); rows written."""
    from jsarag.model.dense_index import INDEX_FILE, sq_fp16_header, write_docids
    from jsarag.model.passages import PassageStore

    store = PassageStore(passages)
    mats = []
    for f in shard_files:
        try:
            mats.append(np.load(f, mmap_mode="r"))
        except (OSError, ValueError) as e:
            raise InputError(f"{f}: not a readable shard ({e}); rebuild it: {shard_rebuild(f)}") from None
    dims = {m.shape[1] for m in mats}
    if len(dims) != 1:
        raise InputError(f"shards disagree on the embedding size: {sorted(dims)} ({', '.join(shard_files)})")
    n = sum(m.shape[0] for m in mats)
    if n != len(store):
        raise InputError(f"{passages}: {len(store)} passages but the {len(mats)} shards hold {n} rows: re-encode the shards")
    for i, (f, m) in enumerate(zip(shard_files, mats)):
        rec = check(f, {"passages": passages}, shard_rebuild(f), rows=m.shape[0])
        want = shard_range(len(store), len(shard_files), i)
        if (rec.get("start"), rec.get("stop")) != want:
            raise InputError(f"{f}: holds rows [{rec.get('start')}, {rec.get('stop')}) but shard {i} of {len(shard_files)} over "
                             f"{len(store)} passages is [{want[0]}, {want[1]}); rebuild it: {shard_rebuild(f)}")
    with atomic_dir(out) as tmp:
        with open(Path(tmp) / INDEX_FILE, "wb") as f:
            f.write(sq_fp16_header(dims.pop(), n))
            for m in mats:
                for s in range(0, m.shape[0], chunk_rows):
                    f.write(np.ascontiguousarray(m[s: s + chunk_rows]).tobytes())
        write_docids(tmp, (p["id"] for s in range(0, n, chunk_rows) for p in store.read_range(s, min(s + chunk_rows, n))))
        stamp_index(out, passages, into=tmp)
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
