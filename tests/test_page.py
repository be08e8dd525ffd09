"""The results page, results/README.md (`python -m jsarag.report page`, jsarag/report/page.py).

SYNTHETIC TEST INPUTS: the run tree is test_report's `make_runs` (numbers chosen by that test, not
results of any experiment); the tables, figures and claims check are built from it by the report's own
CLI, and the page from those."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_hygiene_env import MACHINE_PATH
from test_report import CONFIG, build_report

from jsarag import InputError
from jsarag.config import ReportConfig
from jsarag.layout import FIGURES, TABLES, Layout
from jsarag.report.__main__ import main as report_main
from jsarag.report.claims import MDE_FACTOR, Z95
from jsarag.report.page import build_page, code_version

CONFIG_TEXT = "# the config these synthetic results claim to come from\nseeds: [0, 1]\n"


def _page(root: Path) -> str:
    report_main(["page", "--root", str(root), "--params", json.dumps(CONFIG), "--config", str(root / "config.yaml")])
    return (root / "results" / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    build_report(root)
    (root / "config.yaml").write_text(CONFIG_TEXT)
    _page(root)
    return root


@pytest.fixture
def page(project) -> str:
    return (project / "results" / "README.md").read_text(encoding="utf-8")


def test_every_table_is_on_the_page(project, page):
    for t in TABLES:
        body = (project / "results" / "tables" / f"{t}.md").read_text(encoding="utf-8").strip()
        assert body and body in page, t
        assert f"[csv](tables/{t}.csv)" in page and f"[tex](tables/{t}.tex)" in page


def _txt_numbers(line: str):
    """measured, lo, hi of a delta line of claims_check.txt: 'measured +25.00 [95% CI +20.00, +30.00]'."""
    m = re.search(r"measured ([-+]\d+\.\d+) \[95% CI ([-+]\d+\.\d+), ([-+]\d+\.\d+)\]", line)
    return tuple(map(float, m.groups()))


def test_every_claim_is_on_the_page_with_its_verdict_ci_and_mde(project, page):
    rec = json.loads((project / "results" / "claims_check.json").read_text())
    lines = [ln for ln in (project / "results" / "claims_check.txt").read_text().splitlines() if not ln.startswith("#")]
    # the structured sibling holds the text's claims, verdicts and numbers
    assert [(v["status"], v["id"]) for v in rec["verdicts"]] == [tuple(ln.split()[:2]) for ln in lines]
    for v, ln in zip(rec["verdicts"], lines):
        if v["where"].startswith("significance[") and v["status"] != "SKIP":
            assert _txt_numbers(ln) == pytest.approx((v["measured"], v["lo"], v["hi"]), abs=0.005), v["id"]
            assert v["mde"] == pytest.approx(MDE_FACTOR * (v["hi"] - v["lo"]) / (2 * Z95))
    rows = {r.split("|")[2].strip(" `"): [c.strip() for c in r.split("|")[1:-1]] for r in page.splitlines() if r.startswith("| ")}
    for v in rec["verdicts"]:
        status, _, measured, ci, mde = rows[v["id"]][:5]
        assert status == v["status"], v["id"]
        if v["measured"] is not None and abs(v["measured"]) >= 0.01:
            assert measured == f"{v['measured']:+.2f}", v["id"]
        if v["lo"] is not None and min(abs(v["lo"]), abs(v["hi"])) >= 0.01:
            assert ci == f"[{v['lo']:+.2f}, {v['hi']:+.2f}]", v["id"]
        if v["mde"] is not None:
            assert mde == f"{v['mde']:.2f}", v["id"]
    # the synthetic tree's nq R@1: jsa 60/50 % hits at rank 1, rag 30 % -> +25 points (test_report)
    assert rows["nq_r1_jsa_over_rag"][:3] == ["REFUTED", "`nq_r1_jsa_over_rag`", "+25.00"]
    assert rows["nq_r1_jsa_over_rag"][4] != "—"
    assert rows["tqa_em_jsa_over_rag"][0] == "SKIP" and "dataset not in this run" in rows["tqa_em_jsa_over_rag"][5]
    assert rows["vrag_posterior_variance_exceeds_jsa"][2] == "+10.00"  # the estimator ratio 10 / 1 (test_report's est)
    assert "[claims_check.txt](claims_check.txt)" in page


def test_figure_links_point_at_the_figures(project, page):
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", page)
    assert [name for name, _ in links] == list(FIGURES)
    for name, target in links:
        assert not target.startswith("/") and (project / "results" / target).is_file(), target
        assert (project / "results" / target).resolve() == (project / "results" / "figures" / f"{name}.png").resolve()


def test_provenance(project, page):
    sha = hashlib.sha256(CONFIG_TEXT.encode()).hexdigest()
    assert f"| config | `config.yaml` (sha256 `{sha}`) |" in page
    assert "| datasets | nq (qa), doqa (dialog) |" in page
    assert "| methods | rag, vrag, jsa |" in page and "| seeds | 0, 1 |" in page
    v = code_version()
    code = next(ln for ln in page.splitlines() if ln.startswith("| code |"))
    assert (v["commit"] in code) and (("uncommitted changes" in code) == bool(v["dirty"]))
    counts = json.loads((project / "results" / "claims_check.json").read_text())["counts"]
    assert ", ".join(f"{n} {s}" for s, n in counts.items()) in page
    claims_sha = hashlib.sha256((project / "results" / "claims_check.json").read_bytes()).hexdigest()
    assert f"| results/claims_check.json | `{claims_sha}` |" in page


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_code_version_of_a_checkout(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    assert code_version(tmp_path) == {"commit": "unknown", "dirty": None}  # not a git checkout
    (tmp_path / "jsarag").mkdir()
    (tmp_path / "jsarag" / "__init__.py").write_text("")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "README.md").write_text("old\n")
    _git(tmp_path, "init", "-q")
    assert code_version(tmp_path)["commit"] == "unknown"  # jsarag/ not tracked: not this checkout's code
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert code_version(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "results" / "README.md").write_text("new\n")  # what a run rewrites does not count
    assert code_version(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "jsarag" / "__init__.py").write_text("x = 1\n")
    assert code_version(tmp_path) == {"commit": head, "dirty": True}


def test_no_machine_path_and_the_same_bytes_elsewhere(project, page, tmp_path):
    assert MACHINE_PATH.search(page.encode()) is None
    assert str(project) not in page
    assert _page(project) == page  # built again
    other = tmp_path / "elsewhere"  # the same inputs in another folder
    shutil.copytree(project, other)
    (other / "results" / "README.md").unlink()
    assert _page(other) == page


def test_a_table_changed_after_the_claims_check_is_refused(project, tmp_path, capsys):
    root = tmp_path / "p"
    shutil.copytree(project, root)
    (root / "results" / "README.md").unlink()
    cost = root / "results" / "tables" / "significance.csv"
    cost.write_text(cost.read_text().replace("nq", "xq", 1))
    with pytest.raises(SystemExit) as e:
        _page(root)
    assert e.value.code == 2
    assert "results/tables/significance.csv" in capsys.readouterr().err
    assert not (root / "results" / "README.md").exists()
    assert [p.name for p in (root / "results").iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_a_missing_figure_is_refused(project, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(project, root)
    (root / "results" / "figures" / f"{FIGURES[0]}.png").unlink()
    cfg = ReportConfig(**{k: v for k, v in CONFIG.items() if k != "evaluate"})
    with pytest.raises(InputError, match=f"{FIGURES[0]}.png: not found"):
        build_page(Layout(str(root)), cfg, [])
