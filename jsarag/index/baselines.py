"""Retrieval baselines on a dataset's test split: BM25 (Lucene) and the untrained dense retriever
(`python -m jsarag.index baselines`).

Writes one row per example for each baseline (id, retrieved docids, hits) and their metrics
{"bm25": {"r@1", ...}, "dense": {...}}. A hit is a gold passage where the example has them, and
answer containment otherwise (jsarag.evaluate.metrics.passage_hits); `hits_dpr` under DPR's rule beside them.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from jsarag import InputError
from jsarag.config import IndexParams
from jsarag.data.examples import context_text, load_examples
from jsarag.evaluate.metrics import dpr_hits, mrr_at_k, passage_hits, prediction_row, recall_at_k
from jsarag.io import write_json, write_jsonl
from jsarag.layout import BASELINES, LAYOUT, Layout

log = logging.getLogger("jsarag.index")
K_VALUES = (1, 5, 10, 20)


def bm25_run(examples, index_dir: str, passages: str, k: int, threads: int) -> list[dict]:
    from jsarag.index.java import ensure_java

    ensure_java()
    from pyserini.search.lucene import LuceneSearcher

    from jsarag.fingerprint import check_bm25_against_collection

    check_bm25_against_collection(index_dir, Path(passages).parent)  # built from this corpus collection, as it is now

    searcher = LuceneSearcher(str(index_dir))
    qids = [str(i) for i in range(len(examples))]
    res = searcher.batch_search([context_text(e) for e in examples], qids, k=k, threads=threads)
    rows = []
    for qid, ex in zip(qids, examples):
        hits_ = res.get(qid, [])
        docids = [h.docid for h in hits_]
        passages = [json.loads(h.lucene_document.get("raw")) for h in hits_]
        rows.append(prediction_row(ex, docids, passage_hits(ex, passages), dpr_hits(ex, passages)))
    return rows


def dense_run(examples, index_dir: str, passages: str, model: str, p: IndexParams, k: int) -> list[dict]:
    import torch

    from jsarag.fingerprint import check_index_against_passages
    from jsarag.model.dense_index import DOCID_FILE, DenseIndex
    from jsarag.model.device import resolve_device
    from jsarag.model.encoders import Encoder
    from jsarag.model.passages import PassageStore

    r = p.retriever
    device = resolve_device(p.index.device, "index.device")
    enc = Encoder.from_source(model, r.pooling, r.normalize, r.max_length).to(device)
    q = torch.from_numpy(enc.encode([context_text(e) for e in examples], batch_size=p.index.dense_batch_size))
    q = torch.nn.functional.normalize(q, dim=-1)
    check_index_against_passages(index_dir, passages)
    store = PassageStore(passages)
    index = DenseIndex(index_dir, device=device, expect_rows=len(store), buffer_bytes=p.index.search_buffer_mb << 20)
    rows_idx = index.search(q, k)
    all_ids = (Path(index_dir) / DOCID_FILE).read_text(encoding="utf-8").splitlines()
    rows = []
    for ex, idx in zip(examples, rows_idx):
        idx = [int(i) for i in idx if i >= 0]
        docids = [all_ids[i] for i in idx]
        ps = store.get(idx)
        for d, p in zip(docids, ps):
            if p["id"] != d:
                raise InputError(f"{index_dir}/docid and {passages} disagree at a row ({d!r} vs {p['id']!r}): rebuild the index")
        rows.append(prediction_row(ex, docids, passage_hits(ex, ps), dpr_hits(ex, ps)))
    store.close()
    return rows


def summarize(rows: list[dict], k_values=K_VALUES) -> dict:
    hits = [r["hits"] for r in rows]
    out = {f"r@{k}": float(recall_at_k(hits, k)) for k in k_values}
    out["mrr@10"] = float(mrr_at_k(hits, 10))
    return out


def baselines(p: IndexParams, examples_path: str, passages: str, bm25: str, dense: str, model: str, dataset: str,
              k: int = 20, layout: Layout = LAYOUT) -> dict:
    """BM25 and untrained-dense retrieval of the examples; writes the dataset's baseline files
    (layout.baseline, layout.baseline_metrics) and returns the metrics."""
    from jsarag.fingerprint import check_split

    check_split(examples_path, passages)
    examples = load_examples(examples_path)
    if not examples:
        raise InputError(f"{examples_path}: no examples")
    metrics = {}
    for name in BASELINES:
        t0 = time.time()
        if name == "bm25":
            rows = bm25_run(examples, bm25, passages, k, p.index.threads)
        else:
            rows = dense_run(examples, dense, passages, model, p, k)
        write_jsonl(layout.baseline(dataset, name), rows)
        metrics[name] = summarize(rows)
        log.info("%s: %s (%.1fs, %d queries)", name, metrics[name], time.time() - t0, len(rows))
    write_json(layout.baseline_metrics(dataset), metrics)
    return metrics
