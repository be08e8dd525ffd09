"""Evaluation metrics: SQuAD EM/F1, BLEU (sacrebleu), ROUGE-L (rouge-score), token F1, R@k, MRR@k.

Every metric is reported in points (0-100), so that differences read directly as "+x points".
Per-example score arrays are exposed so that `jsarag.stats` can bootstrap them; BLEU, a corpus-level
metric, exposes per-example sufficient statistics instead (n-gram matches/totals and lengths), whose
sum over any resample gives that resample's corpus BLEU exactly as sacrebleu computes it.
The authors' definitions (NLTK sentence BLEU, the `rouge` package, DPR's hit rule) are computed beside
these, under their own keys (`*_authors`, `*_dpr`): jsarag.evaluate.authors_metrics.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import cache

import numpy as np

from jsarag import InputError
from jsarag.evaluate.authors_metrics import authors_scores, dpr_has_answer
from jsarag.text import has_answer, normalize

QA_METRICS = ("em", "f1")
DIALOG_METRICS = ("bleu1", "bleu4", "rouge_l", "f1")


# -- QA: SQuAD exact match and F1 ------------------------------------------------------------
def _em_one(pred: str, gold: str) -> float:
    return float(normalize(pred) == normalize(gold))


def _f1_one(pred: str, gold: str) -> float:
    p, g = normalize(pred).split(), normalize(gold).split()
    if not p or not g:  # SQuAD v2 convention: both empty -> 1, one empty -> 0
        return float(p == g)
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def _as_list(answers) -> list[str]:
    if isinstance(answers, str):
        return [answers]
    answers = list(answers)
    if not answers:
        raise InputError("empty list of gold answers")
    return answers


def exact_match(pred: str, answers: Sequence[str] | str) -> float:
    """1.0 if the normalized prediction equals some normalized gold answer (max over answers)."""
    return max(_em_one(pred, a) for a in _as_list(answers))


def f1(pred: str, answers: Sequence[str] | str) -> float:
    """SQuAD token F1 in [0, 1], max over gold answers."""
    return max(_f1_one(pred, a) for a in _as_list(answers))


def token_f1(pred: str, target: str) -> float:
    """Token F1 between a response and its single reference (dialog), SQuAD normalization."""
    return _f1_one(pred, target)


# -- BLEU (sacrebleu) ------------------------------------------------------------------------
@cache
def _bleu(order: int, effective: bool = False):
    from sacrebleu.metrics import BLEU

    return BLEU(max_ngram_order=order, effective_order=effective)


def _ref_streams(refs: Sequence[Sequence[str] | str]) -> list[list[str]]:
    """Per-example reference lists -> sacrebleu's reference streams (equal count per example)."""
    refs = [[r] if isinstance(r, str) else list(r) for r in refs]
    n = {len(r) for r in refs}
    if len(n) > 1:
        raise InputError(f"BLEU needs the same number of references per example, got {sorted(n)}")
    return [list(s) for s in zip(*refs)] if refs else [[]]


def corpus_bleu(hyps: Sequence[str], refs: Sequence[Sequence[str] | str], order: int = 4) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenization, exp smoothing), refs given per example."""
    return float(_bleu(order).corpus_score(list(hyps), _ref_streams(refs)).score)


def sentence_bleu(hyp: str, refs: Sequence[str] | str, order: int = 4) -> float:
    """Sentence BLEU (sacrebleu, effective order as its documentation recommends)."""
    return float(_bleu(order, True).sentence_score(hyp, [refs] if isinstance(refs, str) else list(refs)).score)


def bleu_stats(hyps: Sequence[str], refs: Sequence[Sequence[str] | str], order: int = 4) -> np.ndarray:
    """Per-example sufficient statistics [n, 2*order+2]: matches per order, totals per order,
    hypothesis length, reference length. Summed over examples they give sacrebleu's corpus stats."""
    bleu, out = _bleu(order), np.zeros((len(hyps), 2 * order + 2), dtype=np.float64)
    for i, (h, r) in enumerate(zip(hyps, refs)):
        s = bleu.corpus_score([h], [[x] for x in ([r] if isinstance(r, str) else r)])
        out[i] = [*s.counts, *s.totals, s.sys_len, s.ref_len]
    return out


