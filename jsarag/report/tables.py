"""The paper's tables from the run tree (`python -m jsarag.report tables`).

Reads the run tree and writes each table of jsarag.layout.TABLES as CSV, Markdown and LaTeX.

The CSVs are tidy (one row per dataset x method x metric, numeric columns value/sd/lo/hi) and are
what the claims check (jsarag.report.claims) reads; the Markdown/LaTeX tables show the same numbers as "mean [lo, hi]"
(one seed: 95% percentile-bootstrap CI over test examples) or "mean ± sd [lo, hi]" (several seeds:
sd over seeds; CI over examples of the seed-averaged scores). All metrics are in points (0-100).
Missing inputs are skipped with a logged note; a table with no data is still written, empty, with a
note saying why, so that the workflow's outputs always exist. No number is ever filled in.
"""
from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd

from jsarag.evaluate import metrics as M
from jsarag.evaluate.authors_metrics import AUTHORS_METRICS, DPR_SUFFIX, definitions_note
from jsarag.io import atomic_open
from jsarag.layout import BASELINES, TABLES, Layout
from jsarag.report import stats as S
from jsarag.report.runs import CORPUS_METRICS, GEN_METRICS, RunTree
from jsarag.report.zero_shot import zero_shot_cells, zero_shot_pairs

log = logging.getLogger("jsarag.report")

TIDY_COLUMNS = ["dataset", "method", "metric", "value", "sd", "lo", "hi", "n_seeds", "n"]
LABELS = {"em": "EM", "f1": "F1", "bleu1": "BLEU-1", "bleu4": "BLEU-4", "rouge_l": "ROUGE-L", "mrr@10": "MRR@10",
          "peak_rss_mb": "peak RSS (MB)", "tokens_per_s": "tokens/s",
          "steps": "steps"}
SIG_METRICS = {"qa": ["em", "f1", "r@1", "r@10", "mrr@10"], "dialog": ["bleu4", "rouge_l", "f1", "r@1", "r@10", "mrr@10"]}
GRAD_COMPONENTS = ("posterior", "prior", "generator")
DEFINED = ("generation", "retrieval_prior", "retrieval_posterior", "significance")  # tables whose note names each metric's definition


def label(metric: str) -> str:
    from jsarag.report.cost import LABELS as COST_LABELS

    if metric in COST_LABELS:
        return COST_LABELS[metric]
    for suffix, tag in (("_authors", "authors"), (DPR_SUFFIX, "DPR")):
        if metric.endswith(suffix):
            return f"{label(metric[:-len(suffix)])} ({tag})"
    return LABELS.get(metric, metric.replace("r@", "R@"))


def gen_metrics(cfg, task: str) -> list[str]:
    """The generation table's metrics: the suite's, and the authors' with evaluate.metrics: authors."""
    return GEN_METRICS[task] + (list(AUTHORS_METRICS) if cfg.evaluate.metrics == "authors" else [])


def with_dpr(cfg, metrics: list[str]) -> list[str]:
    """Retrieval metrics, and the same under DPR's rule with evaluate.hits: dpr."""
    return metrics + ([m + DPR_SUFFIX for m in metrics if "@" in m] if cfg.evaluate.hits == "dpr" else [])


def sig_metrics(cfg, task: str, dataset: str | None = None) -> list[str]:
    authors = ["bleu4_authors", "rouge_l_authors"] if cfg.evaluate.metrics == "authors" else []
    main = [cfg.main_metric(dataset)] if dataset is not None else []
    return with_dpr(cfg, list(dict.fromkeys(main + SIG_METRICS[task] + authors)))


def fmt_cell(value, sd=np.nan, lo=np.nan, hi=np.nan, n_seeds=1, digits=2) -> str:
    if value is None or not np.isfinite(value):
        return ""
    s = f"{value:.{digits}f}"
    if n_seeds > 1 and np.isfinite(sd):
        s += f" ± {sd:.{digits}f}"
    if np.isfinite(lo) and np.isfinite(hi):
        s += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return s


