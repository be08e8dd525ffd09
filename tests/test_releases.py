"""The readers on the traits of the real releases (tests/fixtures/data/README.md says where each
trait comes from): TriviaQA's canonical answer and FiD split index, OR-QuAC's unanswerable turns,
DoQA's contexts shared between dialogs, MS MARCO's double-encoded passages."""
from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from jsarag import InputError
from jsarag.data.corpora import prepare_corpus
from jsarag.data.datasets import prepare_dataset
from jsarag.data.examples import target_text
from jsarag.data.mojibake import repair
from jsarag.data.questions import UNANSWERABLE, doqa_passage_id
from jsarag.data.targets import visit
from jsarag.layout import SPLITS, Layout

FIX = Path(__file__).parent / "fixtures" / "data"
TQA_MEMBERS = {"train": "triviaqa-unfiltered/unfiltered-web-train.json", "test": "triviaqa-unfiltered/unfiltered-web-dev.json"}


def read(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def tar_gz(dst: Path, members: dict[str, Path]) -> Path:
    with tarfile.open(dst, "w:gz") as t:
        for name, p in members.items():
            t.add(p, arcname=name)
    return dst


def splits(lay: Layout, name: str) -> dict[str, list[dict]]:
    return {s: read(lay.split(name, s)) for s in SPLITS}


# --- TriviaQA: the release, its canonical answer, FiD's split index ---------------------------
@pytest.fixture
def tqa_files(tmp_path):
    d = FIX / "triviaqa"
    release = tar_gz(tmp_path / "tqa_release.tar.gz", {m: d / m for m in TQA_MEMBERS.values()})
    names = [f"TQA.{s}.idx.json" for s in ("train", "dev", "test")]
    index = tar_gz(tmp_path / "fid_dataindex.tar.gz", {n: d / "dataindex" / n for n in names})
    return {"tqa_release": str(release), "fid_dataindex": str(index)}


def tqa_cfg(**kw):
    """As configs/paper.yaml has it, with the fixture's counts pinned."""
    members = {"train": TQA_MEMBERS["train"], "dev": TQA_MEMBERS["train"], "test": TQA_MEMBERS["test"],
               **{f"{s}_index": {"download": "fid_dataindex", "member": f"TQA.{s}.idx.json"} for s in ("train", "dev", "test")}}
    return {"task": "qa", "corpus": "wiki", "format": "triviaqa_release", "download": "tqa_release", "members": members,
            "expect": {"train": 4, "dev": 2, "test": 3}, **kw}


def test_triviaqa_trains_on_the_canonical_value_and_scores_on_the_aliases(tmp_path, tqa_files):
    lay = Layout(str(tmp_path / "o"))
    stats = prepare_dataset("tqa", tqa_cfg(), tqa_files, None, lay)
    assert stats["read"] == {"train": 4, "dev": 2, "test": 3} and stats["written"] == {"train": 4, "valid": 2, "test": 3}
    got = splits(lay, "tqa")
    # FiD's index: train = positions [0, 3, 1, 4] of unfiltered-web-train, dev = [5, 2], test = all of unfiltered-web-dev
    assert [e["id"] for e in got["train"]] == ["tc_1394", "qb_7701", "bt_2871", "tc_2250"]
    assert [e["id"] for e in got["valid"]] == ["dpql_5032", "sfq_4412"]
    assert [e["id"] for e in got["test"]] == ["tc_561", "wh_1201", "odql_10344"]
    by_id = {e["id"]: e for s in SPLITS for e in got[s]}
    green = by_id["tc_1394"]
    assert green["answers"][0] == "Greenishly" and {"Rgb(0, 255, 0)", "\U0001F49A", "Green"} <= set(green["answers"])
    assert green["target"] == "Green" and target_text(green) == "Green" and visit(green, 0, 3) is green
    exile = by_id["bt_2871"]
    assert exile["answers"][:2] == ["Transported for life", "Internal exile"] and target_text(exile) == "Penal transportation"
    assert target_text(by_id["sfq_4412"]) == "Anne Boleyn"  # Value "ANNE BOLEYN", title-cased as FiD and Atlas do
    assert by_id["tc_561"]["answers"][0] == "Milchige" and target_text(by_id["tc_561"]) == "Kosher"
    assert stats["targets"] == {"canonical": 9}
    assert stats["reader"] == {"train": {"title_cased_targets": 0}, "dev": {"title_cased_targets": 1}, "test": {"title_cased_targets": 0}}
    assert json.loads(Path(lay.dataset_stats("tqa")).read_text())["reader"]["dev"] == {"title_cased_targets": 1}


def test_triviaqa_random_target_stays_available(tmp_path, tqa_files):
    lay = Layout(str(tmp_path / "o"))
    stats = prepare_dataset("tqa", tqa_cfg(target="random"), tqa_files, None, lay)
    assert stats["targets"] == {"random": 9} and "reader" not in stats
    green = next(e for e in read(lay.split("tqa", "train")) if e["id"] == "tc_1394")
    assert "target" not in green and green["target_rule"] == "random"
    assert {target_text(visit(green, 0, e)) for e in range(200)} == set(green["answers"])


def test_triviaqa_release_problems_are_named(tmp_path, tqa_files):
    lay = Layout(str(tmp_path / "o"))
    with pytest.raises(InputError, match=r"datasets\.tqa\.expect\.train: expected 78785 train examples read, got 4"):
        prepare_dataset("tqa", tqa_cfg(expect={"train": 78785, "dev": 8837, "test": 11313}), tqa_files, None, lay)
    assert not list((tmp_path / "o").rglob("*.jsonl"))
    no_dev_index = tqa_cfg()
    del no_dev_index["members"]["dev_index"]
    with pytest.raises(InputError, match=r"unfiltered-web-train\.json Data\[\d\]: duplicate example id"):
        prepare_dataset("tqa", {**no_dev_index, "expect": None}, tqa_files, None, lay)
    bad = tmp_path / "idx"
    bad.mkdir()
    for s in ("train", "test"):
        (bad / f"TQA.{s}.idx.json").write_bytes((FIX / "triviaqa" / "dataindex" / f"TQA.{s}.idx.json").read_bytes())
    (bad / "TQA.dev.idx.json").write_text("[5, 9]")
    files = {**tqa_files, "fid_dataindex": str(tar_gz(tmp_path / "bad.tar.gz", {p.name: p for p in bad.iterdir()}))}
    with pytest.raises(InputError, match=r"TQA\.dev\.idx\.json: entry 1 is position 9, past the end of .*unfiltered-web-train\.json \(6"):
        prepare_dataset("tqa", tqa_cfg(expect=None), files, None, lay)
    with pytest.raises(InputError, match=r"datasets\.nq\.target: canonical needs a format with a canonical answer"):
        prepare_dataset("nq", {"task": "qa", "corpus": "c", "format": "dpr_topics", "target": "canonical",
                               "members": {"test": {"download": "t"}}}, {"t": str(FIX / "dpr" / "trivia-dev.qa.csv")}, None, lay)
    noans = tmp_path / "unfiltered-web-test-without-answers.json"
    noans.write_text(json.dumps({"Data": [{"Question": "Q?", "QuestionId": "tc_9", "QuestionSource": "x"}]}, indent=4))
    with pytest.raises(InputError, match=r"without-answers\.json: Data\[0\] \(tc_9\): missing field Answer\.Value"):
        prepare_dataset("tqa", {"task": "qa", "corpus": "c", "format": "triviaqa_release", "members": {"test": {"download": "t"}}},
                        {"t": str(noans)}, None, lay)


# --- OR-QuAC: CANNOTANSWER / NOTRECOVERED turns ------------------------------------------------
def orquac(**kw):
    cfg = {"task": "dialog", "corpus": "orquac", "format": "orquac",
           "members": {s: {"download": f"orquac_{s}"} for s in ("train", "dev", "test")} | {"qrels": {"download": "orquac_qrels"}}, **kw}
    return cfg, {f"orquac_{s}": str(FIX / "orquac" / f"{s}.txt") for s in ("train", "dev", "test", "qrels")}


def test_orquac_unanswerable_turns_are_left_out_and_counted(tmp_path):
    lay = Layout(str(tmp_path / "o"))
    stats = prepare_dataset("orquac", *orquac(), None, lay)
    assert stats["read"] == {"train": 3, "dev": 1, "test": 2}
    assert stats["dropped_by_reader"] == {"train": {"CANNOTANSWER": 1, "NOTRECOVERED": 0}, "dev": {"CANNOTANSWER": 0, "NOTRECOVERED": 0},
                                          "test": {"CANNOTANSWER": 0, "NOTRECOVERED": 1}}
    assert json.loads(Path(lay.dataset_stats("orquac")).read_text())["dropped_by_reader"] == stats["dropped_by_reader"]
    rows = [e for s in SPLITS for e in read(lay.split("orquac", s))]
    assert not [e for e in rows if e["target"] in UNANSWERABLE] and all(e.get("gold_passages") for e in rows)
    after = next(e for e in rows if e["id"] == "C_q1_0_q#3")  # the dropped turn stays in the history, as semi-rag has it
    assert after["history"][4:] == ["Did he play the violin at concerts?", "CANNOTANSWER"]
    kept = prepare_dataset("orquac", *orquac(keep_unanswerable=True), None, Layout(str(tmp_path / "k")))
    assert kept["read"] == {"train": 4, "dev": 1, "test": 3} and "dropped_by_reader" not in kept


# --- DoQA: one passage per distinct context ----------------------------------------------------
DOQA = {s: f"doqa-v2.1/doqa_dataset/doqa-cooking-{s}-v2.1.json" for s in ("train", "test")}


def test_doqa_shared_context_is_one_passage_and_both_dialogs_point_at_it(tmp_path):
    z = tmp_path / "doqa-v2.1.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for m in DOQA.values():
            zf.write(FIX / "doqa" / Path(m).name, m)
    corpus, cstats = tmp_path / "c" / "passages.jsonl", tmp_path / "c" / "stats.json"
    n = prepare_corpus({"format": "doqa_contexts", "download": "doqa", "member": list(DOQA.values())}, z, corpus, cstats)
    passages = read(corpus)
    assert n == 3 and len({p["contents"] for p in passages}) == 3
    assert json.loads(cstats.read_text())["duplicate_contexts_merged"] == 1
    cfg = {"task": "dialog", "corpus": "doqa", "format": "doqa", "download": "doqa", "members": dict(DOQA), "n_valid": 1}
    lay = Layout(str(tmp_path / "d"))
    stats = prepare_dataset("doqa", cfg, {"doqa": str(z)}, str(corpus), lay)
    assert stats["read"] == {"train": 2, "test": 3} and stats["gold_passages_checked"] == 3
    assert stats["dropped_by_reader"] == {"train": {"CANNOTANSWER": 2}, "test": {"CANNOTANSWER": 1}}
    rows = {e["id"]: e for s in SPLITS for e in read(lay.split("doqa", s))}
    shared = [p for p in passages if p["contents"].startswith("Rest the steak")]
    assert len(shared) == 1 and not shared[0]["contents"].endswith("CANNOTANSWER")
    assert rows["C_t1_q#0"]["gold_passages"] == rows["C_t2_q#0"]["gold_passages"] == [shared[0]["id"]]  # C_t2's paragraph has no id
    assert shared[0]["id"] == doqa_passage_id(shared[0]["contents"]) and shared[0]["title"] == "Should I rest a steak?"
    kept = prepare_dataset("doqa", {**cfg, "keep_unanswerable": True}, {"doqa": str(z)}, str(corpus), Layout(str(tmp_path / "k")))
    assert kept["read"] == {"train": 4, "test": 4} and "dropped_by_reader" not in kept
    with pytest.raises(InputError, match=r"datasets\.x\.keep_unanswerable: only the orquac and doqa formats"):
        prepare_dataset("x", {**tqa_cfg(), "keep_unanswerable": True}, {}, None, Layout(str(tmp_path / "x")))


# --- MS MARCO: double-encoded passages ---------------------------------------------------------
def test_msmarco_double_encoding_is_repaired_and_counted(tmp_path):
    tgz = tar_gz(tmp_path / "collection.tar.gz", {"collection.tsv": FIX / "msmarco" / "collection.tsv"})
    out, stats = tmp_path / "c" / "passages.jsonl", tmp_path / "c" / "stats.json"
    cfg = {"format": "msmarco_tsv", "download": "c", "member": "collection.tsv"}
    assert prepare_corpus(cfg, tgz, out, stats) == 7
    rows = {p["id"]: p["contents"] for p in read(out)}
    assert json.loads(stats.read_text())["encoding_repaired"] == 2
    assert "the word \u2018hibernate\u2019 we" in rows["7287406"] and "let\u2019s get" in rows["7287406"]
    assert rows["5"] == "The café on the corner sells crème brûlée and keeps it at 4°C \U0001F600"  # "café" was well encoded
    raw = {line.split("\t")[0]: line.rstrip("\n").split("\t")[1] for line in open(FIX / "msmarco" / "collection.tsv", encoding="utf-8")}
    assert all(rows[k] == raw[k] for k in "01234")
    off, off_stats = tmp_path / "raw" / "passages.jsonl", tmp_path / "raw" / "stats.json"
    prepare_corpus({**cfg, "repair_encoding": False}, tgz, off, off_stats)
    assert {p["id"]: p["contents"] for p in read(off)} == raw and "encoding_repaired" not in json.loads(off_stats.read_text())


def test_repair_follows_ir_datasets_windows():
    def moj(s):
        return s.encode("utf-8").decode("latin-1")
    assert repair(moj("naïve ½ 한국어 — 🇺🇸")) == "naïve ½ 한국어 — 🇺🇸"
    assert repair("naïve résumé") == "naïve résumé"  # well-encoded latin-1 range characters stay
    assert repair("price \x80 5") == "price \x80 5" and repair("Ã alone") == "Ã alone"  # ftfy would guess here; ir_datasets does not
