"""`python -m jsarag.evaluate {run,mis-sweep}`: evaluate one trained model (the workflow's evaluate rule).

run: retrieval with the trained prior (and posterior) retriever, R@k and MRR@10 by gold passages
or answer containment; greedy generation on the top-1 passage, and optionally the authors'
decoding: greedy per top-k passage, then the answer with the largest retriever-weighted score
sum_{j: a_j = a} p~(h_j|x) p(a|x,h_j). Writes predictions.jsonl and metrics.json.
mis-sweep: MIS acceptance rate and distinct states against the number of proposals and k.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from jsarag.examples import context_text, load_examples, posterior_text
from jsarag.io import write_json, write_jsonl
from jsarag.metrics import generation_metrics, retrieval_metrics
from jsarag.mis import log_importance_weights, mis
from jsarag.objectives import masked_log_softmax, topk_mask
from jsarag.rag_model import RAGModel
from jsarag.text import has_answer, normalize
from jsarag.train import build_model, load_trained, method_config


@torch.inference_mode()
def retrieve(model: RAGModel, encoder, texts: list[str], k: int, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows and their scores (inner products) for each text."""
    q = torch.from_numpy(encoder.encode(texts, batch_size=batch_size))
    scores, rows = model.index.index.search(np.ascontiguousarray(q.numpy()), k)
    return rows, scores


def hits_for(ex: dict, passages: list[dict]) -> list[bool]:
    """Gold passages where the example has them, answer containment otherwise."""
    if ex.get("gold_passages"):
        gold = set(ex["gold_passages"])
        return [p["id"] in gold for p in passages]
    answers = ex.get("answers") or [ex["target"]]
    return [has_answer(p["contents"], answers) for p in passages]


def topk_decode(model: RAGModel, examples, rows, scores, k: int, tau: float, max_new_tokens: int, batch_size: int) -> list[str]:
    gen = model.generator
    ctx = [context_text(e) for e in examples for _ in range(k)]
    psg = [model.store[int(r)] for rr in rows for r in rr[:k]]
    answers = gen.generate(ctx, psg, max_new_tokens=max_new_tokens, batch_size=batch_size)
    with torch.inference_mode():
        ll = torch.cat([gen.loglik(ctx[s:s + batch_size], psg[s:s + batch_size], [a or " " for a in answers[s:s + batch_size]]).seq
                        for s in range(0, len(ctx), batch_size)]).view(len(examples), k).float().cpu()
    prior = torch.log_softmax(torch.from_numpy(scores[:, :k]).float() / tau, -1)
    out = []
    for b in range(len(examples)):
        best: dict[str, float] = {}
        cand = answers[b * k:(b + 1) * k]
        for j, a in enumerate(cand):
            key = normalize(a)
            best[key] = float(np.logaddexp(best.get(key, -np.inf), float(prior[b, j] + ll[b, j])))
        top = max(best, key=best.get)
        out.append(next(a for a in cand if normalize(a) == top))
    return out


def run(args, p: dict) -> None:
    ev, cfg = p["evaluate"], method_config(p["method"], p["train"])
    torch.set_num_threads(cfg.threads)
    model = build_model(p["method"], cfg, p.get("retriever", {}), p.get("generator", {}), args.retriever, args.generator,
                        args.index, args.passages)
    load_trained(model, args.model)
    model.eval()
    examples = load_examples(args.test)
    kmax = max(ev["k_values"])
    rows, scores = retrieve(model, model.prior, [context_text(e) for e in examples], kmax)
    preds = []
    for b, ex in enumerate(examples):
        passages = model.store.get(rows[b])
        preds.append({**{k: ex[k] for k in ("id", "history", "question", "answers", "target") if k in ex},
                      "retrieved": [q["id"] for q in passages], "hits": hits_for(ex, passages)})
    if model.posterior is not None:
        prow, _ = retrieve(model, model.posterior, [posterior_text(e) for e in examples], kmax)
        for b, ex in enumerate(examples):
            passages = model.store.get(prow[b])
            preds[b]["posterior_retrieved"] = [q["id"] for q in passages]
            preds[b]["posterior_hits"] = hits_for(ex, passages)
    top1 = model.generator.generate([context_text(e) for e in examples], [model.store[int(r[0])] for r in rows],
                                    max_new_tokens=ev["max_new_tokens"], batch_size=ev["batch_size"])
    for pr, a in zip(preds, top1):
        pr["prediction"] = a
    if "topk" in ev["decoding"]:
        topk = topk_decode(model, examples, rows, scores, ev["topk_decode"], cfg.tau, ev["max_new_tokens"], ev["batch_size"])
        for pr, a in zip(preds, topk):
            pr["prediction_topk"] = a
    task = p["task"]
    metrics = {**generation_metrics(preds, task), **retrieval_metrics([r["hits"] for r in preds], ev["k_values"])}
    if "topk" in ev["decoding"]:
        metrics.update({f"topk/{k}": v for k, v in generation_metrics([{**r, "prediction": r["prediction_topk"]} for r in preds], task).items()})
    if model.posterior is not None:
        metrics.update(retrieval_metrics([r["posterior_hits"] for r in preds], ev["k_values"], prefix="posterior/"))
    metrics["n"] = len(preds)
    out = Path(args.out)
    write_jsonl(out / "predictions.jsonl", preds)
    write_json(out / "metrics.json", metrics)


