"""Reading the run tree for the report: where each file lives, the per-example scores of one run,
and their alignment over seeds and between methods. Nothing here invents a number: a missing file
yields None and a logged note; a malformed one raises InputError with file:line."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jsarag import InputError
from jsarag.config import ReportConfig
from jsarag.evaluate import metrics as M
from jsarag.io import read_json, read_jsonl
from jsarag.layout import Layout

log = logging.getLogger("jsarag.report")

# table label -> metric key, in display order
GEN_METRICS = {"qa": ["em", "f1"], "dialog": ["bleu1", "bleu4", "rouge_l", "f1"]}
CORPUS_METRICS = ("bleu1", "bleu4")


def present(path: Path, what: str) -> bool:
    if path.exists():
        return True
    log.info("skip %s: %s not found", what, path)
    return False


@dataclass
class RunScores:
    """Per-example scores (points) of one run or baseline, in file order."""
    ids: list[str]
    scores: dict[str, np.ndarray] = field(default_factory=dict)   # metric -> [n]
    stats: dict[str, np.ndarray] = field(default_factory=dict)    # corpus metric -> [n, d]
    source: str = ""

    def defined(self, metric: str) -> np.ndarray:
        """Which examples have `metric` (generation metrics: the generated ones; see score_file)."""
        v = self.stats.get(metric, self.scores.get(metric))
        if v is None:
            return np.ones(len(self.ids), bool)
        return np.isfinite(v).reshape(len(self.ids), -1).all(1)

    def restrict(self, metric: str) -> RunScores:
        ok = self.defined(metric)
        return self if ok.all() else self.subset([i for i, keep in zip(self.ids, ok) if keep])

    def subset(self, ids: list[str]) -> RunScores:
        pos = {i: n for n, i in enumerate(self.ids)}
        idx = np.array([pos[i] for i in ids], dtype=np.int64)
        return RunScores(list(ids), {k: v[idx] for k, v in self.scores.items()},
                         {k: v[idx] for k, v in self.stats.items()}, self.source)


def _scatter(values: np.ndarray, at: list[int], n: int) -> np.ndarray:
    """Per-row values at the rows `at`, NaN at the others (an example that was not generated)."""
    out = np.full((n, *values.shape[1:]), np.nan)
    out[at] = values
    return out


def _hits(rows: list[dict], key: str, path: Path) -> list[list[bool]] | None:
    have = [key in r for r in rows]
    if not any(have):
        return None
    if not all(have):
        raise InputError(f"{path}:{have.index(False) + 1}: missing field {key!r} (other lines have it)")
    return [[bool(h) for h in r[key]] for r in rows]


def score_file(path: Path, task: str | None, ks: list[int], authors: bool = False) -> RunScores:
    """Score a predictions (task given) or baseline (task None) file; with `authors`, the authors'
    BLEU/ROUGE-L too. Hits under DPR's rule ("hits_dpr") give the `_dpr` keys where the rows have them."""
    rows = list(read_jsonl(path, required=("id",), unique="id"))
    if not rows:
        raise InputError(f"{path}: no examples")
    out = RunScores([str(r["id"]) for r in rows], source=str(path))
    if task is not None:  # rows past evaluate.generate_n ("prediction": null) get NaN generation scores
        gen = [i for i, r in enumerate(rows) if M.is_generated(r)]
        try:
            sc = M.generation_scores([rows[i] for i in gen], task, authors)
            stats = M.generation_stats([rows[i] for i in gen], task)
        except InputError as e:
            raise InputError(f"{path}: {e}") from None
        out.scores.update({k: _scatter(v, gen, len(rows)) for k, v in sc.items() if not k.endswith("_sent")})
        out.stats.update({k: _scatter(v, gen, len(rows)) for k, v in stats.items()})
    for key, prefix, suffix in M.HIT_FIELDS:
        hits = _hits(rows, key, path)
        if hits is not None:
            out.scores.update(M.retrieval_scores(hits, ks, 10, prefix, suffix))
    return out


def metric_value(rs: RunScores, metric: str) -> float:
    rs = rs.restrict(metric)
    if metric in rs.stats:
        return M.corpus_metric(metric, rs.stats[metric])
    return float(rs.scores[metric].mean())


def has_metric(rs: RunScores, metric: str) -> bool:
    return metric in rs.scores or metric in rs.stats


@dataclass
class MethodScores:
    """One method on one dataset, over the seeds found, aligned on the ids common to all seeds."""
    seeds: list[int]
    runs: list[RunScores]

    @property
    def ids(self) -> list[str]:
        return self.runs[0].ids

    def seed_values(self, metric: str) -> list[float]:
        return [metric_value(r, metric) for r in self.runs]

    def pooled(self, metric: str) -> np.ndarray:
        """What the bootstrap resamples: per-example scores averaged over seeds, or, for a corpus
        metric, per-example counts summed over seeds (the corpus of all seeds' outputs)."""
        if metric in self.runs[0].stats:
            return np.sum(np.stack([r.stats[metric] for r in self.runs]), axis=0)
        return np.mean(np.stack([r.scores[metric] for r in self.runs]), axis=0)

    def subset(self, ids: list[str]) -> MethodScores:
        return MethodScores(self.seeds, [r.subset(ids) for r in self.runs])

    def restrict(self, metric: str) -> MethodScores:
        """The examples on which every seed has `metric` (all of them for retrieval)."""
        ok = np.logical_and.reduce([r.defined(metric) for r in self.runs])
        return self if ok.all() else self.subset([i for i, keep in zip(self.ids, ok) if keep])

    def has(self, metric: str) -> bool:
        return all(has_metric(r, metric) for r in self.runs)


