"""The claims check (`python -m jsarag.report claims`).

Checks each claim of claims.yaml against the regenerated tables (the tidy CSVs) and the exact
estimator checks (runs/verify/estimators.jsonl), and prints one line per claim:
- CONFIRMED: the 95% CI lies on the claimed side of 0 (and inside the claimed size, if one is given);
- REFUTED: the CI lies on the wrong side of 0, or excludes the claimed effect;
- INCONCLUSIVE: the CI includes both 0 and the claimed effect; the line gives the minimum effect
  detectable at 80% power with this n (2.80 standard errors);
- SKIP: the data is missing.
A cost claim (kind ratio) is judged on the step-time ratio of the methods timed interleaved in one
process (jsarag/report/cost.py): CONFIRMED when its 95% CI lies on the claimed side of 1, REFUTED
when on the other, else INCONCLUSIVE; SKIP without that measurement (runs/<dataset>/step_cost.json).
A claim is judged on the metric the paper measured it with (`metric`, e.g. the authors' BLEU-4); when this
run has not computed it (evaluate.metrics / evaluate.hits), on its `fallback` (the suite's definition), and
its line says so.
A claim without any CI (one seed, no per-step data) is INCONCLUSIVE and says which way it points.
Nothing is hard-coded here: every number comes from the tables. Exit status 0 whatever the
verdicts (it is a report); --strict exits 1 when a claim is REFUTED.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from jsarag import InputError
from jsarag.io import atomic_open, write_json
from jsarag.layout import TABLES, Layout
from jsarag.report.page import sha256_file
from jsarag.report.sanity import NOT_BELOW, judge_not_below
from jsarag.report.stats import t_quantile, z_quantile

log = logging.getLogger("jsarag.report")
CLAIMS = Path(__file__).with_name("claims.yaml")

REQUIRED = {"delta": ("id", "text", "dataset", "metric", "a", "b", "direction"),
            "compare": ("id", "text", "table", "dataset", "metric", "a", "b", "direction"),
            "ratio": ("id", "text", "table", "dataset", "metric", "a", "b", "direction"),
            "estimator": ("id", "text", "estimator", "component", "statistic", "direction", "threshold")}
STATUSES = ("CONFIRMED", "REFUTED", "INCONCLUSIVE", "SKIP")
Z95 = z_quantile(0.975)
MDE_FACTOR = Z95 + z_quantile(0.80)  # a CI's half-width in standard errors, plus 80% power
MAIN = "main"  # a delta claim's metric: each dataset's own main metric (EM for short answers, BLEU-4 ... for long)


def mde(lo: float, hi: float) -> float:
    """The smallest effect a test of this size detects with 80% power at the 5% level: 2.80 standard
    errors, the standard error read off the 95% CI's width."""
    return MDE_FACTOR * (max(lo, hi) - min(lo, hi)) / (2 * Z95)


def _is_main(t: pd.DataFrame) -> pd.Series:
    if "main" not in t:
        return pd.Series(False, index=t.index)
    return t["main"].astype(str).str.lower() == "true"


@dataclass
class Verdict:
    status: str   # CONFIRMED | REFUTED | INCONCLUSIVE | SKIP
    claim_id: str
    where: str
    detail: str
    text: str
    # the numbers of the line, for results/claims_check.json (None where the claim has none)
    measured: float | None = None
    lo: float | None = None   # 95% CI
    hi: float | None = None
    mde: float | None = None  # minimum effect detectable at 80% power (a difference's claims)

    def line(self) -> str:
        return f"{self.status:<12} {self.claim_id}  {self.where}  {self.detail}  -- {self.text}"


def load_claims(path: str | Path) -> list[dict]:
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(f"{path}:{mark.line + 1 if mark else '?'}: malformed YAML") from None
    claims = (doc or {}).get("claims")
    if not isinstance(claims, list):
        raise InputError(f"{path}: expected a top-level 'claims' list")
    for i, c in enumerate(claims):
        kind = c.get("kind")
        if kind not in REQUIRED:
            raise InputError(f"{path}: claims[{i}].kind must be one of {sorted(REQUIRED)}, got {kind!r}")
        missing = [k for k in REQUIRED[kind] if k not in c]
        if missing:
            raise InputError(f"{path}: claims[{i}] ({c.get('id')}): missing {', '.join(missing)}")
        if c["direction"] not in (">", "<", NOT_BELOW) or (kind == "ratio" and c["direction"] == NOT_BELOW):
            raise InputError(f"{path}: claims[{i}].direction must be '>', '<'" + ("" if kind == "ratio" else f" or '{NOT_BELOW}'"))
        if c.get("fallback") is not None and (c["kind"] != "delta" or not isinstance(c["fallback"], str)):
            raise InputError(f"{path}: claims[{i}] ({c['id']}): fallback (a metric name) applies to delta claims only")
        if (c.get("size") is None) != (c.get("tolerance") is None):
            raise InputError(f"{path}: claims[{i}] ({c['id']}): size and tolerance go together")
    return claims


