"""Evaluate one trained model (the workflow's evaluate rule, `python -m jsarag.evaluate run`).

Retrieval with the trained prior (and posterior) retriever, R@k and MRR@10 by gold passages
or answer containment; greedy generation on the top-1 passage, and optionally the authors'
decoding: greedy per top-k passage, then the answer with the largest retriever-weighted score
sum_{j: a_j = a} p~(h_j|x) p(a|x,h_j). Writes predictions.jsonl and metrics.json.
"""
from __future__ import annotations

import numpy as np
import torch

from jsarag.config import RunParams
from jsarag.data.examples import context_text, load_examples, posterior_text
from jsarag.evaluate.metrics import dpr_hits, generation_metrics, passage_hits, prediction_row, row_retrieval_metrics
from jsarag.fingerprint import check_split
from jsarag.io import write_json, write_jsonl
from jsarag.layout import RunFiles
from jsarag.model.factory import build_model, load_trained
from jsarag.model.latent import LatentModel
from jsarag.text import normalize
from jsarag.train import TRAINERS


@torch.inference_mode()
def retrieve(model: LatentModel, encoder, texts: list[str], k: int, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows and their scores (inner products) for each text."""
    q = torch.from_numpy(encoder.encode(texts, batch_size=batch_size))
    scores, rows = model.index.search_scores(q, k)
    return rows.numpy(), scores.numpy()


def topk_decode(model: LatentModel, examples, rows, scores, k: int, tau: float, max_new_tokens: int, batch_size: int) -> list[str]:
    gen = model.generator
    ctx = [context_text(e) for e in examples for _ in range(k)]
    psg = [model.store[int(r)] for rr in rows for r in rr[:k]]
    finished: list[bool] = []  # an answer cut off at max_new_tokens gets no credit for an EOS it never produced
    answers = gen.generate(ctx, psg, max_new_tokens=max_new_tokens, batch_size=batch_size, finished=finished)
    with torch.inference_mode():
        ll = torch.cat([gen.loglik(ctx[s:s + batch_size], psg[s:s + batch_size], [a or " " for a in answers[s:s + batch_size]],
                                   finished[s:s + batch_size]).seq
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


def generate_count(ev, n: int) -> int:
    """How many test examples get a generated answer: evaluate.generate_n (the split's first ones;
    it is shuffled with a fixed seed), at most all n."""
    return n if ev.generate_n is None else min(ev.generate_n, n)


def load_for_eval(p: RunParams, passages: str, index: str, retriever: str, generator: str, weights: str) -> LatentModel:
    """The trained model of a run, in eval mode."""
    torch.set_num_threads(p.train.threads)
    model = build_model(p.train, p.retriever, p.generator, retriever, generator, index, passages,
                        TRAINERS[p.method].uses_posterior, training=False)
    load_trained(model, weights)
    model.eval()
    return model


def evaluate(p: RunParams, test: str, passages: str, index: str, retriever: str, generator: str, run_dir: str) -> dict:
    """Predictions and metrics of the run in `run_dir` on the examples of `test`."""
    ev, cfg = p.evaluate, p.train
    files = RunFiles(run_dir)
    check_split(test, passages)
    model = load_for_eval(p, passages, index, retriever, generator, files.weights)
    examples = load_examples(test)
    kmax = max(ev.k_values)
    rows, scores = retrieve(model, model.prior, [context_text(e) for e in examples], kmax)
    preds = []
    for b, ex in enumerate(examples):
        passages = model.store.get(rows[b])
        preds.append(prediction_row(ex, [q["id"] for q in passages], passage_hits(ex, passages), dpr_hits(ex, passages)))
    if model.posterior is not None:
        prow, _ = retrieve(model, model.posterior, [posterior_text(e) for e in examples], kmax)
        for b, ex in enumerate(examples):
            passages = model.store.get(prow[b])
            preds[b]["posterior_retrieved"] = [q["id"] for q in passages]
            preds[b]["posterior_hits"] = passage_hits(ex, passages)
            preds[b]["posterior_hits_dpr"] = dpr_hits(ex, passages)
    g = generate_count(ev, len(examples))  # retrieval above is scored on all; generation on the first g
    top1 = model.generator.generate([context_text(e) for e in examples[:g]], [model.store[int(r[0])] for r in rows[:g]],
                                    max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size)
    for pr, a in zip(preds, top1 + [None] * (len(preds) - g)):
        pr["prediction"] = a
    if "topk" in ev.decoding:
        topk = topk_decode(model, examples[:g], rows[:g], scores[:g], ev.topk_decode, cfg.tau, ev.max_new_tokens, ev.batch_size)
        for pr, a in zip(preds, topk + [None] * (len(preds) - g)):
            pr["prediction_topk"] = a
    task = p.task
    authors = ev.metrics == "authors"
    metrics = {**generation_metrics(preds, task, authors), **row_retrieval_metrics(preds, ev.k_values, ev.hits == "dpr")}
    if "topk" in ev.decoding:
        topk_rows = [{**r, "prediction": r["prediction_topk"]} for r in preds]
        metrics.update({f"topk/{k}": v for k, v in generation_metrics(topk_rows, task, authors).items()})
    metrics["n"], metrics["n_generated"] = len(preds), g
    write_jsonl(files.predictions, preds)
    write_json(files.eval_metrics, metrics)
    return metrics


