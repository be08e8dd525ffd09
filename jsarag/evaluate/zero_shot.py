"""Zero-shot baselines: the starting point every trained run is read against
(`python -m jsarag.evaluate zero-shot`, rule zero_shot).

- generation: the untrained generator reading the top-1 passage of the untrained dense retriever
  and of BM25 (the retrieval baselines' files, so the rankings are exactly the ones in the tables);
- retrieval: the untrained posterior retriever (a copy of the prior's query encoder, as VRAG and
  JSA-RAG start from) reading x [SEP] y.

Each file has one prediction row per test example, in the same form as a run's predictions.jsonl,
so the report pairs them with the trained rows by example id.
"""
from __future__ import annotations

from jsarag import InputError
from jsarag.config import RunParams
from jsarag.data.examples import context_text, load_examples, posterior_text
from jsarag.evaluate.metrics import dpr_hits, generation_metrics, passage_hits, prediction_row, retrieval_metrics
from jsarag.evaluate.predict import generate_count, retrieve
from jsarag.fingerprint import check_split
from jsarag.io import read_jsonl, write_json, write_jsonl
from jsarag.layout import BASELINES, ZERO_SHOT
from jsarag.model.factory import build_model


def _baseline_rows(path: str, examples: list[dict]) -> list[dict]:
    """The baseline's row (retrieved ids and hits) of each example, in the examples' order."""
    rows = {r["id"]: r for r in read_jsonl(path, required=("id", "retrieved", "hits"))}
    missing = [e["id"] for e in examples if e["id"] not in rows]
    if missing:
        raise InputError(f"{path}: no ranking for example {missing[0]!r} ({len(missing)} missing)")
    return [rows[e["id"]] for e in examples]


def _passages_by_id(passages: str, ids: set[str]) -> dict[str, dict]:
    found = {r["id"]: r for r in read_jsonl(passages, required=("id", "contents")) if r["id"] in ids}
    if len(found) < len(ids):
        raise InputError(f"{passages}: no passage {sorted(ids - set(found))[0]!r} (named by a retrieval baseline)")
    return found


def zero_shot(p: RunParams, test: str, passages: str, index: str, retriever: str, generator: str,
              baselines: dict[str, str], out: dict[str, str]) -> dict:
    """Write out[name] (predictions) for each name in ZERO_SHOT and out["metrics"]; returns the metrics."""
    import torch

    ev = p.evaluate
    torch.set_num_threads(p.train.threads)
    model = build_model(p.train, p.retriever, p.generator, retriever, generator, index, passages, posterior=True, training=False)
    model.eval()  # LoRA starts at zero: this is the untrained generator
    check_split(test, passages)
    examples = load_examples(test)
    by_id, g = {}, generate_count(ev, len(examples))  # generation on the first g, retrieval on all
    for name in BASELINES:
        preds = [prediction_row(e, r["retrieved"], r["hits"], r.get("hits_dpr"))
                 for e, r in zip(examples, _baseline_rows(baselines[name], examples))]
        top1 = _passages_by_id(passages, {r["retrieved"][0] for r in preds})
        psg = [top1[r["retrieved"][0]] for r in preds]
        answers = model.generator.generate([context_text(e) for e in examples[:g]], psg[:g],
                                           max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size)
        for pr, a in zip(preds, answers + [None] * (len(preds) - g)):
            pr["prediction"] = a
        by_id[name] = preds
    rows, _ = retrieve(model, model.posterior, [posterior_text(e) for e in examples], max(ev.k_values))
    post = []
    for e, rr in zip(examples, rows):
        ps = model.store.get(rr)
        row = prediction_row(e, [q["id"] for q in ps], passage_hits(e, ps), dpr_hits(e, ps))
        row["posterior_retrieved"], row["posterior_hits"] = row.pop("retrieved"), row.pop("hits")
        row["posterior_hits_dpr"] = row.pop("hits_dpr")
        post.append(row)
    by_id["posterior"] = post
    metrics = {name: {**generation_metrics(by_id[name], p.task), **retrieval_metrics([r["hits"] for r in by_id[name]], ev.k_values)}
               for name in BASELINES}
    metrics["posterior"] = retrieval_metrics([r["posterior_hits"] for r in post], ev.k_values)
    metrics["n"], metrics["n_generated"] = len(examples), g
    for name in ZERO_SHOT:
        write_jsonl(out[name], by_id[name])
    write_json(out["metrics"], metrics)
    return metrics
