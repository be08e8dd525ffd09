"""Nothing silent, nothing left behind: a changed passages.jsonl is refused by every derived file,
bulk reads get the rows they ask for, empty inputs are errors, read errors name file:line, SIGTERM
and SIGKILL leave no temp file for long, and the same weights give the same bytes."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from jsarag import InputError
from jsarag.config import IndexConfig, IndexParams, RetrieverConfig
from jsarag.fingerprint import check_index_against_passages, fingerprint, record_path
from jsarag.index import shards
from jsarag.io import atomic_path, remove_stale_temps, save_torch, stale_temps, temp_name, write_jsonl
from jsarag.model.passages import PassageStore, build_offsets, offsets_path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def passages(n: int, words: int = 3) -> list[dict]:
    return [{"id": f"p{i}", "title": f"T{i}", "contents": " ".join(f"w{i}x{j}" for j in range(words))} for i in range(n)]


def params(shards_: int = 1, batch: int = 4) -> IndexParams:
    return IndexParams(RetrieverConfig("unused"), IndexConfig(dense_batch_size=batch, threads=1, shards=shards_, device="cpu"))


def cut_lines(path: Path, keep: int) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:keep]))


def make_collection(d: Path, n: int) -> Path:
    p = d / "collection" / "passages.jsonl"
    write_jsonl(p, passages(n))
    build_offsets(p)
    return p


@pytest.fixture
def collection(tmp_path):
    return make_collection(tmp_path, 330)


@pytest.fixture
def small(tmp_path):
    """30 passages: enough for shards, quick to encode."""
    return make_collection(tmp_path, 30)


# --- 1. inputs fingerprinted -------------------------------------------------------------------
def test_cut_passages_refused_by_their_offsets(collection):
    """The probe's case: passages.jsonl cut to 200 of 330 lines beside its 330-row offsets."""
    before = collection.stat().st_size
    cut_lines(collection, 200)
    with pytest.raises(InputError) as e:
        PassageStore(collection)
    msg = str(e.value)
    assert f"{before} bytes then, {collection.stat().st_size} now" in msg and f"python -m jsarag.model.passages {collection}" in msg
    res = subprocess.run([sys.executable, "-m", "jsarag.model.passages", str(collection)], capture_output=True, text=True, env=ENV)
    assert res.returncode == 0 and "200 passages" in res.stdout
    assert len(PassageStore(collection)) == 200


def test_same_size_edit_refused(collection):
    text = collection.read_text()
    collection.write_text(text.replace("w0x0", "w0x9", 1))  # same length, other content
    with pytest.raises(InputError, match=r"same size \(\d+ bytes\), sampled sha256 \w+ then, \w+ now"):
        PassageStore(collection)


def test_offsets_without_record_refused(collection):
    record_path(offsets_path(collection)).unlink()
    with pytest.raises(InputError, match="no record of what it was made from"):
        PassageStore(collection)


def test_fingerprint_samples_a_large_file_and_sees_a_cut(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 << 20))
    a = fingerprint(big)
    with open(big, "r+b") as f:
        f.truncate((9 << 20) - 1)
    assert fingerprint(big)["size"] == (9 << 20) - 1 and fingerprint(big)["sha256_sampled"] != a["sha256_sampled"]


def test_bulk_read_checks_its_row_count(collection):
    store = PassageStore(collection)
    assert [p["id"] for p in store.read_range(328, 330)] == ["p328", "p329"]
    cut_lines(collection, 200)  # changed under an open store
    with pytest.raises(InputError, match=r"rows \[100, 330\) asked for, only 100 read before the end of the file"):
        store.read_range(100, 330)
    with pytest.raises(InputError, match=r"rows \[0, 331\) asked for, the file has 330"):
        store.read_range(0, 331)
    with pytest.raises(InputError, match=r"row 330 asked for, the file has 330 passages"):
        store[330]
    with pytest.raises(InputError, match=r"row 250 starts at byte \d+, past the end of the file"):
        store.get([0, 250])


