"""Records of what a BM25 index and a prepared split were made from, and the hint for a gold id
that names a document split into passages."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jsarag import InputError
from jsarag.fingerprint import check_bm25_against_collection, check_split
from jsarag.io import write_jsonl


def test_bm25_record_refuses_a_changed_collection(tmp_path, monkeypatch):
    from jsarag.index import build

    col = tmp_path / "collection"
    write_jsonl(col / "passages.jsonl", [{"id": f"p{i}", "contents": f"text {i}"} for i in range(5)])

    def fake_lucene(cmd, *a, **k):  # what Lucene leaves in --index: a segments file
        out = Path(cmd[cmd.index("--index") + 1])
        (out / "segments_1").write_bytes(b"lucene")
        return type("R", (), {"returncode": 0})()

    monkeypatch.setattr(build.subprocess, "run", fake_lucene)
    build.build_bm25(col, tmp_path / "bm25")
    assert json.loads((tmp_path / "bm25" / "source.json").read_text())["rows"] == 5
    assert check_bm25_against_collection(tmp_path / "bm25", col) == 5
    with open(col / "passages.jsonl", "a") as f:
        f.write(json.dumps({"id": "p5", "contents": "new"}) + "\n")
    with pytest.raises(InputError, match=r"bm25 was made from another .*passages\.jsonl .*snakemake --forcerun bm25_index"):
        check_bm25_against_collection(tmp_path / "bm25", col)


def test_split_records_its_inputs_and_itself(tmp_path):
    from jsarag.data.corpora import prepare_corpus
    from jsarag.data.datasets import prepare_dataset
    from jsarag.layout import Layout

    src = tmp_path / "c.jsonl"
    write_jsonl(src, [{"id": "a", "contents": "Paris is in France"}, {"id": "b", "contents": "Rome is in Italy"}])
    corpus = tmp_path / "passages.jsonl"
    prepare_corpus({"format": "jsonl", "download": "c"}, src, corpus)
    qa = tmp_path / "qa.jsonl"
    write_jsonl(qa, [{"id": f"q{i}", "question": f"q{i}?", "answers": ["Paris" if i % 2 else "Rome"]} for i in range(6)])
    lay = Layout(str(tmp_path / "o"))
    cfg = {"task": "qa", "corpus": "c", "format": "jsonl", "members": {"test": {"download": "q"}}, "n_test": 2, "n_valid": 2,
           "filter_answerable": True}
    prepare_dataset("g", cfg, {"q": str(qa)}, str(corpus), lay)
    test = Path(lay.split("g", "test"))
    assert check_split(test, corpus) == 2 and json.loads(Path(str(test) + ".source.json").read_text())["sources"]["q"]["name"] == "qa.jsonl"
    with open(corpus, "a") as f:
        f.write(json.dumps({"id": "c", "contents": "Berlin"}) + "\n")
    with pytest.raises(InputError, match=r"test\.jsonl was made from another .*passages\.jsonl"):
        check_split(test, corpus)
    test.write_text(test.read_text() + "\n")
    with pytest.raises(InputError, match=r"test\.jsonl: changed since it was prepared"):
        check_split(test)


def test_gold_id_neither_passage_nor_document_is_refused(tmp_path):
    """A gold id naming a split document matches its passages (tests/test_metrics.py); one naming
    neither a passage nor a document is refused by name, with the count."""
    from jsarag.data.integrity import check_gold

    p = tmp_path / "passages.jsonl"
    write_jsonl(p, [{"id": "paris#0", "contents": "x"}, {"id": "paris#1", "contents": "y"}])
    assert check_gold({"test": [("qa.jsonl:1", {"gold_passages": ["paris"]})]}, p) == 1
    with pytest.raises(InputError, match=r"qa.jsonl:1: gold passage 'rome' is not in the corpus .*1 gold id\(s\) missing\)$"):
        check_gold({"test": [("qa.jsonl:1", {"gold_passages": ["rome"]})]}, p)
