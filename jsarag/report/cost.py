"""The cost table (results/tables/cost.*) and the cost claims (kind `ratio` in claims.yaml).

Two sources, kept apart:
- runs/<dataset>/step_cost.json, the methods' optimizer steps timed interleaved in one process
  (jsarag.evaluate.step_cost): per method `interleaved_seconds_per_100_steps` with a 95% t-interval
  over rounds, and per pair a/b (method "jsa/rag", ...) `step_time_ratio`, the geometric mean of the
  per-round ratios with the 95% t-interval of the mean log ratio. The statistics are recomputed here
  from the per-round times the file holds. This is what the cost claims are judged on.
- the training runs (train_summary.json, metrics.jsonl): `seconds_per_100_steps` from the per-step
  times after COST_WARMUP_STEPS, peak memory, tokens/s and steps. The methods trained one after
  another, under whatever load each met, so their times describe the runs and judge nothing: a
  ratio of them flipped a verdict between two loads of the same machine.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from jsarag.evaluate.step_cost import read_step_cost
from jsarag.report.runs import RunTree
from jsarag.report.tables import _seed_rows, tidy_frame

log = logging.getLogger("jsarag.report")

COST_KEYS = ("seconds_per_100_steps", "peak_rss_mb", "tokens_per_s", "steps")
COST_WARMUP_STEPS = 10  # per-step times of the first steps (compilation, caches, allocator) are left out, for every method
INTERLEAVED = "interleaved_seconds_per_100_steps"
RATIO = "step_time_ratio"
LABELS = {"seconds_per_100_steps": "s / 100 steps (training log: description only)",
          INTERLEAVED: "s / 100 steps (interleaved)", RATIO: "step-time ratio (interleaved)"}
NOTE = (f"Interleaved: runs/<dataset>/step_cost.json, the methods' optimizer steps timed in one process, one step of each "
        "per round in rotated order, at the runs' shapes; s / 100 steps with a 95% t-interval over rounds; a/b rows: the "
        "geometric mean of the per-round step-time ratios with the 95% t-interval of the mean log ratio (the cost claims "
        f"read these). Training log (description only): train_summary.json, mean ± sd over seeds; s / 100 steps from the "
        f"training logs' per-step times after {COST_WARMUP_STEPS} warm-up steps with a 95% CI over steps; the methods trained "
        "one after another under different machine loads, so these times are not compared.")


def step_cost(per_seed: list[list[float]]) -> tuple[float, float, float, int] | None:
    """Seconds per 100 steps from per-step times, each seed's first COST_WARMUP_STEPS left out, pooled
    over seeds, with a 95% CI (normal, over steps)."""
    t = np.asarray([x for times in per_seed for x in times[COST_WARMUP_STEPS:]], dtype=np.float64)
    if len(t) < 2:
        return None
    mean, half = t.mean(), 1.959964 * t.std(ddof=1) / np.sqrt(len(t))
    return 100 * mean, 100 * (mean - half), 100 * (mean + half), len(t)


def training_log_rows(tree: RunTree, d: str) -> list[dict]:
    rows = []
    for m in tree.cfg.methods:
        sums = [s for s in (tree.summary(d, m, seed) for seed in tree.cfg.seeds) if s is not None]
        mine = _seed_rows(d, m, {k: [float(s[k]) for s in sums if k in s] for k in COST_KEYS}) if sums else []
        c = step_cost([[r["step_time"] for r in tree.train_log(d, m, seed) or [] if "step_time" in r] for seed in tree.cfg.seeds])
        for r in mine if c else ():
            if r["metric"] == "seconds_per_100_steps":
                r.update(value=c[0], lo=c[1], hi=c[2], n=c[3])
        rows += mine
    return rows


def interleaved_rows(tree: RunTree, d: str) -> list[dict]:
    """The rows of runs/<d>/step_cost.json (none when it is absent or measures fewer than 2 methods)."""
    methods = list(tree.cfg.methods)
    rec = read_step_cost(tree.layout.step_cost(d), d, methods) if len(methods) > 1 else None
    if rec is None:
        log.info("cost %s: no interleaved measurement (%s); the cost claims are skipped", d, tree.layout.step_cost(d))
        return []
    rows = [{"dataset": d, "method": m, "metric": INTERLEAVED, "value": r["seconds_per_100_steps"], "sd": np.nan,
             "lo": r["lo"], "hi": r["hi"], "n_seeds": 1, "n": r["n"]} for m, r in rec["per_method"].items()]
    rows += [{"dataset": d, "method": f"{r['a']}/{r['b']}", "metric": RATIO, "value": r["ratio"], "sd": np.nan,
              "lo": r["lo"], "hi": r["hi"], "n_seeds": 1, "n": r["n"]} for r in rec["ratios"]]
    return rows


def cost_table(tree: RunTree) -> pd.DataFrame:
    """The interleaved measurement's rows, then the training runs' (module doc)."""
    rows = []
    for d in tree.cfg.datasets:
        rows += interleaved_rows(tree, d) + training_log_rows(tree, d)
    return tidy_frame(rows)


# -- the cost claims (kind: ratio) ---------------------------------------------------------------
def check_ratio(c: dict, tables) -> list:
    """A claim on a ratio row `a/b` of a tidy table (cost: step_time_ratio): CONFIRMED when its 95% CI
    lies on the claimed side of 1, REFUTED when on the other side, else INCONCLUSIVE; a `b/a` row is
    read inverted. SKIP when the table has no such row for a dataset (no interleaved measurement)."""
    from jsarag.report.claims import MDE_FACTOR, Z95, Verdict, _datasets

    t = tables.get(c["table"])
    if t is None:
        return [Verdict("SKIP", c["id"], f"{c['table']}[-]", f"table {c['table']}.csv not found", c["text"])]
    ds = _datasets(c, set(t["dataset"]))
    if not ds:
        return [Verdict("SKIP", c["id"], f"{c['table']}[{c['dataset']}, {c['metric']}]", "dataset not in this run", c["text"])]
    out, sign = [], 1 if c["direction"] == ">" else -1
    for d in ds:
        suffix = f"[{d}]" if c["dataset"] == "*" else ""
        where = f"{c['table']}[{d}, {c['metric']}, {c['a']}/{c['b']}]"
        rows = t[(t["dataset"] == d) & (t["metric"] == c["metric"])]
        fwd, rev = rows[rows["method"] == f"{c['a']}/{c['b']}"], rows[rows["method"] == f"{c['b']}/{c['a']}"]
        if len(fwd):
            r = fwd.iloc[0]
            value, lo, hi = float(r["value"]), float(r["lo"]), float(r["hi"])
        elif len(rev):
            r = rev.iloc[0]
            value, lo, hi = 1 / float(r["value"]), 1 / float(r["hi"]), 1 / float(r["lo"])
        else:
            out.append(Verdict("SKIP", c["id"] + suffix, where, f"no {c['metric']} row of {c['a']}/{c['b']}: no interleaved "
                               f"measurement of this dataset (runs/{d}/step_cost.json); the training logs' times are a "
                               "description only", c["text"]))
            continue
        if sign * np.log(lo) > 0 and sign * np.log(hi) > 0:
            status, why = "CONFIRMED", ""
        elif sign * np.log(lo) < 0 and sign * np.log(hi) < 0:
            status, why = "REFUTED", f"CI lies on the wrong side of 1 ({c['a']} {'<' if sign > 0 else '>'} {c['b']})"
        else:
            se = (np.log(hi) - np.log(lo)) / (2 * Z95)
            status, why = "INCONCLUSIVE", (f"CI includes 1; smallest ratio detectable at 80% power: "
                                           f"x{np.exp(MDE_FACTOR * se):.3g}")
        detail = (f"measured {c['a']}/{c['b']} step time x{value:.3f} [95% CI {lo:.3f}, {hi:.3f}] over {int(r['n'])} interleaved "
                  f"rounds; claimed {c['a']} {c['direction']} {c['b']}")
        out.append(Verdict(status, c["id"] + suffix, where, detail + (f"; {why}" if why else ""), c["text"]))
    return out