class Tables:
    def __init__(self, root: str | Path):
        self.root, self._cache = Path(root), {}

    def get(self, name: str) -> pd.DataFrame | None:
        if name not in self._cache:
            p = self.root / f"{name}.csv"
            self._cache[name] = pd.read_csv(p, keep_default_na=False, na_values=[""]) if p.exists() else None
            if self._cache[name] is None:
                log.info("table %s not found", p)
        return self._cache[name]


def _judge(c: dict, measured: float, ci: tuple[float, float] | None = None) -> tuple[str, str]:
    """Three-way verdict of a difference a - b against the claimed direction (and size, if any).
    Without a CI only the direction can be read, and the reason says so. Direction ">=" ("not below",
    the sanity claims) is a non-inferiority test with a margin (jsarag/report/sanity.py)."""
    if c["direction"] == NOT_BELOW:
        return judge_not_below(c, measured, ci)
    sign = 1 if c["direction"] == ">" else -1
    if not np.isfinite(measured):
        return "REFUTED", "measured value is not finite"
    size = sign * abs(float(c["size"])) if c.get("size") is not None else None
    tol = float(c["tolerance"]) if size is not None else 0.0
    if ci is None:  # one seed and no per-step data: nothing tells the difference from noise
        ok = sign * measured > 0 and (size is None or abs(measured - size) <= tol)
        return "INCONCLUSIVE", f"no CI (one seed, no per-step data): the direction {'holds' if ok else 'does not hold'} in this run"
    lo, hi = sorted(ci)
    if sign * lo > 0 and sign * hi > 0:  # CI on the wrong side of 0 handled below; here: claimed side
        if size is not None and (hi < size - tol or lo > size + tol):
            return "REFUTED", f"CI excludes the claimed size {size:+.2f} ± {tol:.2f}"
        return "CONFIRMED", ""
    if sign * lo < 0 and sign * hi < 0:
        return "REFUTED", f"CI lies on the wrong side of 0 ({c['a']} {'<' if sign > 0 else '>'} {c['b']})"
    if size is not None and (hi < size - tol or lo > size + tol):
        return "REFUTED", f"CI excludes the claimed size {size:+.2f} ± {tol:.2f}"
    return "INCONCLUSIVE", f"CI includes 0 and the claimed effect; minimum detectable effect at 80% power: {mde(lo, hi):.3g}"


def _mde(ci: tuple[float, float] | None) -> float | None:
    """The effect detectable at 80% power with a 95% CI of this width (2.80 standard errors)."""
    return None if ci is None else float(mde(*ci))


def _claimed(c: dict) -> str:
    s = f"claimed {c['a']} {c['direction']} {c['b']}"
    if c.get("margin") is not None:
        s += f" (margin {float(c['margin']):g})"
    if c.get("size") is not None:
        s += f" by {float(c['size']):+.2f} ± {float(c['tolerance']):.2f}"
    return s


def _datasets(c: dict, present: set[str]) -> list[str]:
    if c["dataset"] == "*":
        return sorted(present)
    names = [c["dataset"], *c.get("aliases", [])]
    return [n for n in names if n in present][:1]


def _values(tables: Tables, c: dict, d: str, metric: str) -> str:
    t = tables.get(c["values_table"]) if c.get("values_table") else None
    if t is None:
        return ""
    parts = []
    for m in (c["a"], c["b"]):
        r = t[(t["dataset"] == d) & (t["method"] == m) & (t["metric"] == metric)]
        if len(r):
            r = r.iloc[0]
            parts.append(f"{m}={r['value']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]")
    return f"; {c['values_table']}: " + ", ".join(parts) if parts else ""


