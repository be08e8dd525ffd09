"""Config schema and cross-reference checks; a bad key stops Snakemake before any job runs."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jsarag import InputError
from jsarag.config import load_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cfg():
    return load_config(ROOT / "config.yaml")


def test_shipped_configs_are_valid(cfg):
    assert set(cfg["datasets"]) == {"nq", "perlfaq"}
    paper = load_config(ROOT / "configs" / "paper.yaml")
    assert {"nq", "tqa", "msmarco", "orquac", "doqa"} <= set(paper["datasets"])


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["index"].update(bm25_thread=2), r"index\.bm25_thread: unknown key"),
    (lambda c: c["train"]["common"]["lora"].update(rank=8), r"train\.common\.lora\.rank: unknown key"),
    (lambda c: c["downloads"]["ovos_wiki"].update(sha265="0"), r"downloads\.ovos_wiki\.sha265: unknown key"),
    (lambda c: c["downloads"]["ovos_wiki"].update(sha256="abc"), r"downloads\.ovos_wiki\.sha256: 'abc' does not match"),
    (lambda c: c["datasets"]["nq"].update(n_test=0), r"datasets\.nq\.n_test: 0 is less than the minimum of 1"),
    (lambda c: c["datasets"]["nq"]["members"].update(valid="x"), r"datasets\.nq\.members\.valid: unknown key"),
    (lambda c: c["train"]["vrag"].update(estimator="magic"), r"train\.vrag\.estimator: 'magic' is not one of"),
    (lambda c: c.pop("index"), r"index: required key missing"),
    (lambda c: c["datasets"]["nq"].update(corpus="wiki"), r"datasets\.nq\.corpus: corpus 'wiki' is not defined"),
    (lambda c: c["corpora"]["vital"].update(download="nope"), r"corpora\.vital\.download: download 'nope' is not defined"),
    (lambda c: c["datasets"]["nq"].update(task="dialog"), r"datasets\.nq\.task: format dpr_topics is a qa format"),
])
def test_bad_config_names_key_path(cfg, mutate, message):
    bad = copy.deepcopy(cfg)
    mutate(bad)
    with pytest.raises(InputError, match=message):
        validate_config(bad)


def test_malformed_yaml_names_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seeds: [0]\nmethods: [rag\n")
    with pytest.raises(InputError, match=r"c\.yaml:\d+: malformed YAML"):
        load_config(p)


def test_snakemake_stops_on_bad_key_before_any_job(cfg, tmp_path):
    bad = copy.deepcopy(cfg)
    bad["index"]["bm25_thread"] = 2
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(bad))
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(p), "-d", str(tmp_path / "wd"),
                          "-s", str(ROOT / "Snakefile")], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "index.bm25_thread: unknown key" in res.stdout + res.stderr
    assert "Job stats" not in res.stdout + res.stderr


def test_configfile_replaces_embedded_config(cfg, tmp_path):
    """--configfile must not deep-merge into config.yaml (it would keep the default datasets)."""
    other = copy.deepcopy(cfg)
    other["datasets"] = {"nq2": other["datasets"]["nq"]}
    p = tmp_path / "other.yaml"
    p.write_text(yaml.safe_dump(other))

    def dry(target):
        return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(p), "-d", str(tmp_path / "wd"),
                               "-s", str(ROOT / "Snakefile"), target], capture_output=True, text=True, timeout=120)

    ok = dry("runs/nq2/baselines/metrics.json")
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert "resources/datasets/nq2/test.jsonl" in ok.stdout
    gone = dry("resources/datasets/nq/stats.json")  # only in config.yaml: no rule may make it now
    assert gone.returncode != 0


def test_gold_datasets_are_checked_against_their_corpus(tmp_path):
    """Every dataset's prepare job reads its corpus, so that the gold passages of OR-QuAC and DoQA (and
    any format naming gold ids) are checked against it (jsarag.data.integrity.check_gold)."""
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--configfile", str(ROOT / "configs" / "paper.yaml"),
                          "-d", str(tmp_path / "wd"), "-s", str(ROOT / "Snakefile"),
                          "resources/datasets/orquac/stats.json", "resources/datasets/doqa/stats.json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    commands = [ln for ln in res.stdout.splitlines() if "jsarag.data prepare-dataset" in ln]
    assert len(commands) == 2
    assert all("--corpus resources/corpora/" in c for c in commands), commands


def test_a_dataset_may_set_its_own_train_and_evaluate_keys(cfg):
    """datasets.NAME.train / .evaluate are merged over the shared sections for that dataset's jobs only,
    and checked like them (a bad key names the dataset)."""
    from jsarag import InputError
    from jsarag.config import run_params, validate_config

    two = copy.deepcopy(cfg)
    two["datasets"]["nq2"] = {**two["datasets"]["nq"], "train": {"max_target_tokens": 64, "epochs": 1}, "evaluate": {"max_new_tokens": 40}}
    own, shared = run_params(two, "nq2", "rag", 0, evaluate=True), run_params(two, "nq", "rag", 0, evaluate=True)
    assert (own["train"]["max_target_tokens"], own["train"]["epochs"], own["evaluate"]["max_new_tokens"]) == (64, 1, 40)
    assert shared == run_params(cfg, "nq", "rag", 0, evaluate=True)  # the other dataset's params (and its jobs) are unchanged
    bad = copy.deepcopy(two)
    bad["datasets"]["nq2"]["train"]["epoch"] = 1
    with pytest.raises(InputError, match="datasets.nq2.train"):
        validate_config(bad, source="x.yaml")
