"""`python -m jsarag.report`: the report stage (rules/report.smk).

  tables   the tables of jsarag.layout.TABLES (CSV, Markdown, LaTeX) from the run tree
  figures  the figures of jsarag.layout.FIGURES
  claims   the paper's claims (claims.yaml) checked against the tables
  page     the results page, results/README.md, from the three above (jsarag.report.page)
  definitions NAME=PREDICTIONS ...  the suite's and the authors' BLEU-4 / ROUGE-L side by side (jsarag.report.definitions)
  budget   where the run's minutes went: benchmarks/out/ summed per rule, CPU minutes and the floor on --cores (jsarag.report.budget)

--params is the part of the config the report reads, as JSON (jsarag.config.report_params).
--root is the project folder that holds runs/ and results/.
"""
from __future__ import annotations

import argparse
import sys

from jsarag.cli import read_params, run_cli
from jsarag.layout import Layout


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m jsarag.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("tables", "figures", "claims", "page", "definitions", "budget"))
    ap.add_argument("files", nargs="*", help="definitions: NAME=PREDICTIONS.jsonl, one or more")
    ap.add_argument("--params", help="the report's config sections as JSON (tables, figures, page)")
    ap.add_argument("--root", default="", help="project folder (default: the current one)")
    ap.add_argument("--claims", default=None, help="claims YAML (default: the packaged claims.yaml)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap / permutation seed")
    ap.add_argument("--config", nargs="*", default=[], help="page: the config file(s) the workflow ran with")
    ap.add_argument("--strict", action="store_true", help="claims: exit 1 if a claim is REFUTED")
    ap.add_argument("--cores", type=int, default=2, help="budget: the cores the floor is computed for")
    args = ap.parse_args(argv)

    def go():
        from jsarag import InputError

        layout = Layout(args.root)
        if args.what == "definitions":
            from jsarag.report.definitions import table

            named = dict(f.partition("=")[::2] for f in args.files)
            if not named or not all(named.values()):
                raise InputError("definitions: give one or more NAME=PREDICTIONS.jsonl")
            sys.stdout.write(table(named))
            return
        if args.what == "budget":
            from jsarag.report.budget import budget_table

            sys.stdout.write(budget_table(layout.benchmark_dir(), args.cores))
            return
        if args.what == "claims":
            from jsarag.report.claims import CLAIMS, claims_check

            verdicts = claims_check(args.claims or CLAIMS, layout)
            if args.strict and any(v.status == "REFUTED" for v in verdicts):
                sys.exit(1)
            return
        if not args.params:
            raise InputError(f"{args.what}: --params is required")
        from jsarag.config import ReportConfig
        from jsarag.report.runs import RunTree

        if args.what == "page":
            from jsarag.report.page import write_page

            write_page(layout, read_params(args.params, ReportConfig), args.config)
            return
        tree = RunTree(args.root, read_params(args.params, ReportConfig))
        if args.what == "tables":
            from jsarag.report.tables import build_tables

            build_tables(tree, layout, args.seed)
        else:
            from jsarag.report.figures import build_figures

            build_figures(tree, layout, args.seed)

    run_cli(go)


if __name__ == "__main__":
    main()