# -- writing -----------------------------------------------------------------------------------
def write_table(layout: Layout, name: str, tidy: pd.DataFrame, display: pd.DataFrame, note: str = "") -> None:
    """name.csv (tidy numbers), name.md and name.tex (display). Empty tables carry a note."""
    with atomic_open(layout.table(name, "csv")) as f:
        tidy.to_csv(f, index=False)
    if display.empty:
        note = note or "no data"
        log.info("table %s: empty (%s)", name, note)
        md, tex = f"_No data: {note}._\n", f"% No data: {note}.\n"
    else:
        md = display.to_markdown(index=False) + "\n" + (f"\n{note}\n" if note else "")
        tex = display.to_latex(index=False, escape=True).replace("±", r"$\pm$")
        tex = (f"% {note}\n" if note else "") + tex
    with atomic_open(layout.table(name, "md")) as f:
        f.write(md)
    with atomic_open(layout.table(name, "tex")) as f:
        f.write(tex)


def wide(tidy: pd.DataFrame, keys: list[str], metrics: list[str] | None = None) -> pd.DataFrame:
    """Tidy rows -> one row per `keys`, one formatted column per metric (display order kept)."""
    if tidy.empty:
        return pd.DataFrame()
    metrics = metrics or list(dict.fromkeys(tidy["metric"]))
    rows = []
    for key, g in tidy.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        cells = {r.metric: fmt_cell(r.value, r.sd, r.lo, r.hi, r.n_seeds) for r in g.itertuples()}
        row.update({label(m): cells.get(m, "") for m in metrics if m in set(tidy["metric"])})
        rows.append(row)
    return pd.DataFrame(rows)


def tidy_frame(rows: list[dict], columns=TIDY_COLUMNS) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


# -- tables ------------------------------------------------------------------------------------
def _cell_rows(ms, dataset, method, metrics, n_boot, seed, strip="") -> list[dict]:
    rows = []
    for metric in metrics:
        if not ms.has(metric):
            log.info("skip %s/%s %s: not in its predictions", dataset, method, metric)
            continue
        ms_m = ms.restrict(metric)  # generation: the generated examples (evaluate.generate_n); retrieval: all
        mean, sd = S.mean_sd(ms_m.seed_values(metric))
        pooled = ms_m.pooled(metric)
        ci = (S.bootstrap_corpus_ci(pooled, lambda s, m=metric: M.corpus_metric(m, s), n_boot, seed=seed)
              if metric in CORPUS_METRICS else S.bootstrap_ci(pooled, n_boot, seed=seed))
        rows.append({"dataset": dataset, "method": method, "metric": metric[len(strip):] if strip else metric,
                     "value": mean, "sd": sd, "lo": ci.lo, "hi": ci.hi, "n_seeds": len(ms.seeds), "n": len(ms_m.ids)})
    return rows


def generation_table(tree: RunTree, seed: int) -> pd.DataFrame:
    rows = []
    for d, task in tree.cfg.datasets.items():
        for m in tree.cfg.methods:
            ms = tree.method(d, m)
            if ms is not None:
                rows += _cell_rows(ms, d, m, gen_metrics(tree.cfg, task), tree.cfg.n_boot, seed)
        rows += zero_shot_cells(tree, d, seed, _cell_rows, gen_metrics(tree.cfg, task), generation=True)
    return tidy_frame(rows)


def retrieval_table(tree: RunTree, seed: int, posterior: bool) -> pd.DataFrame:
    prefix = "posterior/" if posterior else ""
    metrics = with_dpr(tree.cfg, [f"{prefix}r@{k}" for k in tree.cfg.ks] + [f"{prefix}mrr@10"])
    rows = []
    for d in tree.cfg.datasets:
        for m in tree.cfg.methods:
            ms = tree.method(d, m)
            if ms is not None and any(ms.has(x) for x in metrics):
                rows += _cell_rows(ms, d, m, metrics, tree.cfg.n_boot, seed, strip=prefix)
        if not posterior:
            for b in BASELINES:
                bs = tree.baseline(d, b)
                if bs is not None:
                    rows += _cell_rows(bs, d, b, metrics, tree.cfg.n_boot, seed)
        else:
            rows += zero_shot_cells(tree, d, seed, _cell_rows, metrics, generation=False)
    return tidy_frame(rows)


