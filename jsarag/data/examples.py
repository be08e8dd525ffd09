"""What each model reads from a canonical example: the context x, the target y, and `x [SEP] y`."""
from __future__ import annotations

from jsarag.io import read_jsonl

SEP = " [SEP] "


def context_text(ex: dict) -> str:
    """x: the question, or the dialog history followed by the current question."""
    hist = ex.get("history") or []
    return SEP.join([*hist, ex["question"]]) if hist else ex["question"]


def target_text(ex: dict) -> str:
    """y: the response for dialog, the first gold answer for QA."""
    return ex["target"] if "target" in ex else ex["answers"][0]


def posterior_text(ex: dict) -> str:
    """What the posterior retriever q(h|x,y) reads."""
    return context_text(ex) + SEP + target_text(ex)


def load_examples(path) -> list[dict]:
    rows = []
    for ex in read_jsonl(path, required=("id", "question"), unique="id"):
        if "answers" not in ex and "target" not in ex:
            from jsarag import InputError

            raise InputError(f"{path}: example {ex['id']!r} has neither answers nor target")
        rows.append(ex)
    return rows