def test_dense_shard_cli_refuses_cut_passages(small, tiny_encoder_dir, tmp_path):
    collection = small
    cut_lines(collection, 20)
    out = tmp_path / "shards" / "0.f16.npy"
    spec = json.dumps({"retriever": {"source": tiny_encoder_dir}, "index": {"dense_batch_size": 4, "threads": 1, "device": "cpu"}})
    res = subprocess.run([sys.executable, "-m", "jsarag.index", "dense-shard", "--shard", "0", "--passages", str(collection), "--model",
                          tiny_encoder_dir, "--params", spec, "--out", str(out)], capture_output=True, text=True, env=ENV, timeout=300)
    assert res.returncode == 2 and "changed since; rebuild it" in res.stderr, res.stderr[-2000:]
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_merge_refuses_shards_of_other_passages(small, tiny_encoder_dir, tmp_path):
    collection = small
    sh = tmp_path / "sh"
    n = shards.build_dense(collection, tiny_encoder_dir, tmp_path / "dense", params(2), sh)
    assert n == 30 and check_index_against_passages(tmp_path / "dense", collection) == 30
    collection.write_text(collection.read_text().replace("w5x0", "w5x1", 1))  # same row count, another text
    build_offsets(collection)
    files = [str(sh / f"{i}.f16.npy") for i in range(2)]
    with pytest.raises(InputError, match=r"0\.f16\.npy was made from another .*passages\.jsonl .*rebuild it"):
        shards.merge_shards(files, collection, tmp_path / "dense2")
    assert not (tmp_path / "dense2").exists()
    with pytest.raises(InputError, match="dense was made from another"):
        check_index_against_passages(tmp_path / "dense", collection)


def test_merge_refuses_a_shard_of_another_slicing(small, tiny_encoder_dir, tmp_path):
    collection = small
    shards.build_dense(collection, tiny_encoder_dir, tmp_path / "d3", params(3), tmp_path / "s3")
    files = [str(tmp_path / "s3" / f"{i}.f16.npy") for i in range(3)]
    with pytest.raises(InputError, match=r"holds rows \[10, 20\) but shard 0 of 3"):
        shards.merge_shards([files[1], files[0], files[2]], collection, tmp_path / "bad")


def test_index_check_catches_docid_and_rows(small, tiny_encoder_dir, tmp_path):
    collection = small
    idx = tmp_path / "dense"
    shards.build_dense(collection, tiny_encoder_dir, idx, params(1), tmp_path / "sh")
    assert json.loads((idx / "source.json").read_text())["rows"] == 30
    (idx / "docid").write_text((idx / "docid").read_text().replace("p7\n", "p7b\n"))
    with pytest.raises(InputError, match="not the docid file written with"):
        check_index_against_passages(idx, collection)
    (idx / "source.json").unlink()
    with pytest.raises(InputError, match="no record of what it was made from.*snakemake --forcerun dense_shard dense_index"):
        check_index_against_passages(idx, collection)


# --- 2. empty is an error ----------------------------------------------------------------------
def test_empty_corpus_is_an_error(tmp_path):
    from jsarag.data.corpora import prepare_corpus

    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps({"id": "a", "contents": "   "}) + "\n")
    out = tmp_path / "passages.jsonl"
    with pytest.raises(InputError, match=r"c\.jsonl: no passages to write to .*\(1 empty skipped\)"):
        prepare_corpus({"format": "jsonl", "download": "c"}, src, out)
    assert list(tmp_path.iterdir()) == [src]
    out.write_text("\n")
    with pytest.raises(InputError, match="no passages"):
        PassageStore(out)


def test_empty_split_is_an_error(tmp_path):
    from jsarag.data.datasets import prepare_dataset
    from jsarag.layout import Layout

    src = tmp_path / "qa.jsonl"
    write_jsonl(src, [{"id": f"q{i}", "question": f"q{i}?", "answers": ["a"]} for i in range(3)])
    cfg = {"task": "qa", "corpus": "c", "format": "jsonl", "members": {"test": {"download": "q"}}, "n_test": 2, "n_valid": 1}
    lay = Layout(str(tmp_path / "o"))
    with pytest.raises(InputError, match=r"train\.jsonl: the train split would hold 0 examples \(read \{'test': 3\}"):
        prepare_dataset("g", cfg, {"q": str(src)}, None, lay)
    assert not Path(lay.split("g", "test")).exists()


def test_empty_split_file_refused_by_its_reader(tmp_path):
    from jsarag.data.examples import load_examples

    (tmp_path / "test.jsonl").write_text("")
    with pytest.raises(InputError, match=r"test\.jsonl: no examples \(0 rows\)"):
        load_examples(tmp_path / "test.jsonl")