def bleu_from_stats(stats: np.ndarray, order: int = 4) -> float:
    """Corpus BLEU from summed `bleu_stats` (1-D, or 2-D which is summed over rows)."""
    from sacrebleu.metrics import BLEU

    s = np.asarray(stats, dtype=np.float64)
    if s.ndim == 2:
        s = s.sum(0)
    if not np.allclose(s, np.round(s)):
        raise InputError("BLEU statistics must be counts (sum them, do not average them)")
    c, t = [int(round(x)) for x in s[:order]], [int(round(x)) for x in s[order:2 * order]]
    return float(BLEU.compute_bleu(c, t, int(round(s[-2])), int(round(s[-1])), smooth_method="exp",
                                   max_ngram_order=order).score)


# -- ROUGE-L (rouge-score) -------------------------------------------------------------------
@cache
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(pred: str, target: str) -> float:
    """ROUGE-L F-measure in [0, 1] (rouge-score's default tokenizer: lower case, alphanumerics)."""
    return float(_rouge().score(target, pred)["rougeL"].fmeasure)


# -- retrieval -------------------------------------------------------------------------------
def recall_scores(hits_lists: Sequence[Sequence[bool]], k: int) -> np.ndarray:
    """Per example: 1 if a relevant passage is among the first k retrieved."""
    return np.array([float(any(h[:k])) for h in hits_lists], dtype=np.float64)


def rr_scores(hits_lists: Sequence[Sequence[bool]], k: int) -> np.ndarray:
    """Per example: reciprocal rank of the first relevant passage within the first k, else 0."""
    out = np.zeros(len(hits_lists), dtype=np.float64)
    for i, h in enumerate(hits_lists):
        for rank, hit in enumerate(h[:k], 1):
            if hit:
                out[i] = 1.0 / rank
                break
    return out


def recall_at_k(hits_lists: Sequence[Sequence[bool]], k: int) -> float:
    """Fraction of examples with a hit in the top k, in [0, 1]."""
    return float(recall_scores(hits_lists, k).mean()) if len(hits_lists) else float("nan")


def mrr_at_k(hits_lists: Sequence[Sequence[bool]], k: int) -> float:
    """Mean reciprocal rank truncated at k, in [0, 1]."""
    return float(rr_scores(hits_lists, k).mean()) if len(hits_lists) else float("nan")


def retrieval_scores(hits_lists, ks: Sequence[int], mrr_k: int = 10, prefix: str = "", suffix: str = "") -> dict[str, np.ndarray]:
    """Per-example retrieval scores in points: {prefix+"r@k"+suffix: [...], prefix+"mrr@10"+suffix: [...]}."""
    out = {f"{prefix}r@{k}{suffix}": 100 * recall_scores(hits_lists, k) for k in ks}
    out[f"{prefix}mrr@{mrr_k}{suffix}"] = 100 * rr_scores(hits_lists, mrr_k)
    return out


def retrieval_metrics(hits_lists, ks: Sequence[int] = (1, 5, 10, 20), mrr_k: int = 10, prefix: str = "",
                      suffix: str = "") -> dict[str, float]:
    """R@k for each k and MRR@mrr_k, in points."""
    return {k: float(v.mean()) if len(v) else float("nan")
            for k, v in retrieval_scores(hits_lists, ks, mrr_k, prefix, suffix).items()}


HIT_FIELDS = (("hits", "", ""), ("posterior_hits", "posterior/", ""),
              ("hits_dpr", "", "_dpr"), ("posterior_hits_dpr", "posterior/", "_dpr"))


def row_retrieval_metrics(rows: Sequence[dict], ks: Sequence[int], dpr: bool = False) -> dict[str, float]:
    """R@k and MRR@10 of prediction rows, prior ("hits") and posterior ("posterior_hits") where the rows
    have them; with `dpr`, also under DPR's rule ("hits_dpr" -> "r@k_dpr", ...)."""
    out = {}
    for key, prefix, suffix in HIT_FIELDS:
        if rows and key in rows[0] and (dpr or not suffix):
            out.update(retrieval_metrics([_field(r, key, i) for i, r in enumerate(rows)], ks, 10, prefix, suffix))
    return out


# -- per-example rows -------------------------------------------------------------------------
HIT_RULES = ("containment", "dpr")


def passage_hits(ex: dict, passages: Sequence[dict], rule: str = "containment") -> list[bool]:
    """Which retrieved passages count as hits: the example's gold passages where it has them;
    otherwise an answer (or the target) found in the passage's contents, by answer containment
    (`containment`, the answerable filter's test) or by DPR's has_answers (`dpr`)."""
    if ex.get("gold_passages"):
        gold = set(ex["gold_passages"])
        return [p["id"] in gold for p in passages]
    answers = ex.get("answers") or ([ex["target"]] if ex.get("target") else [])
    if rule == "dpr":
        return [dpr_has_answer(p["contents"], answers) if answers else False for p in passages]
    if rule != "containment":
        raise InputError(f"unknown hit rule {rule!r} (expected one of {', '.join(HIT_RULES)})")
    return [has_answer(p["contents"], answers) for p in passages]