def check_delta(c: dict, tables: Tables) -> list[Verdict]:
    t = tables.get("significance")
    if t is None:
        return [Verdict("SKIP", c["id"], "significance[-]", "table significance.csv not found", c["text"])]
    ds = _datasets(c, set(t["dataset"]))
    if not ds:
        return [Verdict("SKIP", c["id"], f"significance[{c['dataset']}]", "dataset not in this run", c["text"])]
    out = []
    for d in ds:
        suffix = f"[{d}]" if c["dataset"] == "*" else ""
        metric, note = c["metric"], ""
        if metric == MAIN:  # the metric the dataset is judged on (datasets.NAME.metric; significance.csv `main`)
            main = t[(t["dataset"] == d) & _is_main(t)]["metric"]
            if main.empty:
                out.append(Verdict("SKIP", c["id"] + suffix, f"significance[{d}, main]", "no main-metric row for this dataset", c["text"]))
                continue
            metric, note = str(main.iloc[0]), f"; {main.iloc[0]} is {d}'s main metric"
        if c.get("fallback") and not ((t["dataset"] == d) & (t["metric"] == metric)).any():
            metric, note = c["fallback"], (f"; judged on {c['fallback']}, the suite's definition: {c['metric']} (the paper's) "
                                           "is not in this run (evaluate.metrics: authors / evaluate.hits: dpr)")
        where = f"significance[{d}, {metric}, {c['a']} - {c['b']}]"
        rows = t[(t["dataset"] == d) & (t["metric"] == metric)]
        fwd = rows[(rows["a"] == c["a"]) & (rows["b"] == c["b"])]
        rev = rows[(rows["a"] == c["b"]) & (rows["b"] == c["a"])]
        if len(fwd):
            r = fwd.iloc[0]
            delta, lo, hi = r["delta"], r["lo"], r["hi"]
        elif len(rev):
            r = rev.iloc[0]
            delta, lo, hi = -r["delta"], -r["hi"], -r["lo"]
        else:
            out.append(Verdict("SKIP", c["id"] + suffix, where, f"no {metric} comparison of {c['a']} and {c['b']} "
                               "(method or metric not in this run)", c["text"]))
            continue
        status, why = _judge(c, float(delta), (float(lo), float(hi)))
        sig = "CI excludes 0" if (lo > 0 or hi < 0) else "CI includes 0"
        detail = (f"measured {delta:+.2f} [95% CI {lo:+.2f}, {hi:+.2f}] ({sig}; p_boot={r['p_bootstrap']:.4f}, "
                  f"p_perm={r['p_permutation']:.4f}, n={int(r['n'])}, MDE={mde(lo, hi):.2f}); {_claimed(c)}"
                  + _values(tables, c, d, metric) + note)
        out.append(Verdict(status, c["id"] + suffix, where, detail + (f"; {why}" if why else ""), c["text"],
                           float(delta), float(lo), float(hi), _mde((lo, hi))))
    return out


def check_compare(c: dict, tables: Tables) -> list[Verdict]:
    t = tables.get(c["table"])
    if t is None:
        return [Verdict("SKIP", c["id"], f"{c['table']}[-]", f"table {c['table']}.csv not found", c["text"])]
    t = t[t["metric"] == c["metric"]]
    ds = _datasets(c, set(t["dataset"]))
    if not ds:
        return [Verdict("SKIP", c["id"], f"{c['table']}[{c['dataset']}, {c['metric']}]",
                        "dataset not in this run (or metric absent)", c["text"])]
    out = []
    for d in ds:
        suffix = f"[{d}]" if c["dataset"] == "*" else ""
        where = f"{c['table']}[{d}, {c['metric']}, {c['a']} vs {c['b']}]"
        cell = {m: t[(t["dataset"] == d) & (t["method"] == m)] for m in (c["a"], c["b"])}
        missing = [m for m, r in cell.items() if r.empty]
        if missing:
            out.append(Verdict("SKIP", c["id"] + suffix, where, f"method(s) {', '.join(missing)} not in this run", c["text"]))
            continue
        ra, rb = cell[c["a"]].iloc[0], cell[c["b"]].iloc[0]
        measured = float(ra["value"] - rb["value"])
        ci = _difference_ci(ra, rb, measured)
        status, why = _judge(c, measured, ci)
        spread = (f"95% CI {ra['lo']:.4g}..{ra['hi']:.4g} / {rb['lo']:.4g}..{rb['hi']:.4g} over n={int(ra['n'])}/{int(rb['n'])}"
                  if np.isfinite(float(ra["lo"])) and np.isfinite(float(rb["lo"])) else
                  f"sd over {int(ra['n_seeds'])}/{int(rb['n_seeds'])} seeds")
        diff = f"difference {measured:+.4g}" + (f" [95% CI {ci[0]:+.4g}, {ci[1]:+.4g}]" if ci else "")
        detail = (f"measured {c['a']}={ra['value']:.4g} ± {ra['sd']:.2g}, {c['b']}={rb['value']:.4g} ± {rb['sd']:.2g} "
                  f"({spread}), {diff}; {_claimed(c)}")
        out.append(Verdict(status, c["id"] + suffix, where, detail + (f"; {why}" if why else ""), c["text"],
                           measured, *(map(float, ci) if ci else (None, None)), _mde(ci)))
    return out


