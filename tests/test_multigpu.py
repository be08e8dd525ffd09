"""The decisions of the multi-GPU path, tested where a CPU can show them (issue 16): which device a
rank builds on, that the rank is bound before anything is built, which rows each rank's index holds,
that the sharded search equals FAISS flat, and that a search's score buffer stays under its bound.
DDP training against one process is tests/test_distributed.py."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import types
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from jsarag import InputError
from jsarag.model import dense_index as di
from jsarag.model.device import placement

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]


# -- which device ---------------------------------------------------------------------------
@pytest.mark.parametrize("requested,rank,cuda,visible,want", [
    ("auto", 0, False, 0, "cpu"), ("cpu", 3, True, 4, "cpu"), ("auto", 0, True, 1, "cuda:0"),
    ("cuda", 2, True, 4, "cuda:2"), ("auto", 3, True, 4, "cuda:3"),
])
def test_placement_names_the_rank_gpu(requested, rank, cuda, visible, want):
    assert placement(requested, rank, cuda, visible) == want


def test_placement_refuses_what_would_share_or_miss_a_gpu():
    with pytest.raises(InputError, match="local rank 4 has no GPU of its own"):
        placement("cuda", 4, True, 4)
    with pytest.raises(InputError, match="cuda asked for, but no CUDA device"):
        placement("cuda", 0, False, 0)
    with pytest.raises(InputError, match="must be one of"):
        placement("gpu", 0, True, 1)


@pytest.fixture
def fake_gpus(monkeypatch):
    """A CPU host that says it has 4 GPUs; records what binds a device."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", str(d))))
    return calls


def test_rank_is_bound_before_the_process_group(fake_gpus, monkeypatch):
    import torch.distributed as td

    from jsarag.train.distributed import DataParallel

    monkeypatch.setattr(td, "is_initialized", lambda: False)
    monkeypatch.setattr(td, "init_process_group", lambda backend, **kw: fake_gpus.append(("init", backend, str(kw.get("device_id")))))
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "6")
    monkeypatch.setenv("LOCAL_RANK", "2")
    dp = DataParallel.from_env("cuda")
    assert dp.device == "cuda:2" and dp.comm_device == "cuda:2" and (dp.rank, dp.local_rank, dp.world) == (6, 2, 4)
    assert fake_gpus == [("set_device", "cuda:2"), ("init", "nccl", "cuda:2")]


def test_training_leaves_the_process_group_even_on_error(monkeypatch):
    """A rank that ends without destroy_process_group can abort at interpreter exit (gloo: -6,
    "terminate called without an active exception"; seen in CI). jsarag.train leaves the group
    in a finally, so an error inside training still tears the group down in order."""
    import torch.distributed as td

    import jsarag.train.__main__ as entry
    from jsarag.train.distributed import DataParallel

    left = []
    monkeypatch.setattr(td, "is_initialized", lambda: True)
    monkeypatch.setattr(td, "destroy_process_group", lambda: left.append("destroyed"))
    monkeypatch.setattr(entry.DataParallel, "from_env", classmethod(lambda cls, *a: DataParallel(world=2, rank=1, local_rank=1)))

    def bad_split(*a):
        raise ValueError("the split is not this corpus's")

    monkeypatch.setattr(entry, "check_split", bad_split)
    params = types.SimpleNamespace(method="rag", train=types.SimpleNamespace(device="cpu", threads=1))
    with pytest.raises(ValueError, match="not this corpus"):
        entry.train(params, "e", "p", "i", "r", "g", "out")
    assert left == ["destroyed"]
    DataParallel().close()  # one process: nothing to leave
    assert left == ["destroyed"]


