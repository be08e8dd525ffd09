"""The sanity claims' verdict: a trained model is "not below" its starting point (claims.yaml,
direction ">=", e.g. the trained prior's R@20 against the untrained dense retriever, the trained EM
against the zero-shot EM).

Judged on the paired 95% CI of a - b, as a non-inferiority test with a margin (points of the
metric, claims.yaml `margin`, 0 when absent):
- REFUTED: the whole CI lies below 0, i.e. training made it significantly worse;
- CONFIRMED: the CI's lower end is at or above -margin;
- INCONCLUSIVE: otherwise (the test set cannot tell "not below" from "worse by more than the margin").
"""
from __future__ import annotations

import numpy as np

NOT_BELOW = ">="


def judge_not_below(c: dict, measured: float, ci: tuple[float, float] | None) -> tuple[str, str]:
    margin = float(c.get("margin", 0.0))
    if not np.isfinite(measured):
        return "REFUTED", "measured value is not finite"
    if ci is None:  # a compare (no CI): the point estimate decides
        return "INCONCLUSIVE", f"no CI: the point estimate is {'not ' if measured >= -margin else ''}below -{margin:g}"
    lo, hi = ci
    if hi < 0:
        return "REFUTED", f"{c['a']} is significantly below {c['b']} (95% CI below 0)"
    if lo >= -margin:
        return "CONFIRMED", ""
    return "INCONCLUSIVE", f"95% CI reaches below -{margin:g}: not shown to be not below {c['b']}"
