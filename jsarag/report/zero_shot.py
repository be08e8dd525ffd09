"""Zero-shot rows of the report: the starting point each trained row is read against.

- generation table: "zero-shot" (the untrained generator on the untrained dense retriever's top-1)
  and "zero-shot bm25" (on BM25's top-1);
- posterior retrieval table: "zero-shot posterior" (the untrained posterior retriever on x [SEP] y);
- significance table: each trained method against "zero-shot" (EM/F1 and the prior's R@k, which
  for "zero-shot" are the untrained dense retriever's) and against "zero-shot posterior".

The files are written by the zero_shot rule (jsarag.evaluate.zero_shot); a missing one is skipped.
"""
from __future__ import annotations

from jsarag.layout import ZERO_SHOT
from jsarag.report.runs import GEN_METRICS

# zero-shot file -> its row label in the tables
LABEL = {"dense": "zero-shot", "bm25": "zero-shot bm25", "posterior": "zero-shot posterior"}
PRIOR_METRICS = ("r@1", "r@20", "mrr@10")
POSTERIOR_METRICS = ("posterior/r@1", "posterior/r@20", "posterior/mrr@10")


def zero_shot_cells(tree, d: str, seed: int, cell_rows, metrics: list[str], generation: bool) -> list[dict]:
    """Table rows (jsarag.report.tables._cell_rows) of the zero-shot baselines of dataset `d`."""
    rows = []
    names = [n for n in ZERO_SHOT if n != "posterior"] if generation else ["posterior"]
    for name in names:
        zs = tree.zero_shot(d, name)
        if zs is not None:
            rows += cell_rows(zs, d, LABEL[name], metrics, tree.cfg.n_boot, seed, strip="" if generation else "posterior/")
    return rows


def zero_shot_pairs(tree, d: str, seed: int, pair_rows) -> list[dict]:
    """Significance rows (jsarag.report.tables.pair_rows) of each trained method against its starting point."""
    rows = []
    task = tree.cfg.datasets[d]
    for m in tree.cfg.methods:
        ms = tree.method(d, m)
        if ms is None:
            continue
        gen = list(dict.fromkeys([tree.cfg.main_metric(d), *GEN_METRICS[task]]))  # the dataset's main metric first
        for name, metrics in (("dense", [*gen, *PRIOR_METRICS]), ("posterior", list(POSTERIOR_METRICS))):
            zs = tree.zero_shot(d, name)
            if zs is not None:
                rows += pair_rows(d, m, ms, LABEL[name], zs, metrics, tree.cfg.n_boot, seed)
    return rows