def test_build_model_places_every_part_on_the_rank_gpu(fake_gpus, monkeypatch, tiny_encoder_dir, tiny_causal_dir, tiny_kb):
    """Each part the factory builds is handed cuda:LOCAL_RANK, never a bare "cuda" (which means
    GPU 0 in every rank); the parts are recorded, then built on the CPU, which has the tensors."""
    from jsarag.evaluate import tiny_kb as tiny
    from jsarag.model import factory
    from jsarag.train.config import method_config

    seen = []
    gen_from_source, index_cls, to_device = factory.Generator.from_source, factory.DenseIndex, factory.LatentModel.to_device

    def gen(source, kind, device, **kw):
        seen.append(("generator", device))
        return gen_from_source(source, kind, device="cpu", **kw)

    def index(path, device, **kw):
        seen.append(("index", device))
        return index_cls(path, device="cpu", **kw)

    def move(self, device):
        seen.append(("towers", device))
        return to_device(self, "cpu")

    monkeypatch.setattr(factory.Generator, "from_source", staticmethod(gen))
    monkeypatch.setattr(factory, "DenseIndex", index)
    monkeypatch.setattr(factory.LatentModel, "to_device", move)
    monkeypatch.setenv("LOCAL_RANK", "2")
    tiny.model_factory(tiny_encoder_dir, tiny_causal_dir, tiny_kb)("jsa", method_config("jsa", {"device": "cuda"}))
    assert seen == [("generator", "cuda:2"), ("index", "cuda:2"), ("towers", "cuda:2")]
    with pytest.raises(InputError, match="must be named cuda:N"):
        factory.build_model(method_config("rag", {}), None, None, "", "", "", "", False, device="cuda")


def test_no_bare_cuda_placement_in_the_package():
    """A literal "cuda" handed to .to(), device= or a device map means GPU 0 under torchrun."""
    bare = re.compile(r"""(\.to\(\s*|device\s*=\s*|device_map\s*=\s*\{\s*""\s*:\s*|to_device\(\s*)["']cuda["']""")
    found = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "jsarag").rglob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1) if bare.search(line)]
    assert not found, found


def test_checkpoint_loads_name_their_device():
    loads = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "jsarag").rglob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1) if "torch.load(" in line and "map_location" not in line]
    assert not loads, loads


