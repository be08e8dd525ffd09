"""Paper-scale paths on the CPU: sharded encoding and its merge, the memory-mapped and matmul
searches against FAISS flat, shard resumption, the device option, and the bf16 generator with fp32
LoRA. (The CUDA paths themselves run only where a GPU is present.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from jsarag import InputError
from jsarag.config import IndexConfig, IndexParams, RetrieverConfig, export_dtype
from jsarag.evaluate.tiny_kb import TOPICS
from jsarag.index import shards
from jsarag.io import write_jsonl
from jsarag.model import dense_index as di
from jsarag.model.device import resolve_device

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    passages = [{"id": f"p{i}", "title": t.split()[0], "contents": t + "." + " more" * (i % 5)} for i, t in enumerate(TOPICS * 2)]
    write_jsonl(d / "passages.jsonl", passages)
    return d, passages


def params(n_shards: int) -> IndexParams:
    return IndexParams(RetrieverConfig("unused"), IndexConfig(dense_batch_size=4, threads=1, shards=n_shards, device="cpu"))


def test_shards_merged_equal_one_shot(corpus, tiny_encoder_dir, tmp_path):
    from jsarag.model.encoders import Encoder

    d, passages = corpus
    one = tmp_path / "one"
    di.build_small_index(one, Encoder.from_source(tiny_encoder_dir), passages, batch_size=4)
    n = shards.build_dense(d / "passages.jsonl", tiny_encoder_dir, tmp_path / "merged", params(5), tmp_path / "sh")
    assert n == len(passages) and len(list((tmp_path / "sh").glob("*.f16.npy"))) == 5
    a, b = di.DenseIndex(one), di.DenseIndex(tmp_path / "merged", expect_rows=len(passages))
    assert isinstance(b.held, np.memmap) and b.held.dtype == np.float16
    np.testing.assert_allclose(np.asarray(a.held, np.float32), np.asarray(b.held, np.float32), atol=2e-3)
    assert (one / "docid").read_text() == (tmp_path / "merged" / "docid").read_text() == "".join(p["id"] + "\n" for p in passages)
    q = torch.from_numpy(np.asarray(a.held[:6], np.float32))
    assert (a.search(q, 3)[:, 0] == np.arange(6)).all() and (a.search(q, 3) == b.search(q, 3)).all()
    # the merged file is what FAISS (and so Pyserini's FaissSearcher) reads
    fx = faiss.read_index(str(tmp_path / "merged" / "index"))
    assert fx.ntotal == n and np.array_equal(fx.reconstruct_n(0, n), np.asarray(b.held, np.float32))


def test_more_shards_than_passages(corpus, tiny_encoder_dir, tmp_path):
    d, passages = corpus
    n = shards.build_dense(d / "passages.jsonl", tiny_encoder_dir, tmp_path / "m", params(len(passages) + 3), tmp_path / "sh")
    assert n == len(passages) and di.DenseIndex(tmp_path / "m").ntotal == n


def test_killed_shard_resumes_alone(corpus, tiny_encoder_dir, tmp_path, monkeypatch):
    d, passages = corpus
    sh = tmp_path / "sh"
    from jsarag.model import dense_index

    orig = dense_index.encode_passages

    def dies_in_shard_2(enc, batch, bs):
        if batch[0]["id"] == passages[2 * len(passages) // 4]["id"]:
            raise KeyboardInterrupt("killed")  # the job dies mid-shard
        return orig(enc, batch, bs)

    monkeypatch.setattr(dense_index, "encode_passages", dies_in_shard_2)
    with pytest.raises(KeyboardInterrupt):
        shards.build_dense(d / "passages.jsonl", tiny_encoder_dir, tmp_path / "m", params(4), sh)
    # no partial shard, no temp file (each shard has its source record beside it)
    assert sorted(p.name for p in sh.iterdir() if not p.name.endswith(".source.json")) == ["0.f16.npy", "1.f16.npy"]
    before = {p.name: p.stat().st_mtime_ns for p in sh.iterdir()}
    monkeypatch.setattr(dense_index, "encode_passages", orig)
    shards.build_dense(d / "passages.jsonl", tiny_encoder_dir, tmp_path / "m", params(4), sh)
    assert {p.name: p.stat().st_mtime_ns for p in sh.iterdir() if p.name in before} == before  # shards 0, 1 not redone
    assert sorted(p.name for p in sh.iterdir() if not p.name.endswith(".source.json")) == [f"{i}.f16.npy" for i in range(4)]
    assert di.DenseIndex(tmp_path / "m", expect_rows=len(passages)).ntotal == len(passages)


def test_merge_checks_row_count(corpus, tmp_path):
    d, passages = corpus
    np.save(tmp_path / "0.npy", np.zeros((len(passages) - 1, 8), np.float16))
    with pytest.raises(InputError, match="passages but the 1 shards hold"):
        shards.merge_shards([str(tmp_path / "0.npy")], d / "passages.jsonl", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _random_index(path, n=5000, d=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    path.mkdir()
    di.write_dense_index(path, x, [f"d{i}" for i in range(n)])
    return x.astype(np.float16).astype(np.float32)


def test_search_matches_faiss_flat(tmp_path, monkeypatch):
    from jsarag.model import search

    x = _random_index(tmp_path / "ix")
    rng = np.random.default_rng(1)
    q = (x[rng.integers(0, len(x), 8)] + 0.3 * rng.standard_normal((8, x.shape[1]))).astype(np.float32)
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    ref_s, ref_r = flat.search(q, 10)
    monkeypatch.setattr(search, "CPU_CHUNK_ROWS", 700)  # several row tiles of the memory map, merged
    monkeypatch.setattr(di, "RESCORE_MARGIN", 0)  # only 2k fp16 candidates re-scored
    index = di.DenseIndex(tmp_path / "ix", expect_rows=len(x), buffer_bytes=2 * 3 * 700)  # 3 queries a tile
    assert isinstance(index.held, np.memmap)
    s, r = index.search_scores(torch.from_numpy(q), 10)
    assert np.array_equal(r.numpy(), ref_r) and np.allclose(s.numpy(), ref_s, atol=1e-5)
    assert index.peak_score_bytes == 2 * 3 * 700
    # the GPU path's held tensor (one fp16 tensor scanned in tiles), here on the CPU
    scan = search.Scan(budget_bytes=2 * 8 * 1000)
    s16, r16 = scan.run(torch.from_numpy(q), torch.from_numpy(x.astype(np.float16)), 0, 20, "cpu")
    assert s16.dtype == torch.float16 and scan.peak_score_bytes == 2 * 5000 <= scan.budget_bytes  # a query a tile; fp16 top-k
    assert all(set(ref) <= set(got) for ref, got in zip(ref_r, r16.numpy()))  # FAISS's top-10 among the fp16 top-20
    np.testing.assert_array_equal(index.vectors(r[:, :2]).numpy(), x[r[:, :2].numpy()])


def test_index_row_count_checked_and_bad_file(tmp_path):
    _random_index(tmp_path / "ix", n=10, d=4)
    with pytest.raises(InputError, match="10 rows but passages.jsonl has 11"):
        di.DenseIndex(tmp_path / "ix", expect_rows=11)
    raw = (tmp_path / "ix" / "index").read_bytes()
    (tmp_path / "ix" / "index").write_bytes(raw[:-6])  # truncated
    with pytest.raises(InputError, match="truncated"):
        di.DenseIndex(tmp_path / "ix")


def test_candidate_set_one_search_call(tmp_path):
    from jsarag.model.retrievers import candidate_set

    x = _random_index(tmp_path / "ix", n=50, d=8)
    index = di.DenseIndex(tmp_path / "ix")
    calls = []
    search = index.search
    index.search = lambda q, k: calls.append(q.shape) or search(q, k)
    c = candidate_set(index, 3, [torch.from_numpy(x[:2]), torch.from_numpy(x[10:12])], extra=[[49], [None]])
    assert calls == [(4, 8)]  # prior and posterior queries in one call
    assert c.rows[0, 0] == 0 and 10 in c.rows[0].tolist() and 49 in c.rows[0].tolist() and c.mask.sum(1).tolist()[0] <= 7


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_gpu_config_without_cuda_stops(tiny_model_factory):
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(InputError, match="cuda asked for, but no CUDA device is present"):
        resolve_device("cuda", "train.common.device")
    from jsarag.train.config import method_config

    with pytest.raises(InputError, match="train.common.device: cuda asked for"):
        tiny_model_factory("rag", method_config("rag", {"device": "cuda"}))
    with pytest.raises(InputError, match="index.device: cuda asked for"):
        shards.load_encoder("unused", IndexParams(RetrieverConfig("unused"), IndexConfig(device="cuda")))


def test_paper_config_asks_for_gpu_and_bf16_export():
    from jsarag.config import load_config

    cfg = load_config(ROOT / "configs" / "paper.yaml")
    assert cfg["index"]["device"] == "cuda" and cfg["index"]["shards"] > 1
    assert cfg["train"]["common"]["device"] == "cuda" and cfg["train"]["common"]["gradient_checkpointing"] is True
    assert export_dtype(cfg, "generator") == "bfloat16" and export_dtype(cfg, "retriever") == "float32"
    assert export_dtype(load_config(ROOT / "config.yaml"), "generator") == "float32"


def test_bf16_generator_keeps_lora_fp32(tiny_causal_dir):
    from jsarag.model.generator import Generator
    from jsarag.model.sources import load_model, load_tokenizer

    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    gen = Generator(load_model(tiny_causal_dir, "causal", dtype=torch.bfloat16), load_tokenizer(tiny_causal_dir))
    gen.add_lora(**lora)
    trainable = [p for p in gen.model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    assert all(p.dtype == torch.bfloat16 for p in gen.model.parameters() if not p.requires_grad)
    ll = gen.loglik(["who wrote hamlet"], [{"title": "", "contents": "Shakespeare wrote Hamlet."}], ["Shakespeare"])
    ll.seq.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trainable)


def test_gradient_checkpointing_same_gradients(tiny_causal_dir):
    from jsarag.model.generator import Generator

    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        gen = Generator.from_source(tiny_causal_dir, lora={"r": 4, "alpha": 8, "dropout": 0.0}, gradient_checkpointing=ckpt)
        gen.model.train()
        base = gen.model.get_base_model()
        assert getattr(base, "is_activation_checkpointing", None) in (ckpt, None) and base.config.use_cache is not ckpt
        ll = gen.loglik(["q a", "q b"], [{"contents": "p one"}, {"contents": "p two longer"}], ["x", "y z"])
        ll.seq.sum().backward()
        grads.append([p.grad.clone() for p in gen.model.parameters() if p.requires_grad])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_bm25_split_collection(tmp_path):
    from jsarag.index.build import split_collection

    src = tmp_path / "c"
    src.mkdir()
    lines = [json.dumps({"id": str(i), "contents": f"text {i}"}) + "\n" for i in range(10)]
    (src / "passages.jsonl").write_text("".join(lines[:7]) + "\n" + "".join(lines[7:]))
    out = split_collection(src, tmp_path / "split", 3)
    parts = [(out / f"part{i:03d}.jsonl").read_text().splitlines(keepends=True) for i in range(3)]
    assert [len(p) for p in parts] == [4, 3, 3] and sorted(sum(parts, [])) == sorted(lines)


def test_bm25_prebuilt_unknown_name_is_a_clean_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "jsarag.index", "bm25", "--collection", str(tmp_path), "--params", "{}",
                          "--prebuilt", "no-such-index", "--out", str(tmp_path / "bm25")], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 2 and "'no-such-index' is not a Pyserini prebuilt index name" in res.stderr
    assert not (tmp_path / "bm25").exists()
