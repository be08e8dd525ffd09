"""Uncertainty and significance: percentile bootstrap CIs, paired bootstrap and sign-flip permutation
tests between two methods on the same examples, mean +- sd over seeds. All seeded (numpy Generator).

Two kinds of metric are handled alike:
- mean metrics (EM, F1, ROUGE-L, R@k): per-example scores, the statistic is their mean;
- corpus metrics (BLEU): per-example sufficient statistics [n, d], the statistic is `fn(stats.sum(0))`.
A resample draws example indices; a paired resample draws the same indices for both methods.
Quantiles of the normal and Student t distributions come from scipy.stats, exact for any df.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from jsarag import InputError


class CI(NamedTuple):
    value: float
    lo: float
    hi: float


def _check(x, name: str = "scores") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] == 0:
        raise InputError(f"{name}: no examples")
    return x


def _boot_idx(rng: np.random.Generator, n: int, n_boot: int, chunk: int = 256):
    for start in range(0, n_boot, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_boot - start), n))


def _corpus_values(stats: np.ndarray, fn: Callable[[np.ndarray], float], idx: np.ndarray) -> np.ndarray:
    return np.array([fn(stats[i].sum(0)) for i in idx])


def bootstrap_ci(scores, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> CI:
    """Mean of per-example scores with its percentile bootstrap (1 - alpha) CI."""
    x = _check(scores)
    rng = np.random.default_rng(seed)
    means = np.concatenate([x[i].mean(1) for i in _boot_idx(rng, len(x), n_boot)])
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return CI(float(x.mean()), float(lo), float(hi))


def bootstrap_corpus_ci(stats, fn: Callable[[np.ndarray], float], n_boot: int = 1000, alpha: float = 0.05,
                        seed: int = 0) -> CI:
    """Corpus-level metric fn(sum of per-example stats) with its percentile bootstrap CI,
    recomputing the metric on each resample of examples."""
    s = _check(stats, "stats")
    rng = np.random.default_rng(seed)
    vals = np.concatenate([_corpus_values(s, fn, i) for i in _boot_idx(rng, len(s), n_boot)])
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return CI(float(fn(s.sum(0))), float(lo), float(hi))


def _paired(a, b, name="a/b") -> tuple[np.ndarray, np.ndarray]:
    a, b = _check(a, name), _check(b, name)
    if a.shape != b.shape:
        raise InputError(f"paired test needs aligned examples, got shapes {a.shape} and {b.shape}")
    return a, b


class PairedResult(NamedTuple):
    delta: float  # metric(a) - metric(b)
    lo: float     # bootstrap CI of the delta
    hi: float
    p: float      # two-sided p-value


def paired_bootstrap(a, b, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                     fn: Callable[[np.ndarray], float] | None = None) -> PairedResult:
    """Paired bootstrap on the difference metric(a) - metric(b). With fn=None, a and b are per-example
    scores and the metric is their mean; otherwise they are per-example stats and metric = fn(sum).
    p-value: the share of resampled deltas, centred on the observed delta (the null shift of
    Berg-Kirkpatrick et al. 2012), at least as far from 0 as the observed one (two-sided), with the
    add-one correction (1 + count) / (1 + n_boot) so that p is never 0; identical inputs give p = 1."""
    a, b = _paired(a, b)
    rng = np.random.default_rng(seed)
    if fn is None:
        d = a - b
        delta = float(d.mean())
        deltas = np.concatenate([d[i].mean(1) for i in _boot_idx(rng, len(d), n_boot)])
    else:
        delta = float(fn(a.sum(0)) - fn(b.sum(0)))
        deltas = np.concatenate([_corpus_values(a, fn, i) - _corpus_values(b, fn, i)
                                 for i in _boot_idx(rng, len(a), n_boot)])
    lo, hi = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    p = (1 + int(np.sum(np.abs(deltas - delta) >= abs(delta) - 1e-12))) / (1 + len(deltas))
    return PairedResult(delta, float(lo), float(hi), p)


def permutation_test(a, b, n_perm: int = 1000, seed: int = 0,
                     fn: Callable[[np.ndarray], float] | None = None) -> float:
    """Two-sided paired permutation test: each example's pair of outputs is swapped between the two
    methods with probability 1/2 (a sign flip of the per-example difference for mean metrics).
    p = (1 + #{|delta*| >= |delta|}) / (1 + n_perm); identical inputs give p = 1."""
    a, b = _paired(a, b)
    rng = np.random.default_rng(seed)
    n = len(a)
    if fn is None:
        d = a - b
        obs = abs(d.mean())
        count = 0
        for start in range(0, n_perm, 256):
            signs = rng.choice([-1.0, 1.0], size=(min(256, n_perm - start), n))
            count += int(np.sum(np.abs((signs * d).mean(1)) >= obs - 1e-12))
    else:
        obs = abs(fn(a.sum(0)) - fn(b.sum(0)))
        count = 0
        for _ in range(n_perm):
            swap = rng.random(n) < 0.5
            sa = np.where(swap[:, None], b, a).sum(0)
            sb = np.where(swap[:, None], a, b).sum(0)
            count += int(abs(fn(sa) - fn(sb)) >= obs - 1e-12)
    return (1 + count) / (1 + n_perm)


def t_quantile(q: float, df: int) -> float:
    """The q quantile of Student's t with df degrees of freedom (scipy.stats.t)."""
    from scipy.stats import t

    if df < 1:
        raise InputError(f"t quantile: needs df >= 1, got {df}")
    return float(t.ppf(q, df))


def z_quantile(q: float) -> float:
    """The q quantile of the standard normal (scipy.stats.norm)."""
    from scipy.stats import norm

    return float(norm.ppf(q))


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) over seeds."""
    v = _check(values, "values")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
