"""`python -m jsarag.evaluate`: the evaluation stage (rules/evaluate.smk).

  run        predictions and metrics of one trained run on the test split
  mis-sweep  MIS acceptance and distinct states of a trained JSA-RAG run against m and k
  zero-shot  the untrained generator on the dense / BM25 top-1 and the untrained posterior retriever
  step-cost  the methods' optimizer steps timed interleaved at the run's shapes (jsarag.evaluate.step_cost)
  signal     before training: does a dataset give posterior sampling something to learn from (docs/signal.md)
  verify     estimator bias and variance against exact gradients on an enumerable knowledge base

--params is the job's config as JSON (jsarag.config.run_params with the evaluate section).
"""
from __future__ import annotations

import argparse

from jsarag import InputError
from jsarag.cli import read_params, run_cli
from jsarag.config import RunParams, VerifyConfig
from jsarag.layout import BASELINES, ZERO_SHOT


def named(items: list[str], flag: str, need) -> dict[str, str]:
    """NAME=PATH arguments as a dict holding every name in `need`."""
    out = dict(it.partition("=")[::2] for it in items)
    missing = [n for n in need if not out.get(n)]
    if missing:
        raise InputError(f"{flag}: missing {missing[0]}=PATH")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m jsarag.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, what in (("run", "evaluate a trained run"), ("mis-sweep", "MIS statistics against m and k")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--params", required=True)
        p.add_argument("--examples", required=True, help="test split (run) or validation split (mis-sweep)")
        for a in ("passages", "index", "retriever", "generator"):
            p.add_argument(f"--{a}", required=True)
        p.add_argument("--run", required=True, help="the run directory (reads its model, writes its eval files)")
    z = sub.add_parser("zero-shot", help="zero-shot baselines on the test split")
    z.add_argument("--params", required=True)
    for a in ("examples", "passages", "index", "retriever", "generator"):
        z.add_argument(f"--{a}", required=True)
    z.add_argument("--baseline", action="append", default=[], required=True, help="NAME=PATH of a retrieval baseline (dense, bm25)")
    z.add_argument("--out", action="append", default=[], required=True, help="NAME=PATH for dense, bm25, posterior and metrics")
    c = sub.add_parser("step-cost", help="the methods' step times, interleaved")
    c.add_argument("--params", required=True, help="{method: run params} as JSON (jsarag.config.step_cost_params)")
    c.add_argument("--dataset", required=True)
    for a in ("examples", "passages", "index", "retriever", "generator"):
        c.add_argument(f"--{a}", required=True)
    c.add_argument("--out", required=True, help="step_cost.json")
    c.add_argument("--no-progress", action="store_true")
    s = sub.add_parser("signal", help="the untrained models' signal for posterior sampling on a split")
    s.add_argument("--params", required=True)
    for a in ("examples", "passages", "index", "retriever", "generator"):
        s.add_argument(f"--{a}", required=True)
    s.add_argument("--out", required=True, help="the JSON report")
    s.add_argument("--n", type=int, default=48, help="the first N examples of the split (default 48; clamped to the split)")
    s.add_argument("--k", type=int, default=None, help="candidates per retriever (default: the config's train k)")
    s.add_argument("--no-progress", action="store_true")
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
        if args.cmd == "step-cost":
            from jsarag.evaluate.step_cost import step_cost

            runs = {m: RunParams.from_dict(v, f"--params.{m}") for m, v in read_params(args.params).items()}
            step_cost(runs, args.dataset, args.examples, args.passages, args.index, args.retriever, args.generator, args.out,
                      progress=not args.no_progress)
            return
        p = read_params(args.params, RunParams)
        if args.cmd == "signal":
            from jsarag.evaluate.signal import format_summary, signal

            print(format_summary(signal(p, args.examples, args.passages, args.index, args.retriever, args.generator, args.out,
                                        n=args.n, k=args.k, progress=not args.no_progress)))
            return
        if args.cmd == "zero-shot":
            from jsarag.evaluate.zero_shot import zero_shot

            zero_shot(p, args.examples, args.passages, args.index, args.retriever, args.generator,
                      named(args.baseline, "--baseline", BASELINES), named(args.out, "--out", (*ZERO_SHOT, "metrics")))
            return
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