def align(per_seed: dict[int, RunScores], what: str) -> MethodScores | None:
    if not per_seed:
        return None
    seeds = sorted(per_seed)
    common = set.intersection(*(set(per_seed[s].ids) for s in seeds))
    ids = [i for i in per_seed[seeds[0]].ids if i in common]
    dropped = max(len(r.ids) for r in per_seed.values()) - len(ids)
    if dropped:
        log.warning("%s: %d example(s) not shared by all seeds are left out", what, dropped)
    if not ids:
        log.warning("%s: no example shared by all seeds; skipped", what)
        return None
    return MethodScores(seeds, [per_seed[s].subset(ids) for s in seeds])


def check_against_metrics_json(rs: RunScores, path: Path) -> None:
    """Warn (do not fail) when eval/metrics.json disagrees with the predictions it came from."""
    if not path.exists():
        return
    stored = read_json(path)
    for key, val in stored.items():
        if isinstance(val, (int, float)) and has_metric(rs, key):
            mine = metric_value(rs, key)
            if not np.isclose(mine, val, rtol=1e-6, atol=1e-6):
                log.warning("%s: %s = %s but recomputed from predictions = %s (stale file?)", path, key, val, mine)


class RunTree:
    """Lazy, cached access to everything under runs/ for the configured datasets/methods/seeds;
    `root` is the project folder the layout is rooted at."""

    def __init__(self, root: str | Path, cfg: ReportConfig):
        self.layout, self.cfg = Layout(str(root)), cfg
        self._methods: dict = {}
        self._baselines: dict = {}
        self.authors = cfg.evaluate.metrics == "authors"

    def method(self, d: str, m: str) -> MethodScores | None:
        if (d, m) not in self._methods:
            per_seed = {}
            for s in self.cfg.seeds:
                p = Path(self.layout.run(d, m, s).predictions)
                if present(p, f"{d}/{m}/seed{s} predictions"):
                    per_seed[s] = score_file(p, self.cfg.datasets[d], self.cfg.ks, self.authors)
                    check_against_metrics_json(per_seed[s], Path(self.layout.run(d, m, s).eval_metrics))
            self._methods[(d, m)] = align(per_seed, f"{d}/{m}")
        return self._methods[(d, m)]

    def baseline(self, d: str, name: str) -> MethodScores | None:
        if (d, name) not in self._baselines:
            p = Path(self.layout.baseline(d, name))
            self._baselines[(d, name)] = (MethodScores([0], [score_file(p, None, self.cfg.ks)])
                                          if present(p, f"{d} {name} baseline") else None)
        return self._baselines[(d, name)]

    def zero_shot(self, d: str, name: str) -> MethodScores | None:
        """A zero-shot baseline's scores (jsarag.evaluate.zero_shot); the posterior's file has no predictions."""
        key = ("zero-shot", d, name)
        if key not in self._baselines:
            p = Path(self.layout.zero_shot(d, name))
            task = None if name == "posterior" else self.cfg.datasets[d]
            self._baselines[key] = (MethodScores([0], [score_file(p, task, self.cfg.ks, self.authors)])
                                    if present(p, f"{d} zero-shot {name}") else None)
        return self._baselines[key]

    def train_log(self, d: str, m: str, s: int) -> list[dict] | None:
        p = Path(self.layout.run(d, m, s).train_log)
        return list(read_jsonl(p, required=("step",))) if present(p, f"{d}/{m}/seed{s} training log") else None

    def summary(self, d: str, m: str, s: int) -> dict | None:
        p = Path(self.layout.run(d, m, s).summary)
        if not present(p, f"{d}/{m}/seed{s} train summary"):
            return None
        try:
            return read_json(p)
        except json.JSONDecodeError as e:
            raise InputError(f"{p}:{e.lineno}: malformed JSON ({e.msg})") from None

    def mis_sweep(self, d: str, s: int) -> list[dict] | None:
        p = Path(self.layout.run(d, "jsa", s).mis_sweep)
        req = ("proposals", "k", "acceptance_rate", "distinct", "n")
        return list(read_jsonl(p, required=req)) if present(p, f"{d}/jsa/seed{s} MIS sweep") else None

    def estimators(self) -> list[dict] | None:
        p = Path(self.layout.estimators())
        req = ("estimator", "component", "cosine", "rel_bias", "variance", "n_draws")
        return list(read_jsonl(p, required=req)) if present(p, "estimator verification") else None