def _difference_ci(ra, rb, measured: float) -> tuple[float, float] | None:
    """95% CI of value(a) - value(b): from the two cells' own 95% CIs (independent runs) when both have
    one; else from the sd over seeds (t quantile, df = fewest seeds - 1) when both have >= 2 seeds."""
    if all(np.isfinite(float(r[k])) for r in (ra, rb) for k in ("lo", "hi")):
        se = np.hypot((ra["hi"] - ra["lo"]) / (2 * Z95), (rb["hi"] - rb["lo"]) / (2 * Z95))
        return measured - Z95 * se, measured + Z95 * se
    na, nb = int(ra["n_seeds"]), int(rb["n_seeds"])
    if min(na, nb) < 2:
        return None
    se = np.hypot(ra["sd"] / np.sqrt(na), rb["sd"] / np.sqrt(nb))
    t = t_quantile(0.975, min(na, nb) - 1)
    return measured - t * se, measured + t * se


def check_all(claims: list[dict], tables_dir: str | Path, estimators: str | Path | None = None) -> list[Verdict]:
    from jsarag.report.cost import check_ratio
    from jsarag.report.mechanisms import check_estimator, read_estimators

    tables = Tables(tables_dir)
    rows = read_estimators(estimators) if estimators else None
    verdicts = []
    for c in claims:
        if c["kind"] == "estimator":
            verdicts += check_estimator(c, rows, estimators)
        elif c["kind"] == "ratio":
            verdicts += check_ratio(c, tables)
        else:
            verdicts += (check_delta if c["kind"] == "delta" else check_compare)(c, tables)
    return verdicts


def claims_check(claims_path: str | Path, layout: Layout) -> list[Verdict]:
    """Check every claim against the tables under `layout` and write the claims check."""
    tables_dir = Path(layout.tables_dir())
    if not tables_dir.is_dir():
        raise InputError(f"{tables_dir} is not a directory: build the tables first")
    verdicts = check_all(load_claims(claims_path), tables_dir, layout.estimators())
    counts = {s: sum(v.status == s for v in verdicts) for s in STATUSES}
    rel = lambda p: os.path.relpath(p, layout.root or ".")  # noqa: E731 (no machine path in the committed file)
    header = (f"# claims of arXiv 2508.18168 ({Path(claims_path).name}) checked against the tables in {rel(tables_dir)} and "
              f"{rel(layout.estimators())}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + "\n"
              "# deltas in points of the metric; CI = paired bootstrap 95%; cost: the step-time ratio of the methods timed\n"
              "# interleaved in one process (runs/<dataset>/step_cost.json), 95% t-interval over rounds, judged against 1;\n"
              "# CONFIRMED = CI on the claimed side of 0; REFUTED = CI on the wrong side or excluding the claimed size;\n"
              "# INCONCLUSIVE = CI includes 0 and the claimed effect (MDE = effect detectable at 80% power); SKIP = data missing\n")
    text = header + "".join(v.line() + "\n" for v in verdicts)
    with atomic_open(layout.claims_check()) as f:
        f.write(text)
    write_json(layout.claims_json(), claims_record(verdicts, claims_path, layout, counts))
    sys.stdout.write(text)
    return verdicts


def claims_record(verdicts: list[Verdict], claims_path: str | Path, layout: Layout, counts: dict) -> dict:
    """The claims check as data (results/claims_check.json, read by jsarag.report.page): the numbers
    of each line, and the sha256 of each file it read (the tables' CSVs, the estimator check), keyed
    by their paths relative to the project folder."""
    def num(x):
        return float(x) if x is not None and np.isfinite(x) else None

    read = [layout.table(t) for t in TABLES] + [layout.estimators()]
    return {"claims": Path(claims_path).name, "counts": counts,
            "sources": {os.path.relpath(p, layout.root or "."): sha256_file(p) for p in read if os.path.exists(p)},
            "verdicts": [{"status": v.status, "id": v.claim_id, "where": v.where, "measured": num(v.measured), "lo": num(v.lo),
                          "hi": num(v.hi), "mde": num(v.mde), "text": v.text, "detail": v.detail} for v in verdicts]}
