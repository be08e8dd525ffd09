"""The whole DAG on a config that uses only the generic formats (jsarag.data.generic) with local
files: a folder download holding a gzipped JsonCollection corpus and train/test question JSONL."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from test_workflow import COUNTRIES, encyclopedia, snakemake

from jsarag.evaluate import tiny_kb as tiny

CONFIG = Path(__file__).resolve().parent / "workflow" / "generic.yaml"


def make_inputs(d: Path) -> None:
    mine = d / "inputs" / "mine"
    mine.mkdir(parents=True)
    corpus = "".join(json.dumps({"id": c, "title": c, "contents": a["extract"]}) + "\n" for c, a in encyclopedia().items())
    (mine / "corpus.jsonl.gz").write_bytes(gzip.compress(corpus.encode(), mtime=0))

    def questions(pairs):
        return "".join(json.dumps({"id": f"cap-{c}", "question": f"what is the capital of {c.lower()}",
                                   "answers": [cap, f"{cap} city"], "gold_passages": [f"{c}#0"]}) + "\n" for c, cap in pairs)

    (mine / "train.jsonl").write_text(questions(COUNTRIES[:22]))
    (mine / "test.jsonl").write_text(questions(COUNTRIES[22:]))
    tiny.encoder(d / "inputs" / "encoder")
    tiny.causal(d / "inputs" / "generator")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("workflow_generic")
    make_inputs(d)
    (d / "config.yaml").write_bytes(CONFIG.read_bytes())
    return d


def test_generic_formats_run_the_whole_dag(workdir):
    r = snakemake(workdir, "--cores", "2", check=False)
    assert r.returncode == 0, r.stderr[-4000:]
    corpus_stats = json.loads((workdir / "resources/corpora/kb/stats.json").read_text())
    assert corpus_stats["passages"] == 330 and len(corpus_stats["sha256"]) == 64
    stats = json.loads((workdir / "resources/datasets/capitals/stats.json").read_text())
    assert stats["read"] == {"train": 22, "test": 8} and stats["written"] == {"train": 18, "valid": 4, "test": 8}
    assert stats["gold_passages_checked"] == 30 and stats["targets"] == {"random": 30}
    assert "fetched file has sha256" in (workdir / "logs/download/mine.zip.log").read_text()
    for m in ("rag", "jsa"):
        assert json.loads((workdir / f"runs/capitals/{m}/seed0/eval/metrics.json").read_text())["n"] == 8
    gen = (workdir / "results/tables/generation.csv").read_text()
    assert "capitals" in gen and "jsa" in gen
    assert (workdir / "results/claims_check.txt").exists()
