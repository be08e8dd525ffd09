"""Gradient estimators against exact gradients on an enumerable knowledge base.

Prints one JSON line per (estimator, component): cosine similarity of the mean estimate to the
exact gradient, relative bias, variance (trace of the covariance of one draw) and its ratio to
the squared norm of the exact gradient. Usage: python benchmarks/estimators.py [--draws 200]
"""
import argparse
import tempfile

from jsarag.evaluate.verify import verify

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for line in verify(args.draws, f"{tmp}/estimators.jsonl", threads=args.threads):
            print(line, flush=True)
