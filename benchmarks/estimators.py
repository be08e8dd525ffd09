"""Gradient estimators against exact gradients on an enumerable knowledge base.

Prints one JSON line per (estimator, component): cosine similarity of the mean estimate to the
exact gradient, relative bias, variance (trace of the covariance of one draw) and its ratio to
the squared norm of the exact gradient. Usage: python benchmarks/estimators.py [--draws 200]
"""
from jsarag.verify import main

if __name__ == "__main__":
    main()
