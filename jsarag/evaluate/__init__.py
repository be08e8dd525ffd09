"""Evaluation stage: predictions, metrics, the MIS sweep, and the exact-gradient check on an
enumerable knowledge base."""
