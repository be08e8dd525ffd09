"""The two definitions of BLEU and ROUGE-L side by side on one set of predictions
(`python -m jsarag.report definitions NAME=PREDICTIONS.jsonl ...`).

The suite's (jsarag.evaluate.metrics): sacrebleu's corpus BLEU-4 (13a tokens, exp smoothing), the mean
of sacrebleu's sentence BLEU-4 (effective order), and rouge-score's ROUGE-L F (lower case, alphanumeric
tokens). The authors' (jsarag.evaluate.authors_metrics): NLTK's unsmoothed sentence BLEU-4 on SQuAD-
normalized tokens, averaged over examples, and the `rouge` package's summary-level ROUGE-L F. Both sides
read the same references: the example's `answers` when it has them (QA), else its `target` (dialog); the
suite's ROUGE-L takes the max over references, as the authors' does. Rows past evaluate.generate_n
("prediction": null) are left out. Points (0-100). docs/method.md explains where the two differ.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jsarag import InputError
from jsarag.evaluate import authors_metrics as A
from jsarag.evaluate import metrics as M
from jsarag.io import read_jsonl

COLUMNS = ("bleu4 (sacrebleu corpus)", "bleu4 (sacrebleu sentence, mean)", "bleu4_authors (NLTK sentence, mean)",
           "rouge_l (rouge-score)", "rouge_l_authors (rouge)")


def side_by_side(rows: list[dict], where: str) -> dict[str, float]:
    rows = M.generated(rows)
    if not rows:
        raise InputError(f"{where}: no generated prediction")
    preds, refs = [], []
    for i, r in enumerate(rows):
        if "prediction" not in r:
            raise InputError(f"{where}:{i + 1}: missing field 'prediction'")
        preds.append(r["prediction"])
        refs.append(A.references(r, i))
    width = max(len(x) for x in refs)  # sacrebleu's corpus BLEU wants as many references per example: pad with the first
    padded = [x + [x[0]] * (width - len(x)) for x in refs]
    authors = A.authors_scores(rows)
    return {"n": len(rows),
            COLUMNS[0]: M.corpus_bleu(preds, padded, 4),
            COLUMNS[1]: float(np.mean([M.sentence_bleu(p, x, 4) for p, x in zip(preds, refs)])),
            COLUMNS[2]: float(authors["bleu4_authors"].mean()),
            COLUMNS[3]: 100 * float(np.mean([max(M.rouge_l(p, t) for t in x) for p, x in zip(preds, refs)])),
            COLUMNS[4]: float(authors["rouge_l_authors"].mean())}


def table(named: dict[str, str]) -> str:
    """A Markdown table: one row per predictions file, the five columns of COLUMNS."""
    lines = ["| predictions | n | " + " | ".join(COLUMNS) + " |", "|---|---:|" + "---:|" * len(COLUMNS)]
    for name, path in named.items():
        got = side_by_side(list(read_jsonl(Path(path), required=("id",), unique="id")), path)
        lines.append(f"| {name} | {got['n']} | " + " | ".join(f"{got[c]:.2f}" for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"