@torch.inference_mode()
def mis_sweep(args, p: dict) -> None:
    """E-step statistics of the trained JSA model on validation examples, for each (m, k). The
    generator scores the candidates of the largest k once; smaller k use subsets of them."""
    ev, cfg = p["evaluate"], method_config(p["method"], p["train"])
    sw = ev["mis_sweep"]
    torch.set_num_threads(cfg.threads)
    model = build_model(p["method"], cfg, p.get("retriever", {}), p.get("generator", {}), args.retriever, args.generator,
                        args.index, args.passages)
    load_trained(model, args.model)
    model.eval()
    examples = load_examples(args.test)[: sw["n_examples"]]
    sampler = torch.Generator().manual_seed(cfg.seed)
    rows_out = []
    stats = {(m, k): [] for m in sw["proposals"] for k in sw["k"]}
    for s in range(0, len(examples), 4):
        batch = examples[s:s + 4]
        sc = model.score(batch, k=max(sw["k"]), use_posterior=True)
        for k in sw["k"]:
            mask = topk_mask(sc.prior_logits, sc.mask, k) | topk_mask(sc.post_logits, sc.mask, k)
            logp, logq = masked_log_softmax(sc.prior_logits, mask), masked_log_softmax(sc.post_logits, mask)
            lengths = sc.target_lengths if cfg.token_average else None
            log_w = log_importance_weights(logp, sc.loglik, logq, lengths).masked_fill(~mask, float("-inf"))
            for m in sw["proposals"]:
                res = mis(log_w, logq, m, None, sampler)
                st = res.stats(torch.full((len(batch),), -1))
                stats[(m, k)].append((len(batch), st["mis/acceptance_rate"], st["mis/distinct"]))
    for (m, k), parts in stats.items():
        n = sum(x[0] for x in parts)
        rows_out.append({"proposals": m, "k": k, "n": n,
                         "acceptance_rate": float(sum(x[0] * x[1] for x in parts) / n),
                         "distinct": float(sum(x[0] * x[2] for x in parts) / n)})
    write_jsonl(args.out, rows_out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m jsarag.evaluate", description=__doc__)
    ap.add_argument("cmd", choices=["run", "mis-sweep"])
    ap.add_argument("--params", required=True, help='JSON: {"method", "task", "train", "retriever", "generator", "evaluate"}')
    ap.add_argument("--test", required=True, help="examples JSONL (test split for run, validation split for mis-sweep)")
    ap.add_argument("--passages", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--retriever", required=True)
    ap.add_argument("--generator", required=True)
    ap.add_argument("--model", required=True, help="trained model directory (trainable.pt)")
    ap.add_argument("--out", required=True, help="output directory (run) or JSONL file (mis-sweep)")
    args = ap.parse_args(argv)
    from jsarag.cli import run_cli

    p = json.loads(args.params)
    run_cli(lambda: (run if args.cmd == "run" else mis_sweep)(args, p))


if __name__ == "__main__":
    sys.exit(main())
