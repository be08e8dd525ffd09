"""The report's figures (matplotlib, Agg). Each figure is always written; a panel without data says so
in the image (and in the log) instead of being drawn from made-up values."""
from __future__ import annotations

import logging
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jsarag.io import atomic_path  # noqa: E402
from jsarag.layout import BASELINES, FIGURES, Layout  # noqa: E402
from jsarag.report import stats as S  # noqa: E402
from jsarag.report.runs import RunTree  # noqa: E402

log = logging.getLogger("jsarag.report")

COLORS = {"rag": "tab:blue", "vrag": "tab:orange", "jsa": "tab:green", "bm25": "tab:gray", "dense": "tab:purple"}


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    return np.convolve(y, np.ones(window) / window, mode="valid")


def _panels(n: int, width: float = 4.5, height: float = 3.2):
    fig, axes = plt.subplots(1, max(1, n), figsize=(width * max(1, n), height), squeeze=False)
    return fig, list(axes[0])


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no data:\n{what}", ha="center", va="center", transform=ax.transAxes, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    log.info("figure panel without data: %s", what)


def _save(fig, out: Layout, name: str) -> None:
    fig.tight_layout()
    with atomic_path(out.figure(name)) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def _series(tree: RunTree, d: str, m: str, key: str):
    """(seed, steps, values) for each seed whose training log has `key`."""
    for seed in tree.cfg.seeds:
        rows = [r for r in tree.train_log(d, m, seed) or [] if r.get(key) is not None]
        if rows:
            yield seed, np.array([r["step"] for r in rows]), np.array([r[key] for r in rows], dtype=np.float64)


def _line_figure(tree: RunTree, out: Layout, name: str, key: str, methods, ylabel: str, window: int = 1,
                 logy: bool = False) -> None:
    datasets = list(tree.cfg.datasets)
    fig, axes = _panels(len(datasets))
    for ax, d in zip(axes, datasets):
        drawn = False
        for m in methods:
            for seed, x, y in _series(tree, d, m, key):
                ys = smooth(y, window)
                ax.plot(x[len(x) - len(ys):], ys, color=COLORS.get(m), lw=1, alpha=0.9 if seed == tree.cfg.seeds[0] else 0.5,
                        label=m if seed == tree.cfg.seeds[0] else None)
                drawn = True
        if not drawn:
            _empty(ax, f"{d}: {key} of {'/'.join(methods)}")
            continue
        ax.set(title=d, xlabel="optimizer step", ylabel=ylabel + (f" (moving avg {window})" if window > 1 else ""))
        if logy:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    _save(fig, out, name)


def grad_norm_posterior(tree: RunTree, out: Layout) -> None:
    methods = [m for m in ("vrag", "jsa") if m in tree.cfg.methods]
    _line_figure(tree, out, "grad_norm_posterior", "grad_norm/posterior", methods, "posterior grad norm", logy=True)


def loss_curves(tree: RunTree, out: Layout) -> None:
    window = 10
    _line_figure(tree, out, "loss_curves", "loss", tree.cfg.methods, "training loss (method's own objective)", window)


def acceptance_rate(tree: RunTree, out: Layout) -> None:
    datasets = list(tree.cfg.datasets)
    fig, axes = _panels(2 * len(datasets))
    for i, d in enumerate(datasets):
        ax = axes[2 * i]
        drawn = False
        for seed, x, y in _series(tree, d, "jsa", "mis/acceptance_rate"):
            ys = smooth(y, 10)
            ax.plot(x[len(x) - len(ys):], ys, lw=1, label=f"seed {seed}")
            drawn = True
        if drawn:
            ax.set(title=f"{d}: MIS during training", xlabel="optimizer step", ylabel="acceptance rate (moving avg 10)",
                   ylim=(0, 1))
            ax.legend(fontsize=8)
        else:
            _empty(ax, f"{d}: mis/acceptance_rate in the jsa log")
        ax = axes[2 * i + 1]
        pts: dict[int, dict[int, list[float]]] = {}
        for seed in tree.cfg.seeds:
            for r in tree.mis_sweep(d, seed) or []:
                pts.setdefault(int(r["k"]), {}).setdefault(int(r["proposals"]), []).append(float(r["acceptance_rate"]))
        if not pts:
            _empty(ax, f"{d}: mis_sweep.jsonl")
            continue
        for k, by_m in sorted(pts.items()):
            ms = sorted(by_m)
            ax.plot(ms, [np.mean(by_m[m]) for m in ms], marker="o", label=f"k={k}")
        props = sorted({m for by_m in pts.values() for m in by_m})
        ax.set(title=f"{d}: MIS sweep", xlabel="proposals per example", ylabel="acceptance rate", xscale="log", ylim=(0, 1))
        ax.set_xticks(props, [str(m) for m in props])
        ax.minorticks_off()
        ax.legend(fontsize=8)
    _save(fig, out, "acceptance_rate")