# --- 5. every read error names file and line ----------------------------------------------------
def test_truncated_gzip_names_file_and_line(tmp_path):
    from jsarag.data.corpora import prepare_corpus

    data = gzip.compress("".join(json.dumps(p) + "\n" for p in passages(2000, 20)).encode())
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"c\.jsonl\.gz:\d+: truncated or corrupt compressed data \(Compressed file ended"):
        prepare_corpus({"format": "jsonl", "download": "c"}, gz, tmp_path / "p.jsonl")
    tsv = tmp_path / "psgs_w100.tsv.gz"  # the csv reader (DPR) goes through the same line reader
    rows = "".join(f"{i}\t" + f"word {i} " * 30 + f"\tT{i}\n" for i in range(3000))
    tsv.write_bytes(gzip.compress(("id\ttext\ttitle\n" + rows).encode())[:-400])
    with pytest.raises(InputError, match=r"psgs_w100\.tsv\.gz:\d+: truncated or corrupt compressed data"):
        prepare_corpus({"format": "dpr_wiki_tsv", "download": "d"}, tsv, tmp_path / "p2.jsonl")


def test_truncated_gzip_in_the_streamed_json(tmp_path):
    import io

    from jsarag.data.json_stream import iter_columns

    raw = gzip.compress(json.dumps({"answers": {str(i): [f"a{i}"] * 50 for i in range(2000)}}).encode())
    f = io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(raw[: len(raw) // 2])), encoding="utf-8")
    with pytest.raises(InputError, match=r"qna: truncated or corrupt compressed data near character \d+ \(line 1\)"):
        list(iter_columns(f, "qna", {"answers"}, chunk=4096))


def test_passages_cut_mid_line_name_file_and_line(tmp_path):
    from jsarag.data.answerable import answerable
    from jsarag.data.integrity import check_gold

    p = tmp_path / "passages.jsonl"
    write_jsonl(p, passages(5))
    p.write_bytes(p.read_bytes()[:-10])  # the last line cut
    with pytest.raises(InputError, match=r"passages\.jsonl:5: malformed JSON .*ends in the middle of this line"):
        answerable([{"id": "q", "question": "q", "answers": ["zz"]}], p)
    with pytest.raises(InputError, match=r"passages\.jsonl:5: malformed JSON"):
        check_gold({"test": [("x:1", {"gold_passages": ["nope"]})]}, p)
    build_offsets(p)  # offsets rebuilt from the cut file: the shard reader names the line
    with pytest.raises(InputError, match=r"passages\.jsonl:5: malformed passage .*ends in the middle of this line"):
        shards.read_rows(p, 0, 5)


def test_bm25_input_validated_before_lucene(tmp_path, monkeypatch):
    from jsarag.index import build

    col = tmp_path / "collection"
    write_jsonl(col / "passages.jsonl", passages(4))
    (col / "passages.jsonl").write_bytes((col / "passages.jsonl").read_bytes()[:-7])

    def no_lucene(*a, **k):
        raise AssertionError("Lucene ran on a bad collection")

    monkeypatch.setattr(build.subprocess, "run", no_lucene)
    with pytest.raises(InputError, match=r"passages\.jsonl:4: malformed JSON"):
        build.build_bm25(col, tmp_path / "bm25", threads=1)
    with pytest.raises(InputError, match=r"passages\.jsonl:4: malformed JSON"):
        build.build_bm25(col, tmp_path / "bm25", threads=2)
    (col / "passages.jsonl").write_text(json.dumps({"id": "", "contents": "x"}) + "\n")
    with pytest.raises(InputError, match=r"passages\.jsonl:1: a passage needs a non-empty string id"):
        build.build_bm25(col, tmp_path / "bm25")
    (col / "passages.jsonl").write_text("\n")
    with pytest.raises(InputError, match=r"collection: no passage to index"):
        build.build_bm25(col, tmp_path / "bm25")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["collection"]  # no index, no split folder, no temp file


# --- 4. nothing left behind ---------------------------------------------------------------------
HOLD = """
import sys, time
from jsarag.cli import run_cli
from jsarag.io import atomic_path
def go():
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_text("partial")
        print(tmp, flush=True)
        time.sleep(120)
run_cli(go)
"""


def start_holder(out: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.exists() and tmp.parent == out.parent and tmp.name.startswith(f".{out.name}.~w.")
    return proc, tmp


def test_sigterm_removes_the_temp_file(tmp_path):
    out = tmp_path / "out.bin"
    proc, tmp = start_holder(out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "stopped by signal SIGTERM" in err
    assert list(tmp_path.iterdir()) == []


def test_sigkill_leftover_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out.bin"
    proc, tmp = start_holder(out)
    live, live_tmp = start_holder(out)  # a live writer's temp file is not touched
    try:
        proc.kill()
        proc.wait(timeout=60)
        assert tmp.exists() and stale_temps(out) == [tmp]
        with atomic_path(out) as t:
            t.write_text("done")
        assert sorted(tmp_path.iterdir()) == sorted([out, live_tmp])
        other = out.parent / f".{out.name}.~w.otherhost.{os.getpid()}.0123abcd.tmp"  # another node's job, killed
        other.mkdir()
        similar = out.parent / f".{out.name}.offsets.npy.~w.otherhost.1.0123abcd.tmp"  # another output's temp file
        similar.write_text("x")
        assert remove_stale_temps(out) == [other] and similar.exists() and live_tmp.exists()
    finally:
        live.kill()
        live.wait()
    assert temp_name(out).name.startswith(f".{out.name}.~w.")


def test_sigterm_mid_dense_shard_leaves_nothing(tiny_encoder_dir, tmp_path):
    col = tmp_path / "passages.jsonl"
    write_jsonl(col, passages(5000, 10))
    build_offsets(col)
    out = tmp_path / "sh" / "0.f16.npy"
    spec = json.dumps({"retriever": {"source": tiny_encoder_dir}, "index": {"dense_batch_size": 1, "threads": 1, "device": "cpu"}})
    proc = subprocess.Popen([sys.executable, "-m", "jsarag.index", "dense-shard", "--shard", "0", "--passages", str(col), "--model",
                             tiny_encoder_dir, "--params", spec, "--out", str(out)], stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 240
    while not (out.parent.exists() and any(out.parent.glob(".0.f16.npy.~w.*.tmp"))):
        assert proc.poll() is None and time.time() < deadline, "dense-shard ended before its temp file was seen"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert list(out.parent.iterdir()) == []


# --- 6. byte-reproducible outputs ----------------------------------------------------------------
def test_save_torch_same_weights_same_bytes(tmp_path):
    import torch

    sd = {"w": torch.arange(12.0).reshape(3, 4), "b": torch.ones(2, dtype=torch.bfloat16)}
    a, b = tmp_path / "a" / "trainable.pt", tmp_path / "b" / "other.pt"
    save_torch(sd, a)
    save_torch(sd, b)
    assert hashlib.sha256(a.read_bytes()).hexdigest() == hashlib.sha256(b.read_bytes()).hexdigest()
    assert {n.split("/")[0] for n in zipfile.ZipFile(a).namelist()} == {"archive"}
    assert torch.equal(torch.load(a)["w"], sd["w"])


def test_trained_weights_same_bytes(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tmp_path):
    """Two identical training runs write byte-identical trainable.pt (jsarag/train/loop.py save_model)."""
    from jsarag.train.__main__ import main as train_main

    train = {"epochs": 1, "max_steps": 1, "batch_size": 2, "k": 2, "tau": 1.0, "threads": 1, "warmup_steps": 0,
             "lora": {"r": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]}}
    params = {"method": "rag", "task": "qa", "dataset": "tiny", "train": train, "retriever": {"source": tiny_encoder_dir},
              "generator": {"source": tiny_causal_dir}}
    digests = []
    for run in ("r1", "r2"):
        train_main(["--params", json.dumps(params), "--passages", str(tiny_kb / "passages.jsonl"), "--index", str(tiny_kb / "dense"),
                    "--retriever", tiny_encoder_dir, "--generator", tiny_causal_dir, "--train", str(tiny_kb / "train.jsonl"),
                    "--out", str(tmp_path / run), "--no-progress"])
        digests.append(hashlib.sha256((tmp_path / run / "model" / "trainable.pt").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_exported_model_follows_the_umask(tmp_path, tiny_encoder_dir):
    from jsarag.model.sources import export

    old = os.umask(0o022)
    try:
        export(str(tiny_encoder_dir), "encoder", str(tmp_path / "m"))
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "m").iterdir()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}, modes


def test_offsets_stay_int64_and_index_rows(collection):
    arr = np.load(offsets_path(collection))
    assert arr.dtype == np.int64 and len(arr) == 330 and arr[0] == 0
