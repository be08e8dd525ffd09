"""The whole DAG on a tiny config: download (local files in the real wheel layouts) -> prepare ->
BM25 + dense indexes -> baselines -> train rag/vrag/jsa -> evaluate -> report -> claims check.
Also: a second run has nothing to do, `--lint` is clean, and the HTML report builds."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from jsarag import tiny
from test_data import JAR, NQ_MEMBERS, make_ovos_wheel

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# project-written encyclopedia: (article, fact sentences); questions ask for the second slot
COUNTRIES = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
             ("Austria", "Vienna"), ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Australia", "Canberra"),
             ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
             ("Finland", "Helsinki"), ("Poland", "Warsaw"), ("Greece", "Athens"), ("Turkey", "Ankara"), ("India", "New Delhi"),
             ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Mexico", "Mexico City"), ("Cuba", "Havana"), ("Ireland", "Dublin"),
             ("Denmark", "Copenhagen"), ("Hungary", "Budapest"), ("Romania", "Bucharest"), ("Morocco", "Rabat"), ("Ghana", "Accra")]
FILLER = ("It has a long history of trade, farming and fishing, and its people speak several languages. The climate varies "
          "from region to region, with cold winters in the mountains and mild summers along the coast. ")


def encyclopedia() -> dict:
    out = {}
    for country, capital in COUNTRIES:
        extract = f"{country} is a country whose capital and largest city is {capital}. " + FILLER * 3 + \
                  f"The government of {country} meets in {capital}."
        out[country] = {"title": country, "extract": extract, "description": "Country", "topic": "Geography"}
    return out


def topics(pairs) -> bytes:
    return "".join(f"what is the capital of {c.lower()}\t{[cap]!r}\n" for c, cap in pairs).encode()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("workflow")
    ovos = make_ovos_wheel(d / "ovos.whl", json.dumps(encyclopedia()).encode())
    jar = io.BytesIO()  # like pyserini-0.12.0: the topics sit inside the Anserini jar inside the wheel
    with zipfile.ZipFile(jar, "w") as j:
        j.writestr(NQ_MEMBERS["dev"], topics(COUNTRIES[:22]))
        j.writestr(NQ_MEMBERS["test"], topics(COUNTRIES[22:]))
    top = d / "topics.whl"
    with zipfile.ZipFile(top, "w") as z:
        z.writestr(JAR, jar.getvalue())
    enc, gen = tiny.encoder(d / "enc"), tiny.causal(d / "gen")
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["downloads"] = {"ovos_wiki": {"path": str(ovos), "sha256": sha(ovos)}, "pyserini_topics": {"path": str(top), "sha256": sha(top)}}
    cfg["models"] = {"retriever": {"source": enc, "pooling": "mean", "normalize": True, "max_length": 64},
                     "generator": {"source": gen, "kind": "causal"}}
    cfg["corpora"]["vital"]["passage_words"] = 12
    cfg["datasets"]["nq"].update(n_train=8, n_valid=4, n_test=8)
    cfg["train"]["common"].update(epochs=1, k=2, threads=1, checkpoint_every=4, warmup_steps=1,
                                  lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "layers": None})
    cfg["evaluate"].update(max_new_tokens=4, bootstrap=50, mis_sweep={"proposals": [2, 4], "k": [2], "n_examples": 4})
    cfg["verify"] = {"draws": 5}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return d


def snakemake(workdir, *args, check=True):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args],
                          capture_output=True, text=True, env=env, check=check)


def test_whole_dag_runs_then_is_up_to_date(workdir):
    r = snakemake(workdir, "--cores", "2", check=False)
    assert r.returncode == 0, r.stderr[-4000:]
    n_passages = sum(1 for _ in open(workdir / "resources/corpora/vital/collection/passages.jsonl"))
    assert n_passages >= 100
    for t in ("generation", "retrieval_prior", "retrieval_posterior", "cost", "mis", "significance"):
        for ext in ("csv", "md", "tex"):
            assert (workdir / f"results/tables/{t}.{ext}").stat().st_size > 0
    for f in ("grad_norm_posterior", "loss_curves", "acceptance_rate", "recall_at_k", "estimators"):
        assert (workdir / f"results/figures/{f}.png").stat().st_size > 0
    check = (workdir / "results/claims_check.txt").read_text()
    assert any(line.startswith(("OK", "FAIL", "SKIP")) for line in check.splitlines())
    gen = (workdir / "results/tables/generation.csv").read_text()
    assert all(m in gen for m in ("rag", "vrag", "jsa"))
    for m in ("rag", "vrag", "jsa"):
        assert (workdir / f"benchmarks/out/train/nq/{m}/seed0.tsv").exists()
        assert json.loads((workdir / f"runs/nq/{m}/seed0/eval/metrics.json").read_text())["n"] == 8
    dry = snakemake(workdir, "-n", "--cores", "2")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_report_builds(workdir):
    if not (workdir / "results/claims_check.txt").exists():
        pytest.skip("the DAG did not run")
    snakemake(workdir, "--report", "results/report.html")
    html = (workdir / "results/report.html").read_text(errors="replace")
    assert len(html) > 10_000 and "claims" in html.lower()


def test_lint_is_clean():
    r = subprocess.run([*SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
