"""What each model reads from a canonical example: the context x, the target y, and `x [SEP] y`."""
from __future__ import annotations

from jsarag.io import read_jsonl

SEP = " [SEP] "


def context_text(ex: dict) -> str:
    """x: the question, or the dialog history followed by the current question."""
    hist = ex.get("history") or []
    return SEP.join([*hist, ex["question"]]) if hist else ex["question"]


def target_text(ex: dict) -> str:
    """y: the response for dialog; for QA the example's resolved `target` (datasets.D.target:
    `contained` writes it at prepare time, `random` sets it per visit, jsarag.data.targets.visit),
    else the first gold answer."""
    return ex["target"] if "target" in ex else ex["answers"][0]


def posterior_text(ex: dict) -> str:
    """What the posterior retriever q(h|x,y) reads."""
    return context_text(ex) + SEP + target_text(ex)


def load_examples(path) -> list[dict]:
    """Examples of a split; one with neither answers nor target, or with an empty answer list or
    target, is refused with file:line (it would fail later, mid-training)."""
    from jsarag import InputError

    rows = []
    for n, ex in enumerate(read_jsonl(path, required=("id", "question"), unique="id"), 1):
        if "answers" not in ex and "target" not in ex:
            raise InputError(f"{path}: example {n} ({ex['id']!r}) has neither answers nor target")
        if "target" in ex and not (isinstance(ex["target"], str) and ex["target"].strip()):
            raise InputError(f"{path}: example {n} ({ex['id']!r}) has an empty target")
        if "answers" in ex and not (isinstance(ex["answers"], list) and any(isinstance(a, str) and a.strip() for a in ex["answers"])):
            raise InputError(f"{path}: example {n} ({ex['id']!r}) has an empty answer list")
        rows.append(ex)
    if not rows:
        raise InputError(f"{path}: no examples (0 rows)")
    return rows