def recall_at_k(tree: RunTree, out: Layout, seed: int = 0) -> None:
    datasets = list(tree.cfg.datasets)
    fig, axes = _panels(len(datasets))
    ks = tree.cfg.ks
    for ax, d in zip(axes, datasets):
        drawn = False
        sources = [(m, tree.method(d, m)) for m in tree.cfg.methods] + [(b, tree.baseline(d, b)) for b in BASELINES]
        for name, ms in sources:
            if ms is None or not all(ms.has(f"r@{k}") for k in ks):
                continue
            cis = [S.bootstrap_ci(ms.pooled(f"r@{k}"), tree.cfg.n_boot, seed=seed) for k in ks]
            v = np.array([c.value for c in cis])
            err = np.array([[c.value - c.lo for c in cis], [c.hi - c.value for c in cis]])
            ax.errorbar(ks, v, yerr=err, marker="o", capsize=3, color=COLORS.get(name), label=name,
                        ls="--" if name in BASELINES else "-")
            drawn = True
        if not drawn:
            _empty(ax, f"{d}: hits in predictions / baselines")
            continue
        ax.set(title=d, xlabel="k", ylabel="prior R@k (points, 95% CI)", xscale="log", xticks=ks, xticklabels=[str(k) for k in ks])
        ax.legend(fontsize=8)
    _save(fig, out, "recall_at_k")


def estimators(tree: RunTree, out: Layout) -> None:
    rows = tree.estimators()
    fig, axes = _panels(3)
    if not rows:
        for ax in axes:
            _empty(ax, os.path.relpath(tree.layout.estimators(), tree.layout.root or "."))
        _save(fig, out, "estimators")
        return
    comps = list(dict.fromkeys(r["component"] for r in rows))
    ests = list(dict.fromkeys(r["estimator"] for r in rows))
    width = 0.8 / max(1, len(comps))
    errs = {"rel_bias": "rel_bias_se", "variance": "variance_se"}  # 95% error bars = 1.96 Monte Carlo standard errors
    for ax, key, title in zip(axes, ("cosine", "rel_bias", "variance"),
                              ("cosine to exact gradient", "relative bias (bar: 95% MC error; -: unbiased at this n)", "variance")):
        for j, c in enumerate(comps):
            here = {r["estimator"]: r for r in rows if r["component"] == c}
            xs = [i + j * width for i, e in enumerate(ests) if e in here]
            vals = [float(here[e][key]) for e in ests if e in here]
            err = [1.96 * float(here[e].get(errs.get(key, ""), 0.0) or 0.0) for e in ests if e in here]
            ax.bar(xs, vals, width, label=c, yerr=err if any(err) else None, capsize=2)
            if key == "rel_bias":  # what noise alone gives an unbiased estimator at this number of draws
                noise = [float(here[e].get("rel_bias_noise", float("nan"))) for e in ests if e in here]
                ax.scatter(xs, noise, marker="_", color="black", s=60, zorder=3)
        ax.set_xticks([i + width * (len(comps) - 1) / 2 for i in range(len(ests))], ests, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        if key == "variance":  # deterministic estimators have variance 0: symlog keeps them visible
            ax.set_yscale("symlog", linthresh=1e-2)
        ax.legend(fontsize=8)
    _save(fig, out, "estimators")


def _valid_recall_key(tree: RunTree) -> str | None:
    """The largest valid/r@K the training logs carry."""
    ks = set()
    for d in tree.cfg.datasets:
        for m in tree.cfg.methods:
            for s in tree.cfg.seeds:
                for r in tree.train_log(d, m, s) or []:
                    ks |= {int(key[len("valid/r@"):]) for key in r if key.startswith("valid/r@")}
    return f"valid/r@{max(ks)}" if ks else None


def validation_curves(tree: RunTree, out: Layout) -> None:
    """Per dataset: the prior's validation R@K and the generator's validation loss against the step
    (step 0 is the untrained starting point); written by train.valid_every > 0."""
    datasets = list(tree.cfg.datasets)
    fig, axes = _panels(2 * len(datasets))
    rkey = _valid_recall_key(tree)
    for i, d in enumerate(datasets):
        for ax, key, ylabel in ((axes[2 * i], rkey, f"prior {(rkey or 'valid/R@k')[6:].replace('r@', 'R@')} (points)"),
                                (axes[2 * i + 1], "valid/loss", "generator loss per token (top-1)")):
            drawn = False
            for m in tree.cfg.methods:
                for seed, x, y in _series(tree, d, m, key) if key else ():
                    ax.plot(x, y, marker="o", ms=3, color=COLORS.get(m), alpha=0.9 if seed == tree.cfg.seeds[0] else 0.5,
                            label=m if seed == tree.cfg.seeds[0] else None)
                    drawn = True
            if not drawn:
                _empty(ax, f"{d}: {key or 'valid/r@K'} in the training logs (train.valid_every)")
                continue
            ax.set(title=f"{d}: validation", xlabel="optimizer step", ylabel=ylabel)
            ax.legend(fontsize=8)
    _save(fig, out, "validation_curves")


def build_figures(tree: RunTree, out: Layout, seed: int = 0) -> None:
    """Every figure of layout.FIGURES, written under `out`'s results/figures."""
    builders = {"grad_norm_posterior": grad_norm_posterior, "loss_curves": loss_curves, "acceptance_rate": acceptance_rate,
                "recall_at_k": lambda t, o: recall_at_k(t, o, seed), "estimators": estimators,
                "validation_curves": validation_curves}
    assert tuple(builders) == FIGURES, "layout.FIGURES lists the figures built here"
    for build in builders.values():
        build(tree, out)
