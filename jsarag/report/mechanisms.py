"""Mechanism claims (kind: estimator in claims.yaml), judged on the exact estimator checks.

Each reads one row of runs/verify/estimators.jsonl (`python -m jsarag.evaluate verify`): a
statistic of an estimator on one component (or, with `vs`, the ratio of that statistic between
two estimators), with its 95% CI when the row gives a standard error (`<statistic>_se`), compared
with the claim's threshold. CONFIRMED when the CI lies beyond the threshold on the claimed side,
REFUTED when it lies on the other side, INCONCLUSIVE when it straddles it; a statistic without a
standard error (a p-value, a deterministic estimator) is compared directly.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

Z95 = 1.959964


def read_estimators(path: str | Path) -> list[dict] | None:
    p = Path(path)
    if not p.exists():
        return None
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _value(row: dict, stat: str) -> tuple[float, float | None]:
    se = row.get(f"{stat}_se")
    return float(row[stat]), (float(se) if se is not None and row.get("n_draws", 1) > 1 else None)


def _measure(c: dict, rows: list[dict], comp: str) -> tuple[float, tuple[float, float] | None, str] | None:
    """(value, 95% CI or None, description) of the claim's statistic on one component."""
    find = {(r["estimator"], r["component"]): r for r in rows}
    a = find.get((c["estimator"], comp))
    if a is None:
        return None
    stat = c["statistic"]
    va, sa = _value(a, stat)
    if not c.get("vs"):
        ci = (va - Z95 * sa, va + Z95 * sa) if sa else None
        return va, ci, f"{c['estimator']}.{comp}.{stat}"
    b = find.get((c["vs"], comp))
    if b is None:
        return None
    vb, sb = _value(b, stat)
    ratio = va / vb if vb > 0 else float("inf")
    ci = None
    if sa and sb and va > 0 and vb > 0:  # delta method on the log of the ratio
        se = np.hypot(sa / va, sb / vb)
        ci = (ratio * np.exp(-Z95 * se), ratio * np.exp(Z95 * se))
    return ratio, ci, f"{c['estimator']}/{c['vs']} {comp}.{stat} ({va:.4g} / {vb:.4g})"


def check_estimator(c: dict, rows: list[dict] | None, path) -> list:
    from jsarag.report.claims import Verdict

    if rows is None:
        return [Verdict("SKIP", c["id"], "estimators[-]", f"{path} not found (run the verify rule)", c["text"])]
    comps = sorted({r["component"] for r in rows if r["estimator"] == c["estimator"]}) if c["component"] == "*" else [c["component"]]
    out = []
    for comp in comps or [c["component"]]:
        cid = c["id"] + (f"[{comp}]" if c["component"] == "*" else "")
        where = f"estimators[{c['estimator']}{' vs ' + c['vs'] if c.get('vs') else ''}, {comp}, {c['statistic']}]"
        m = _measure(c, rows, comp)
        if m is None:
            out.append(Verdict("SKIP", cid, where, "estimator or component not in the file", c["text"]))
            continue
        value, ci, what = m
        row = next(r for r in rows if r["estimator"] == c["estimator"] and r["component"] == comp)
        need = c.get("requires") or {}
        unmet = [f"{k} = {row.get(k)} < {v}" for k, v in need.items() if not float(row.get(k, np.nan)) >= float(v)]
        thr, sign = float(c["threshold"]), 1 if c["direction"] == ">" else -1
        ci_txt = f" [95% CI {ci[0]:.4g}, {ci[1]:.4g}]" if ci else " (no standard error: compared directly)"
        detail = f"measured {what} = {value:.4g}{ci_txt} over {row['n_draws']} draws; threshold {c['direction']} {thr:g}"
        detail += "".join(f"; {k} = {row[k]:.4g}" for k in need if k in row)
        if unmet:
            out.append(Verdict("SKIP", cid, where, detail + "; precondition not met: " + ", ".join(unmet), c["text"]))
            continue
        lo, hi = ci if ci else (value, value)
        if sign * (lo - thr) > 0 and sign * (hi - thr) > 0:
            status = "CONFIRMED"
        elif sign * (lo - thr) <= 0 and sign * (hi - thr) <= 0:
            status = "REFUTED"
        else:
            status = "INCONCLUSIVE"
        out.append(Verdict(status, cid, where, detail, c["text"], float(value), *(map(float, ci) if ci else (None, None))))
    return out