def significance_table(tree: RunTree, seed: int) -> pd.DataFrame:
    """Every pair (a, b) of configured methods, a listed after b in config (e.g. jsa vs rag), on the
    examples both have: delta = metric(a) - metric(b), its paired-bootstrap CI and p-value, and the
    sign-flip permutation p-value."""
    cols = ["dataset", "metric", "a", "b", "delta", "lo", "hi", "p_bootstrap", "p_permutation", "n", "main"]
    rows = []
    for d, task in tree.cfg.datasets.items():
        avail = [m for m in tree.cfg.methods if tree.method(d, m) is not None]
        for b, a in itertools.combinations(avail, 2):
            rows += pair_rows(d, a, tree.method(d, a), b, tree.method(d, b), sig_metrics(tree.cfg, task, d), tree.cfg.n_boot, seed)
        rows += zero_shot_pairs(tree, d, seed, pair_rows)
    for r in rows:  # the metric the dataset is judged on (datasets.NAME.metric): what `metric: main` claims read
        r["main"] = r["metric"] == tree.cfg.main_metric(r["dataset"])
    return pd.DataFrame(rows, columns=cols)


def pair_rows(d: str, a: str, A, b: str, B, metrics: list[str], n_boot: int, seed: int) -> list[dict]:
    """Significance rows of a - b for each metric both have, on the examples both have."""
    common = set(B.ids)
    ids = [i for i in A.ids if i in common]
    if not ids:
        log.warning("skip significance %s %s vs %s: no shared example", d, a, b)
        return []
    A0, B0 = A.subset(ids), B.subset(ids)
    rows = []
    for metric in metrics:
        if not (A0.has(metric) and B0.has(metric)):
            continue
        mine = set(B0.restrict(metric).ids)  # generation: the examples both generated (evaluate.generate_n)
        both = [i for i in A0.restrict(metric).ids if i in mine]
        if not both:
            continue
        A, B = A0.subset(both), B0.subset(both)
        fn = (lambda s, m=metric: M.corpus_metric(m, s)) if metric in CORPUS_METRICS else None
        pa, pb = A.pooled(metric), B.pooled(metric)
        res = S.paired_bootstrap(pa, pb, n_boot, seed=seed, fn=fn)
        p_perm = S.permutation_test(pa, pb, n_boot, seed=seed, fn=fn)
        rows.append({"dataset": d, "metric": metric, "a": a, "b": b, "delta": res.delta, "lo": res.lo,
                     "hi": res.hi, "p_bootstrap": res.p, "p_permutation": p_perm, "n": len(both)})
    return rows


def significance_display(t: pd.DataFrame) -> pd.DataFrame:
    if t.empty:
        return pd.DataFrame()
    return pd.DataFrame({"dataset": t["dataset"], "metric": t["metric"].map(label),
                         "comparison": t["a"] + " − " + t["b"],
                         "delta [95% CI]": [fmt_cell(r.delta, lo=r.lo, hi=r.hi) for r in t.itertuples()],
                         "p (paired bootstrap)": t["p_bootstrap"].map(lambda p: f"{p:.4f}"),
                         "p (permutation)": t["p_permutation"].map(lambda p: f"{p:.4f}"), "n": t["n"]})


def _seed_rows(dataset: str, method: str, per_seed: dict[str, list[float]]) -> list[dict]:
    rows = []
    for metric, vals in per_seed.items():
        vals = [v for v in vals if v is not None and np.isfinite(v)]
        if vals:
            mean, sd = S.mean_sd(vals)
            rows.append({"dataset": dataset, "method": method, "metric": metric, "value": mean, "sd": sd,
                         "lo": np.nan, "hi": np.nan, "n_seeds": len(vals), "n": len(vals)})
    return rows


