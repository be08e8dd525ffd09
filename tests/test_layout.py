"""The file tree is written down once, in jsarag/layout.py: no rule and no other module spells out a
path under resources/, runs/ or results/, and the rules' outputs are the layout's paths."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from jsarag.layout import FIGURES, TABLES, Layout

REPO = Path(__file__).resolve().parents[1]
# a string literal that starts with one of the tree's top folders
PATH_LITERAL = re.compile(r"""["'](?:\./)?(resources|runs|results)/""")


def test_no_path_of_the_tree_outside_the_layout_module():
    offenders = []
    files = [*REPO.glob("rules/*.smk"), REPO / "Snakefile", *REPO.glob("jsarag/**/*.py"), *REPO.glob("benchmarks/*.py")]
    for f in files:
        if f.name == "layout.py":
            continue
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if PATH_LITERAL.search(line):
                offenders.append(f"{f.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_layout_paths_are_rooted():
    lay = Layout("/x")
    run = lay.run("nq", "jsa", 0)
    assert run.predictions == "/x/runs/nq/jsa/seed0/eval/predictions.jsonl"
    assert lay.passages("vital") == "/x/resources/corpora/vital/collection/passages.jsonl"
    assert lay.table("mis", "md") == "/x/results/tables/mis.md" and lay.figure("loss_curves") == "/x/results/figures/loss_curves.png"
    assert Layout().split("nq", "train") == "resources/datasets/nq/train.jsonl"


def test_rules_produce_every_table_and_figure_of_the_layout():
    """The dry run's outputs include each table and figure listed once in jsarag.layout."""
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--quiet", "rules"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "-p"], cwd=REPO, capture_output=True, text=True)
    out = r.stdout + r.stderr
    lay = Layout()
    for t in TABLES:
        assert lay.table(t) in out, t
    for f in FIGURES:
        assert lay.figure(f) in out, f
