"""The authors' definitions of BLEU and ROUGE-L, and DPR's retrieval hit rule, beside the suite's own.

What Caohy23/JSA-RAG computes per example (`src/metrics.py`: `_bleu`, `rouge_score`; `src/tasks/qa.py`:
`Task.evaluation`; `evaluate.py`: the references and the average), mirrored here:
- **References**: the example's `answers` when it has them, else its one `target`
  (`gold = [answers[k]] if not "answers" in batch else batch["answers"][k]`).
- **BLEU-n**: `nltk.translate.bleu_score.sentence_bleu(refs, hyp, weights=[1/n]*n)` with NLTK's default
  (no) smoothing. Hypothesis and references are SQuAD-normalized (`normalize_answer`, the same function as
  `jsarag.text.normalize`) and split on whitespace. All references are passed at once: NLTK's
  multi-reference BLEU (counts clipped by the max count over references, the closest reference length for
  the brevity penalty), not a max over references. An empty hypothesis scores 0; a hypothesis without any
  matching n-gram of some order scores (about) 0, NLTK's unsmoothed behaviour.
- **ROUGE-L**: the `rouge` package (1.0.1 in the authors' requirements): `Rouge().get_scores(pred, ref,
  avg=True)["rouge-l"]["f"]`, its summary-level LCS on the raw strings (case kept, sentences split on '.',
  whitespace tokens), against each non-empty reference, max over references. 0 for an empty prediction or
  when no reference is non-empty; a pair on which the package raises scores 0 (the authors catch every
  exception, for ROUGE-1/2/L at once).
- Each metric is averaged over examples and multiplied by 100.
EM and F1 are the SQuAD definitions with the max over answers in both codes (one difference: the authors'
F1 is 0 when prediction and answer are both empty after normalization, the suite's is 1).

DPR's hit rule (`hits: dpr`) is Pyserini's own `has_answers` (pyserini/eval/evaluate_dpr_retrieval.py,
DPR's and DrQA's code): NFD-normalized text, DPR's `SimpleTokenizer` (alphanumeric runs and single other
characters), lower case, and a hit when an answer's token sequence occurs in the passage's. It imports
without the JVM. Unlike the suite's containment rule (`jsarag.text.has_answer`), it keeps articles and
punctuation, so 'The Beatles' is not found in 'Beatles were ...'.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cache

import numpy as np

from jsarag import InputError
from jsarag.text import normalize

AUTHORS_METRICS = ("bleu1_authors", "bleu4_authors", "rouge_l_authors")
DPR_SUFFIX = "_dpr"


def references(row: dict, i: int = 0) -> list[str]:
    """The references the authors score a prediction against: `answers` if present, else [`target`]."""
    refs = row.get("answers")
    if refs is None:
        if "target" not in row:
            raise InputError(f"prediction row {i + 1} (id {row.get('id')!r}): neither answers nor target")
        refs = [row["target"]]
    if isinstance(refs, str):
        refs = [refs]
    if not refs or not all(isinstance(r, str) for r in refs):
        raise InputError(f"prediction row {i + 1} (id {row.get('id')!r}): answers must be a non-empty list of strings")
    return list(refs)


@cache
def _sentence_bleu():
    from nltk.translate.bleu_score import sentence_bleu

    return sentence_bleu


def nltk_bleu(pred: str, refs: Sequence[str], n: int = 4) -> float:
    """The authors' BLEU-n of one prediction, in [0, 1]: NLTK sentence_bleu, uniform weights, no smoothing."""
    hyp = normalize(pred).split()
    ref_tokens = [normalize(r).split() for r in refs]
    with warnings.catch_warnings():  # NLTK warns on every hypothesis without an n-gram match of some order
        warnings.filterwarnings("ignore", message=r"\s*The hypothesis contains 0 counts", category=UserWarning)
        return float(_sentence_bleu()(ref_tokens, hyp, [1.0 / n] * n))


@cache
def _rouge():
    from rouge import Rouge

    return Rouge()  # rouge-1, rouge-2 and rouge-l, as the authors' module-level instance


def rouge_l_authors(pred: str, refs: Sequence[str]) -> float:
    """The authors' ROUGE-L F of one prediction, in [0, 1] (`rouge` package, max over non-empty references)."""
    refs = [r for r in refs if len(r) > 0]
    if len(pred) == 0 or not refs:
        return 0.0
    scores = []
    for r in refs:
        try:
            scores.append(float(_rouge().get_scores(pred, r, avg=True)["rouge-l"]["f"]))
        except Exception:  # noqa: BLE001 -- the authors' rouge_wrapper scores any failing pair 0
            scores.append(0.0)
    return max(scores)


def authors_scores(preds: Sequence[dict]) -> dict[str, np.ndarray]:
    """Per-example scores in points: bleu1_authors, bleu4_authors, rouge_l_authors (mean = the authors' figure)."""
    pr = []
    for i, r in enumerate(preds):
        if "prediction" not in r:
            raise InputError(f"prediction row {i + 1} (id {r.get('id')!r}): missing field 'prediction'")
        pr.append((r["prediction"], references(r, i)))
    return {"bleu1_authors": 100 * np.array([nltk_bleu(p, refs, 1) for p, refs in pr], dtype=np.float64),
            "bleu4_authors": 100 * np.array([nltk_bleu(p, refs, 4) for p, refs in pr], dtype=np.float64),
            "rouge_l_authors": 100 * np.array([rouge_l_authors(p, refs) for p, refs in pr], dtype=np.float64)}


@cache
def _dpr():
    from pyserini.eval.evaluate_dpr_retrieval import SimpleTokenizer, has_answers

    return SimpleTokenizer(), has_answers


def dpr_has_answer(text: str, answers: Sequence[str]) -> bool:
    """Pyserini's (DPR's) has_answers: some answer's lower-cased token sequence occurs in the text's."""
    tokenizer, has_answers = _dpr()
    return bool(has_answers(text, list(answers), tokenizer, regex=False))


DEFINITIONS = {
    "em": "EM: SQuAD normalization, max over answers (the authors' too)",
    "f1": "F1: SQuAD token F1, max over answers (dialog: against the target)",
    "bleu1": "BLEU-1/BLEU-4: sacrebleu corpus BLEU (13a tokens, exp smoothing), the suite's",
    "rouge_l": "ROUGE-L: rouge-score F-measure against the target, the suite's",
    "bleu1_authors": "BLEU (authors): NLTK sentence_bleu on SQuAD-normalized tokens, all references at once, "
                     "no smoothing, mean over examples (Caohy23/JSA-RAG src/metrics.py)",
    "rouge_l_authors": "ROUGE-L (authors): the rouge package's rouge-l F, max over references, mean over examples",
    "containment": "R@k/MRR@10: a gold passage where the example has them, else answer containment "
                   "(SQuAD-normalized tokens, articles and punctuation dropped, word-bounded)",
    "dpr": "(DPR): gold passages likewise, else Pyserini's has_answers (DPR's SimpleTokenizer, lower case, "
           "articles kept)",
}


def definitions_note(metrics: Sequence[str]) -> str:
    """One line naming the definition of each metric column present (suite's and authors')."""
    keys = []
    for m in metrics:
        base = m.split("/")[-1]
        if base.endswith(DPR_SUFFIX):
            keys.append("dpr")
        elif base.startswith(("r@", "mrr@")):
            keys.append("containment")
        else:
            keys.append({"bleu4": "bleu1", "bleu4_authors": "bleu1_authors"}.get(base, base))
    return "; ".join(text for k, text in DEFINITIONS.items() if k in keys) + "."