def dpr_hits(ex: dict, passages: Sequence[dict]) -> list[bool]:
    """passage_hits under DPR's rule: what a row records as `hits_dpr` beside `hits`."""
    return passage_hits(ex, passages, "dpr")


def prediction_row(ex: dict, docids: Sequence[str], hits: Sequence[bool], hits_dpr: Sequence[bool] | None = None) -> dict:
    """The row written per example (predictions.jsonl, baselines): the example's fields, the
    retrieved passage ids and their hits (containment), and under DPR's rule when given."""
    out = {k: ex[k] for k in ("id", "history", "question", "answers", "target") if k in ex}
    out["retrieved"], out["hits"] = list(docids), list(hits)
    if hits_dpr is not None:
        out["hits_dpr"] = list(hits_dpr)
    return out


# -- generation over prediction rows ---------------------------------------------------------
def _field(row: dict, key: str, i: int):
    if key not in row:
        raise InputError(f"prediction row {i + 1} (id {row.get('id')!r}): missing field {key!r}")
    return row[key]


def generation_scores(preds: Sequence[dict], task: str, authors: bool = False) -> dict[str, np.ndarray]:
    """Per-example scores in points. QA: em, f1. Dialog: f1, rouge_l, and sentence BLEU
    (bleu1_sent, bleu4_sent; the corpus BLEU is in `generation_stats`). With `authors`, also the
    authors' bleu1_authors, bleu4_authors, rouge_l_authors (both tasks, as their evaluation does)."""
    if task == "qa":
        pa = [(_field(r, "prediction", i), _field(r, "answers", i)) for i, r in enumerate(preds)]
        out = {"em": 100 * np.array([exact_match(p, a) for p, a in pa]),
               "f1": 100 * np.array([f1(p, a) for p, a in pa])}
    elif task == "dialog":
        pt = [(_field(r, "prediction", i), _field(r, "target", i)) for i, r in enumerate(preds)]
        out = {"f1": 100 * np.array([token_f1(p, t) for p, t in pt]),
               "rouge_l": 100 * np.array([rouge_l(p, t) for p, t in pt]),
               "bleu1_sent": np.array([sentence_bleu(p, t, 1) for p, t in pt]),
               "bleu4_sent": np.array([sentence_bleu(p, t, 4) for p, t in pt])}
    else:
        raise InputError(f"unknown task {task!r} (expected qa or dialog)")
    if authors:
        out.update(authors_scores(preds))
    return out


def generation_stats(preds: Sequence[dict], task: str) -> dict[str, np.ndarray]:
    """Per-example sufficient statistics of corpus-level metrics: {"bleu1": [n,4], "bleu4": [n,10]}
    for dialog, {} for QA."""
    if task != "dialog":
        return {}
    hyps = [_field(r, "prediction", i) for i, r in enumerate(preds)]
    refs = [_field(r, "target", i) for i, r in enumerate(preds)]
    return {"bleu1": bleu_stats(hyps, refs, 1), "bleu4": bleu_stats(hyps, refs, 4)}


def corpus_metric(name: str, stats: np.ndarray) -> float:
    """Value of the corpus-level metric `name` ("bleu1" / "bleu4") from per-example stats."""
    if name not in ("bleu1", "bleu4"):
        raise InputError(f"unknown corpus-level metric {name!r}")
    return bleu_from_stats(stats, int(name[-1]))


def is_generated(row: dict) -> bool:
    """Whether the generator answered this row: a row past evaluate.generate_n has `"prediction": null`
    (retrieval is scored on every row, generation on the answered ones). A row without the field counts,
    so that the scorer names it."""
    return row.get("prediction", "") is not None


def generated(preds: Sequence[dict]) -> list[dict]:
    return [r for r in preds if is_generated(r)]


def generation_metrics(preds: Sequence[dict], task: str, authors: bool = False) -> dict[str, float]:
    """QA: {"em", "f1"}. Dialog: {"bleu1", "bleu4" (corpus), "rouge_l", "f1"}. With `authors`, also
    {"bleu1_authors", "bleu4_authors", "rouge_l_authors"}. Points (0-100), over the generated rows."""
    preds = generated(preds)
    out = {k: float(v.mean()) if len(v) else float("nan") for k, v in generation_scores(preds, task, authors).items()
           if not k.endswith("_sent")}
    for k, s in generation_stats(preds, task).items():
        out[k] = corpus_metric(k, s) if len(s) else float("nan")
    return out