# -- bounded search ---------------------------------------------------------------------------
def _index_file(path: Path, n: int = 5000, d: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    path.mkdir(parents=True)
    di.write_dense_index(path, x, [f"d{i}" for i in range(n)])
    return x.astype(np.float16).astype(np.float32)


def _flat(x: np.ndarray, q: np.ndarray, k: int):
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    return flat.search(q, k)


def test_search_buffer_stays_under_its_bound_for_20x_the_chunk(tmp_path, monkeypatch):
    """Measured: no torch op of a search of 20 query chunks allocates more than the configured bound
    (the profiler's per-op allocations; without query chunks one matmul would take 20x that), and
    the host buffers (numpy reports its allocations to tracemalloc: the re-score's vectors) peak
    under it too."""
    import tracemalloc

    from torch.profiler import ProfilerActivity, profile

    from jsarag.model import search

    x = _index_file(tmp_path / "ix")
    monkeypatch.setattr(search, "CPU_CHUNK_ROWS", len(x))  # one row tile: the bound is met by chunking queries
    bound = 2 * 4 * len(x)  # 4 queries a tile
    q = np.random.default_rng(1).standard_normal((80, x.shape[1])).astype(np.float32)
    index = di.DenseIndex(tmp_path / "ix", buffer_bytes=bound)
    qt = torch.from_numpy(q)
    tracemalloc.start()
    index.search_scores(qt, 10)
    host_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert host_peak <= bound + 4096, (host_peak, bound)  # + the Python objects of the chunk loop (tracemalloc counts them too)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        s, r = index.search_scores(qt, 10)
    peak = max(e.cpu_memory_usage for e in prof.events())
    mm = max(e.cpu_memory_usage for e in prof.events() if e.name == "aten::mm")
    assert mm == bound == index.peak_score_bytes and peak <= bound, (mm, peak, bound)
    ref_s, ref_r = _flat(x, q, 10)
    assert np.array_equal(r.numpy(), ref_r) and np.allclose(s.numpy(), ref_s, atol=1e-5)


@pytest.mark.parametrize("budget,n_queries,n_rows,want", [
    (2 * 4 * 5000, 80, 5000, (4, 5000)), (1 << 30, 3610, 21_015_324 // 4, (102, 5_253_831)), (10, 3, 100, (1, 5)),
])
def test_tiling_decides_the_tile_within_the_budget(budget, n_queries, n_rows, want):
    from jsarag.model.search import tiling

    t = tiling(n_queries, n_rows, budget)
    assert (t.query_chunk, t.row_chunk) == want and t.score_bytes <= budget


# -- precision and decoding ---------------------------------------------------------------------
def test_lora_on_a_gpu_reads_its_bf16_input_under_autocast(tiny_causal_dir, monkeypatch):
    """On a GPU peft's cast of each adapter's input to fp32 is off, so under bf16 autocast the LoRA
    matmuls read the bf16 activations (with it on, every projection reads an fp32 copy). The
    autocast itself is CUDA-only; here it runs on the CPU to show the dtypes."""
    from jsarag.model import generator as g
    from jsarag.model.sources import load_model, load_tokenizer

    seen = {}
    for on_gpu in (False, True):
        monkeypatch.setattr(g, "is_cuda", lambda d, v=on_gpu: v)
        gen = g.Generator(load_model(tiny_causal_dir, "causal", dtype=torch.bfloat16), load_tokenizer(tiny_causal_dir))
        gen.add_lora(r=4, alpha=8, target_modules=["q_proj", "v_proj"])
        layers = [m for m in gen.model.modules() if hasattr(m, "cast_input_dtype_enabled")]
        assert layers and all(m.cast_input_dtype_enabled is not on_gpu for m in layers)
        dtypes = []
        hook = layers[0].lora_A["default"].register_forward_pre_hook(lambda m, a, out=dtypes: out.append(a[0].dtype))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            gen.loglik(["q"], [{"contents": "p"}], ["a"])
        hook.remove()
        seen[on_gpu] = dtypes[0]
        assert all(p.dtype == torch.float32 for p in gen.model.parameters() if p.requires_grad)  # fp32 master weights
    assert seen == {False: torch.float32, True: torch.bfloat16}


def test_passages_and_queries_encode_at_one_precision(monkeypatch):
    """The passage encoder loads fp32 weights and runs the same Encoder forward (bf16 autocast on a
    GPU) as the query encoders; before, passages ran in pure bf16 weights and queries in fp32."""
    from jsarag.config import IndexConfig, IndexParams, RetrieverConfig
    from jsarag.index import shards
    from jsarag.model import device, sources

    calls = []
    monkeypatch.setattr(device, "resolve_device", lambda *a, **k: "cuda:1")
    monkeypatch.setattr(sources, "load_model", lambda src, kind, dtype=None, device="cpu": calls.append((dtype, device)) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        shards.load_encoder("x", IndexParams(RetrieverConfig("x"), IndexConfig(device="cuda")))
    assert calls == [(None, "cuda:1")]  # fp32 weights (the default), on the rank's GPU
    assert isinstance(device.autocast("cuda:0"), torch.autocast) and not isinstance(device.autocast("cpu"), torch.autocast)


def test_evaluation_builds_the_generator_for_decoding(monkeypatch, tiny_encoder_dir, tiny_causal_dir, tiny_kb):
    """Evaluation and zero-shot build without gradient checkpointing (which turns the KV cache off)."""
    from jsarag.config import GeneratorConfig, RetrieverConfig
    from jsarag.evaluate import predict, zero_shot
    from jsarag.model.factory import build_model
    from jsarag.train.config import method_config

    cfg = method_config("rag", {"gradient_checkpointing": True})
    args = (cfg, RetrieverConfig(source=tiny_encoder_dir), GeneratorConfig(source=tiny_causal_dir), tiny_encoder_dir, tiny_causal_dir,
            str(tiny_kb / "dense"), str(tiny_kb / "passages.jsonl"), False)
    for training in (True, False):
        base = build_model(*args, training=training).generator.model.get_base_model()
        assert base.config.use_cache is not training
    kw = []
    for mod in (predict, zero_shot):
        monkeypatch.setattr(mod, "build_model", lambda *a, **k: kw.append(k) or 1 / 0)
    params = type("P", (), {"train": cfg, "retriever": None, "generator": None, "method": "rag", "evaluate": None})
    with pytest.raises(ZeroDivisionError):
        predict.load_for_eval(params, "", "", "", "", "")
    with pytest.raises(ZeroDivisionError):
        zero_shot.zero_shot(params, "", "", "", "", "", {}, {})
    assert [k.get("training") for k in kw] == [False, False]


def test_index_refresh_goes_to_its_own_file_and_resumes_exactly(tiny_model_factory, tiny_kb, tmp_path):
    """index_refresh: the rows are re-encoded by the trained prior, written beside the checkpoint (not
    pickled into it), and a killed run reloads them: its final weights equal an uninterrupted run's."""
    from jsarag.data.examples import load_examples
    from jsarag.train import TRAINERS

    examples = load_examples(tiny_kb / "train.jsonl")
    cfg = TRAINERS["rag"].config_class.from_dict(dict(
        epochs=2, batch_size=2, lr_generator=1e-3, lr_retriever=1e-2, warmup_steps=1, k=3, tau=1.0, threads=1, checkpoint_every=2,
        index_refresh=2, lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, max_input_tokens=128))
    straight = TRAINERS["rag"](cfg, tiny_model_factory("rag", cfg), examples, tmp_path / "a")
    start = np.array(straight.model.index.held, np.float32)
    straight.train(progress=False, stop_after=6)  # the last checkpoint stays on disk (a finished run drops it)
    assert straight.model.index.refreshed_at == 6
    assert not np.allclose(np.array(straight.model.index.held, np.float32), start)  # the trained prior re-encoded the rows
    ck_dir = tmp_path / "a" / "checkpoint"
    ck = torch.load(ck_dir / "last.pt", map_location="cpu", weights_only=False)
    assert "index" not in ck and ck["index_refresh_step"] == 6
    # the rows the two kept checkpoints name (last.pt: step 6, previous.pt: step 4); older ones dropped
    kept = sorted(f.name for f in ck_dir.glob("index-refresh.*"))
    assert kept == ["index-refresh.step4.rank0of1.npy", "index-refresh.step6.rank0of1.npy"]
    killed = TRAINERS["rag"](cfg, tiny_model_factory("rag", cfg), examples, tmp_path / "b")
    assert killed.train(progress=False, stop_after=5) is None  # last checkpoint: step 4, refreshed at step 4
    (tmp_path / "b" / "metrics.jsonl").unlink()
    resumed = TRAINERS["rag"](cfg, tiny_model_factory("rag", cfg), examples, tmp_path / "b")
    resumed.train(progress=False, stop_after=6)
    a, b = straight.trainable_state(), resumed.trainable_state()
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(np.asarray(straight.model.index.held), np.asarray(resumed.model.index.held))


@pytest.mark.parametrize("threads,world,want", [(32, 4, 8), (16, 4, 4), (2, 1, 2), (3, 4, 1)])
def test_threads_per_rank_share_the_job_cpus(threads, world, want):
    from jsarag.train.distributed import rank_threads

    assert rank_threads(threads, world) == want


# -- the sharded index over 2 gloo processes ----------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sharded_index_two_ranks_equal_faiss_flat(tmp_path):
    x = _index_file(tmp_path / "ix", n=3001, d=16)
    rng = np.random.default_rng(2)
    queries = [rng.standard_normal((n, 16)).astype(np.float32) for n in (5, 3)]  # each rank its own, of different counts
    np.save(tmp_path / "q.npy", np.concatenate(queries))
    port, procs = _free_port(), []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(HERE), str(tmp_path)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [(g["lo"], g["hi"], g["held"]) for g in got] == [(0, 1500, 1500), (1500, 3001, 1501)]  # only its own rows
    for g, q in zip(got, queries):
        ref_s, ref_r = _flat(x, q, 7)
        assert np.array_equal(g["rows"], ref_r) and np.allclose(g["scores"], ref_s, atol=1e-5)
        np.testing.assert_array_equal(np.array(g["vectors"], np.float32), x[ref_r[:, :3]])  # vectors from either shard
    ref_s, ref_r = _flat(x, queries[0], 7)  # replicated queries (validation): every rank the same answer
    assert all(np.array_equal(g["replicated"], ref_r) for g in got)


def _rank_worker(folder: str) -> None:
    from jsarag.train.distributed import DataParallel

    dp = DataParallel.from_env("cpu")
    q = np.load(Path(folder) / "q.npy")
    mine = torch.from_numpy(q[:5] if dp.rank == 0 else q[5:])
    index = di.DenseIndex(Path(folder) / "ix", shard=dp, buffer_bytes=2 * 2 * 400)
    s, r = index.search_scores(mine, 7)
    vec = index.vectors(r[:, :3])
    rep = index.search(torch.from_numpy(q[:5]), 7, replicated=True)
    out = {"lo": index.lo, "hi": index.hi, "held": int(index.held.shape[0]), "rows": r.tolist(), "scores": s.tolist(),
           "vectors": vec.tolist(), "replicated": rep.tolist()}
    (Path(folder) / f"rank{dp.rank}.json").write_text(json.dumps(out))
    dp.close()  # leave the group: gloo torn down at interpreter exit can abort the process (-6)


if __name__ == "__main__":
    _rank_worker(sys.argv[1])