def grad_norm_summary(values: list[float]) -> dict[str, float]:
    """Spikiness of a gradient-norm series: median, max, max/median, p99/median, coefficient of variation."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    med = float(np.median(v))
    ratio = (lambda x: x / med) if med > 0 else (lambda x: np.nan)
    return {"median": med, "max": float(v.max()), "max_over_median": ratio(float(v.max())),
            "p99_over_median": ratio(float(np.quantile(v, 0.99))), "cv": float(v.std() / v.mean()) if v.mean() > 0 else np.nan}


def grad_norm_table(tree: RunTree) -> pd.DataFrame:
    rows = []
    for d in tree.cfg.datasets:
        for m in tree.cfg.methods:
            per_seed: dict[str, list[float]] = {}
            for seed in tree.cfg.seeds:
                logs = tree.train_log(d, m, seed)
                for comp in GRAD_COMPONENTS if logs else ():
                    series = [r[f"grad_norm/{comp}"] for r in logs if r.get(f"grad_norm/{comp}") is not None]
                    if series:
                        for k, v in grad_norm_summary(series).items():
                            per_seed.setdefault(f"{comp}/{k}", []).append(v)
            rows += _seed_rows(d, m, per_seed)
    return tidy_frame(rows)


def _nanmean(vals: list[float]) -> float:
    v = np.asarray(vals, dtype=np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else np.nan


def mis_table(tree: RunTree) -> pd.DataFrame:
    """MIS acceptance rate and distinct accepted passages: during training (means over steps, then
    mean ± sd over seeds) and in the proposals x k sweep (mean over seeds)."""
    cols = ["dataset", "source", "proposals", "k", "acceptance_rate", "acceptance_rate_sd", "move_rate", "distinct", "distinct_sd",
            "cache_hit_rate", "cache_survived", "n_seeds", "n"]
    rows = []
    for d in tree.cfg.datasets:
        if "jsa" not in tree.cfg.methods:
            continue
        per_seed = {"acceptance_rate": [], "move_rate": [], "distinct": [], "cache_hit_rate": [], "cache_survived": [], "n": []}
        for seed in tree.cfg.seeds:
            logs = tree.train_log(d, "jsa", seed)
            lr = [r for r in logs or [] if r.get("mis/acceptance_rate") is not None]
            if logs is not None and not lr:
                log.info("skip MIS training stats %s seed%s: no mis/acceptance_rate in the log", d, seed)
            if lr:
                for key in ("acceptance_rate", "move_rate", "distinct", "cache_hit_rate", "cache_survived"):
                    vals = [r[f"mis/{key}"] for r in lr if r.get(f"mis/{key}") is not None]
                    per_seed[key].append(float(np.mean(vals)) if vals else np.nan)
                per_seed["n"].append(len(lr))
        if per_seed["n"]:
            ar, ds, cs = (np.asarray(per_seed[k]) for k in ("acceptance_rate", "distinct", "cache_survived"))
            rows.append({"dataset": d, "source": "training", "proposals": tree.cfg.mis_proposals, "k": tree.cfg.mis_k,
                         "acceptance_rate": ar.mean(), "acceptance_rate_sd": ar.std(ddof=1) if len(ar) > 1 else 0.0,
                         "move_rate": _nanmean(per_seed["move_rate"]),
                         "distinct": ds.mean(), "distinct_sd": ds.std(ddof=1) if len(ds) > 1 else 0.0,
                         "cache_hit_rate": _nanmean(per_seed["cache_hit_rate"]),
                         "cache_survived": np.nanmean(cs) if np.isfinite(cs).any() else np.nan,
                         "n_seeds": len(ar), "n": int(np.sum(per_seed["n"]))})
        sweep: dict[tuple, list[dict]] = {}
        for seed in tree.cfg.seeds:
            for r in tree.mis_sweep(d, seed) or []:
                sweep.setdefault((int(r["proposals"]), int(r["k"])), []).append(r)
        for (prop, k), rs in sorted(sweep.items()):
            ar, ds = np.array([r["acceptance_rate"] for r in rs], float), np.array([r["distinct"] for r in rs], float)
            rows.append({"dataset": d, "source": "sweep", "proposals": prop, "k": k, "acceptance_rate": ar.mean(),
                         "acceptance_rate_sd": ar.std(ddof=1) if len(ar) > 1 else 0.0, "distinct": ds.mean(),
                         "distinct_sd": ds.std(ddof=1) if len(ds) > 1 else 0.0, "cache_survived": np.nan,
                         "move_rate": float(np.mean([r.get("move_rate", np.nan) for r in rs])), "cache_hit_rate": np.nan,
                         "n_seeds": len(rs), "n": int(sum(r["n"] for r in rs))})
    return pd.DataFrame(rows, columns=cols)


def mis_display(t: pd.DataFrame) -> pd.DataFrame:
    if t.empty:
        return pd.DataFrame()
    f = lambda v, sd, n: fmt_cell(v, sd, n_seeds=n, digits=3)  # noqa: E731
    return pd.DataFrame({"dataset": t["dataset"], "source": t["source"],
                         "proposals": t["proposals"].map(lambda x: "" if pd.isna(x) else str(int(x))),
                         "k": t["k"].map(lambda x: "" if pd.isna(x) else str(int(x))),
                         "acceptance rate": [f(r.acceptance_rate, r.acceptance_rate_sd, r.n_seeds) for r in t.itertuples()],
                         "distinct accepted": [f(r.distinct, r.distinct_sd, r.n_seeds) for r in t.itertuples()],
                         "moved (accepted, different state)": t["move_rate"].map(lambda x: "" if pd.isna(x) else f"{x:.3f}"),
                         "cache hit rate": t["cache_hit_rate"].map(lambda x: "" if pd.isna(x) else f"{x:.3f}"),
                         "cache survived": t["cache_survived"].map(lambda x: "" if pd.isna(x) else f"{x:.3f}"),
                         "seeds": t["n_seeds"], "n": t["n"]})


NOTES = {
    "generation": "Points (0-100). Cell: mean [95% bootstrap CI over test examples]; with several seeds mean ± sd over seeds.",
    "retrieval_prior": "Prior retriever, R@k and MRR@10 in points.",
    "retrieval_posterior": "Posterior retriever q(h|x,y) (reads the target), same metrics.",
    "grad_norm": "Gradient norm per component before clipping, over training steps; max/median measures spikes.",
    "mis": "MIS in JSA-RAG: training = means over steps of the training log; sweep = mis_sweep.jsonl. Acceptance counts a "
           "proposal equal to the state as accepted; moved counts only a different state; cache hit rate = chains started from "
           "a cached state.",
    "significance": "delta = metric(a) - metric(b) on shared examples; paired bootstrap CI and p; sign-flip permutation p.",
}


def build_tables(tree: RunTree, out: Layout, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Every table of layout.TABLES, written under `out`'s results/tables."""
    from jsarag.report import cost

    tables = {
        "generation": generation_table(tree, seed),
        "retrieval_prior": retrieval_table(tree, seed, posterior=False),
        "retrieval_posterior": retrieval_table(tree, seed, posterior=True),
        "cost": cost.cost_table(tree),
        "grad_norm": grad_norm_table(tree),
        "mis": mis_table(tree),
        "significance": significance_table(tree, seed),
    }
    assert tuple(tables) == TABLES, "layout.TABLES lists the tables built here"
    for name, t in tables.items():
        if name == "significance":
            disp = significance_display(t)
        elif name == "mis":
            disp = mis_display(t)
        else:
            disp = wide(t, ["dataset", "method"])
        note = (cost.NOTE if name == "cost" else NOTES[name]) + (f" Definitions: {definitions_note(list(dict.fromkeys(t['metric'])))}"
                              if name in DEFINED and not t.empty else "")
        write_table(out, name, t, disp, note)
    return tables
