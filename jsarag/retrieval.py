"""Retrieval baselines on a dataset's test split: BM25 (Lucene) and the untrained dense retriever.

  python -m jsarag.retrieval baselines --examples resources/datasets/D/test.jsonl
      --passages resources/corpora/C/collection/passages.jsonl --bm25 resources/indexes/C/bm25
      --dense resources/indexes/C/dense --model resources/models/retriever --params JSON
      --out-dir runs/D/baselines [--k 20] [--threads 2]

Writes bm25.jsonl and dense.jsonl (id, retrieved docids, hits) and metrics.json
{"bm25": {"r@1", ...}, "dense": {...}}. hits: the passage is a gold passage (examples with
gold_passages), else the passage text contains an answer (jsarag.text.has_answer).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from jsarag import InputError
from jsarag.examples import context_text, load_examples
from jsarag.io import write_json, write_jsonl
from jsarag.metrics import mrr_at_k, recall_at_k
from jsarag.text import has_answer

log = logging.getLogger("jsarag.retrieval")
K_VALUES = (1, 5, 10, 20)


def is_hit(ex: dict, docid: str, passage: dict) -> bool:
    if ex.get("gold_passages"):
        return docid in ex["gold_passages"]
    answers = ex.get("answers") or ([ex["target"]] if ex.get("target") else [])
    return has_answer(passage["contents"], answers)


def _row(ex: dict, docids: list[str], hits: list[bool]) -> dict:
    out = {"id": ex["id"]}
    for key in ("history", "question", "answers", "target"):
        if key in ex:
            out[key] = ex[key]
    out["retrieved"], out["hits"] = docids, hits
    return out


def bm25_run(examples, index_dir: str, k: int, threads: int) -> list[dict]:
    from jsarag.java import ensure_java

    ensure_java()
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(index_dir))
    qids = [str(i) for i in range(len(examples))]
    res = searcher.batch_search([context_text(e) for e in examples], qids, k=k, threads=threads)
    rows = []
    for qid, ex in zip(qids, examples):
        hits_ = res.get(qid, [])
        docids = [h.docid for h in hits_]
        passages = [json.loads(h.lucene_document.get("raw")) for h in hits_]
        rows.append(_row(ex, docids, [is_hit(ex, d, p) for d, p in zip(docids, passages)]))
    return rows


def dense_run(examples, index_dir: str, passages: str, model: str, params: dict, k: int, threads: int) -> list[dict]:
    import faiss
    from pyserini.search.faiss import FaissSearcher

    from jsarag.encoders import Encoder
    from jsarag.passages import PassageStore

    enc = Encoder.from_source(model, params.get("pooling", "mean"), params.get("normalize", True), params.get("max_length", 256))
    q = enc.encode([context_text(e) for e in examples], batch_size=params.get("dense_batch_size", 16))
    if not params.get("normalize", True):
        faiss.normalize_L2(q)
    searcher = FaissSearcher(str(index_dir), None)
    faiss.omp_set_num_threads(threads)
    _, rows_idx = searcher.index.search(q, k)
    store = PassageStore(passages)
    if len(store) != searcher.num_docs:
        raise InputError(f"{passages}: {len(store)} passages but the dense index {index_dir} has {searcher.num_docs} rows")
    rows = []
    for ex, idx in zip(examples, rows_idx):
        idx = [int(i) for i in idx if i >= 0]
        docids = [searcher.docids[i] for i in idx]
        ps = store.get(idx)
        for d, p in zip(docids, ps):
            if p["id"] != d:
                raise InputError(f"{index_dir}/docid and {passages} disagree at a row ({d!r} vs {p['id']!r}): rebuild the index")
        rows.append(_row(ex, docids, [is_hit(ex, d, p) for d, p in zip(docids, ps)]))
    store.close()
    return rows


def summarize(rows: list[dict], k_values=K_VALUES) -> dict:
    hits = [r["hits"] for r in rows]
    out = {f"r@{k}": float(recall_at_k(hits, k)) for k in k_values}
    out["mrr@10"] = float(mrr_at_k(hits, 10))
    return out


def baselines(args) -> dict:
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as e:
        raise InputError(f"--params: not JSON ({e.msg})") from None
    examples = load_examples(args.examples)
    if not examples:
        raise InputError(f"{args.examples}: no examples")
    out_dir = Path(args.out_dir)
    metrics, timing = {}, {}
    for name in ("bm25", "dense"):
        t0 = time.time()
        if name == "bm25":
            rows = bm25_run(examples, args.bm25, args.k, args.threads)
        else:
            rows = dense_run(examples, args.dense, args.passages, args.model, params, args.k, args.threads)
        write_jsonl(out_dir / f"{name}.jsonl", rows)
        metrics[name] = summarize(rows)
        timing[name] = time.time() - t0
        log.info("%s: %s (%.1fs, %d queries)", name, metrics[name], timing[name], len(rows))
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m jsarag.retrieval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("baselines")
    b.add_argument("--examples", required=True)
    b.add_argument("--passages", required=True)
    b.add_argument("--bm25", required=True)
    b.add_argument("--dense", required=True)
    b.add_argument("--model", required=True)
    b.add_argument("--params", default="{}")
    b.add_argument("--out-dir", required=True)
    b.add_argument("--k", type=int, default=20)
    b.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    from jsarag.cli import run_cli

    run_cli(lambda: baselines(args))


if __name__ == "__main__":
    main()
