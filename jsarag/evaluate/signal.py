"""Signal diagnostic (`python -m jsarag.evaluate signal`, rule signal): before any training, does a
dataset give posterior sampling something to learn from?

On the untrained models (the prior retriever, its copy as the posterior retriever reading x [SEP] y,
and the generator with its LoRA at zero), for each of the first N examples of a split, the candidate
set U is the prior's top-k union the posterior's top-k, exactly as training builds it
(`LatentModel.score`). Every candidate h gets log p(y|x,h) from the generator's batched sequence
log-likelihood (the trainers' own), the prior's p(h|x) (softmax at tau, over U) and the exact
posterior p(h|x,y) ∝ p(h|x) p(y|x,h) (jsarag.train.objectives.posterior). Hits follow the
evaluation's rule (jsarag.evaluate.metrics.passage_hits: gold passage ids where the example has
them, else answer containment; with evaluate.hits: dpr also DPR's rule, under "dpr").

The JSON holds the aggregates, one row per question (candidate ids and raw scores, so every
aggregate can be recomputed from the file), and the fingerprints of every input (jsarag.fingerprint).
docs/signal.md explains how to read each number.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from statistics import median

import torch

from jsarag import InputError
from jsarag.config import EvaluateConfig, RunParams
from jsarag.data.examples import load_examples
from jsarag.evaluate.metrics import passage_hits
from jsarag.fingerprint import check_split, fingerprint
from jsarag.io import write_json
from jsarag.model.factory import build_model
from jsarag.train.objectives import masked_log_softmax, posterior

log = logging.getLogger("jsarag.signal")
DEFAULT_N = 48


def source_record(path: str) -> dict:
    """What an input was, as jsarag.fingerprint records it: name and fingerprint of a file; of a
    folder (an index, an exported model), each of its files; a model named by a non-local source
    (package:..., a hub id) by that name only."""
    p = Path(path)
    if p.is_file():
        return {"name": p.name, **fingerprint(p)}
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))  # not .snakemake_timestamp
        return {"name": p.name, "files": {str(f.relative_to(p)): fingerprint(f) for f in files}}
    return {"name": str(path), "source": str(path)}


def question_stats(prior_logits: torch.Tensor, post_logits: torch.Tensor, loglik: torch.Tensor, hits: list[bool],
                   n_tokens: int) -> dict:
    """The per-question numbers over its candidate set (1-D tensors over the valid candidates)."""
    U = len(hits)
    mask = torch.ones(U, dtype=torch.bool)
    logp = masked_log_softmax(prior_logits[None], mask[None])[0]
    post = posterior(prior_logits[None], loglik[None], mask[None])[0]
    prior = logp.exp()
    hit = torch.tensor(hits, dtype=torch.bool)
    ll = loglik.double()
    out = {"n_candidates": U, "n_hits": int(hit.sum()), "n_tokens": int(n_tokens),
           "range": float(ll.max() - ll.min()), "std": float(ll.std(correction=0)),
           "entropy_posterior": float(-torch.special.xlogy(post, post).sum()),
           "entropy_prior": float(-(prior * logp).sum()),
           "prior_top1_hit": bool(hit[prior_logits.argmax()]),
           "posterior_retriever_top1_hit": bool(hit[post_logits.argmax()]),
           "exact_posterior_top1_hit": bool(hit[post.argmax()]),
           "posterior_mass_on_hits": float(post[hit].sum()), "prior_mass_on_hits": float(prior[hit].sum())}
    out["range_per_token"], out["std_per_token"] = out["range"] / n_tokens, out["std"] / n_tokens
    if hit.any():
        best = ll[hit].max()
        out["gold_rank"] = int((ll > best).sum()) + 1  # the best-ranked hit; ties count in its favour
        out["gold_rank_chance"] = (U + 1) / (out["n_hits"] + 1)  # E[rank of the first hit] in a random order
    return out


def _mean(xs) -> float | None:
    """The mean; None (null in the JSON) over no questions, e.g. the gold rank where no candidate set holds a hit."""
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else None


def _median(xs) -> float | None:
    xs = list(xs)
    return float(median(xs)) if xs else None


def hit_summary(qs: list[dict]) -> dict:
    """The hit-dependent aggregates (the issue's table, the gold rank, R@1) over per-question stats."""
    held = [q for q in qs if q["n_hits"]]
    return {"holds_hit": _mean(bool(q["n_hits"]) for q in qs),
            "prior_top1_hit": _mean(q["prior_top1_hit"] for q in qs),
            "posterior_retriever_top1_hit": _mean(q["posterior_retriever_top1_hit"] for q in qs),
            "exact_posterior_top1_hit": _mean(q["exact_posterior_top1_hit"] for q in qs),
            "posterior_mass_on_hits": _mean(q["posterior_mass_on_hits"] for q in qs),
            "prior_mass_on_hits": _mean(q["prior_mass_on_hits"] for q in qs),
            "gold_rank": {"n": len(held), "median": _median(q["gold_rank"] for q in held),
                          "share_rank1": _mean(q["gold_rank"] == 1 for q in held),
                          "median_chance": _median(q["gold_rank_chance"] for q in held),
                          "share_rank1_chance": _mean(q["n_hits"] / q["n_candidates"] for q in held)}}


def summarize(qs: list[dict]) -> dict:
    """The aggregates of the per-question stats (hit-free ones, then `hit_summary`)."""
    return {"loglik_spread": {key: _median(q[key] for q in qs) for key in ("range", "std", "range_per_token", "std_per_token")},
            "entropy": {"posterior": _mean(q["entropy_posterior"] for q in qs), "prior": _mean(q["entropy_prior"] for q in qs),
                        "log_candidates": _mean(math.log(q["n_candidates"]) for q in qs)},
            "candidates": _mean(q["n_candidates"] for q in qs),
            **hit_summary(qs)}


HIT_FIELDS = ("n_hits", "prior_top1_hit", "posterior_retriever_top1_hit", "exact_posterior_top1_hit", "posterior_mass_on_hits",
              "prior_mass_on_hits", "gold_rank", "gold_rank_chance")


def signal(p: RunParams, examples_path: str, passages: str, index: str, retriever: str, generator: str, out: str,
           n: int = DEFAULT_N, k: int | None = None, progress: bool = True) -> dict:
    """Measure the signal on the first `n` examples of `examples_path` and write it to `out`;
    returns the report. `n` larger than the split is clamped to the split (with a warning, and
    both counts in the report); an empty split, or n < 1, is an InputError."""
    from tqdm.auto import tqdm

    ev = p.evaluate or EvaluateConfig()
    k = p.train.k if k is None else k
    if n < 1 or k < 1:
        raise InputError(f"signal: --n and --k must be at least 1 (got n={n}, k={k})")
    check_split(examples_path, passages)
    examples = load_examples(examples_path)  # an empty split is refused here, naming the file
    if n > len(examples):
        log.warning("signal: --n %d is more than the %d examples of %s; measuring all %d", n, len(examples), examples_path, len(examples))
    split_rows, examples = len(examples), examples[:n]
    torch.set_num_threads(p.train.threads)
    model = build_model(p.train, p.retriever, p.generator, retriever, generator, index, passages, posterior=True, training=False)
    model.eval()  # LoRA starts at zero: the untrained generator; the posterior retriever is the prior's copy
    # one generator forward per batch: up to 2k candidates an example, evaluate.batch_size sequences a forward
    per_batch = max(1, ev.batch_size // (2 * k))
    rules = ("containment", "dpr") if ev.hits == "dpr" else ("containment",)
    rows: list[dict] = []
    for s in tqdm(range(0, len(examples), per_batch), desc="signal", disable=not progress, mininterval=5):
        batch = examples[s:s + per_batch]
        with torch.inference_mode():
            sc = model.score(batch, k, use_posterior=True)
        cand, mask = sc.cand.rows.cpu(), sc.mask.cpu()
        prior_l, post_l, ll = sc.prior_logits.float().cpu(), sc.post_logits.float().cpu(), sc.loglik.float().cpu()
        lengths = sc.target_lengths.cpu()
        del sc  # the batch's generator outputs go before the next forward
        for b, ex in enumerate(batch):
            m = mask[b]
            ps = model.store.get(cand[b][m].tolist())
            row = {"id": ex["id"], "candidates": [q["id"] for q in ps], "loglik": ll[b][m].tolist(),
                   "prior_logits": prior_l[b][m].tolist(), "posterior_logits": post_l[b][m].tolist()}
            for rule in rules:
                hits = passage_hits(ex, ps, rule)
                q = question_stats(prior_l[b][m], post_l[b][m], ll[b][m], hits, int(lengths[b]))
                if rule == "containment":
                    row.update(q, hits=hits)
                else:
                    row["dpr"] = {"hits": hits, **{key: q[key] for key in HIT_FIELDS if key in q}}
            rows.append(row)
    report = {"dataset": p.dataset, "split": Path(examples_path).stem, "method": p.method, "n": len(rows), "n_requested": n,
              "split_rows": split_rows, "k": k, "tau": p.train.tau,
              "hit_rule": "gold passages, else answer containment", "retriever_source": p.retriever.source,
              "generator_source": p.generator.source,
              "sources": {role: source_record(path) for role, path in (("examples", examples_path), ("passages", passages),
                                                                        ("index", index), ("retriever", retriever),
                                                                        ("generator", generator))},
              **summarize(rows)}
    if "dpr" in rules:
        report["dpr"] = hit_summary([{**r["dpr"], "n_candidates": r["n_candidates"]} for r in rows])
    report["questions"] = rows
    write_json(out, report)
    return report


def format_summary(r: dict) -> str:
    """The short readable summary the CLI prints."""
    s, e, g = r["loglik_spread"], r["entropy"], r["gold_rank"]
    rank = (f"  gold rank by likelihood ({g['n']} questions with a hit): median {g['median']:.2f} (chance {g['median_chance']:.2f}), "
            f"rank 1 in {g['share_rank1']:.3f} (chance {g['share_rank1_chance']:.3f})" if g["n"] else
            "  gold rank by likelihood: no candidate set holds a hit")
    return "\n".join([
        f"signal: {r['dataset']} {r['split']}, N={r['n']} questions, k={r['k']} (candidate set {r['candidates']:.1f} passages on average)",
        f"  log p(y|x,h) spread over candidates: median range {s['range']:.3f} nats ({s['range_per_token']:.3f}/token), "
        f"median std {s['std']:.3f} ({s['std_per_token']:.3f}/token)",
        rank,
        f"  entropy: p(h|x,y) {e['posterior']:.3f} nats, p(h|x) {e['prior']:.3f}, uniform {e['log_candidates']:.3f}",
        f"  R@1: untrained posterior retriever {r['posterior_retriever_top1_hit']:.3f}, prior {r['prior_top1_hit']:.3f}",
        f"  candidate set holds a hit {r['holds_hit']:.3f} | prior top-1 hit {r['prior_top1_hit']:.3f} | exact posterior top-1 hit "
        f"{r['exact_posterior_top1_hit']:.3f} | posterior mass on hits {r['posterior_mass_on_hits']:.3f} "
        f"(prior's {r['prior_mass_on_hits']:.3f})"])
