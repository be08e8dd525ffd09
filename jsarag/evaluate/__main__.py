"""`python -m jsarag.evaluate`: the evaluation stage (rules/evaluate.smk).

  run        predictions and metrics of one trained run on the test split
  mis-sweep  MIS acceptance and distinct states of a trained JSA-RAG run against m and k
  verify     estimator bias and variance against exact gradients on an enumerable knowledge base

--params is the job's config as JSON (jsarag.config.run_params with the evaluate section).
"""
from __future__ import annotations

import argparse

from jsarag.cli import read_params, run_cli
from jsarag.config import RunParams, VerifyConfig


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m jsarag.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, what in (("run", "evaluate a trained run"), ("mis-sweep", "MIS statistics against m and k")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--params", required=True)
        p.add_argument("--examples", required=True, help="test split (run) or validation split (mis-sweep)")
        p.add_argument("--passages", required=True)
        p.add_argument("--index", required=True)
        p.add_argument("--retriever", required=True)
        p.add_argument("--generator", required=True)
        p.add_argument("--run", required=True, help="the run directory (reads its model, writes its eval files)")
    v = sub.add_parser("verify", help="estimators against exact gradients")
    v.add_argument("--params", required=True, help="the verify section as JSON")
    v.add_argument("--out", required=True, help="JSONL output")
    v.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    def go():
        if args.cmd == "verify":
            from jsarag.evaluate.verify import verify

            verify(read_params(args.params, VerifyConfig).draws, args.out, threads=args.threads)
            return
        p = read_params(args.params, RunParams)
        paths = (args.examples, args.passages, args.index, args.retriever, args.generator, args.run)
        if args.cmd == "run":
            from jsarag.evaluate.predict import evaluate

            evaluate(p, *paths)
        else:
            from jsarag.evaluate.mis_sweep import mis_sweep

            mis_sweep(p, *paths)

    run_cli(go)


if __name__ == "__main__":
    main()
