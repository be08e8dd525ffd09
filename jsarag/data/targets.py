"""Which of a QA example's answers is its training target y (what the generator learns and what
the posterior retriever reads). Per dataset, `target:` in the config:

  first      answers[0] (right when the list is one answer and its variants: NQ, MS MARCO); the
             default of every format but triviaqa_release
  canonical  the release's canonical answer, written as `target` by the reader: TriviaQA's
             Answer.Value (format triviaqa_release, whose default it is), as FiD, Atlas and the
             JSA-RAG authors train; the aliases stay in `answers`, for scoring
  random     a seeded random answer per visit: what FiD's and Atlas's QA task does for an example
             without a `target` (DPR's TriviaQA csv carries aliases only, in arbitrary order); the
             choice depends on (seed, example id, epoch) only, so a resumed run draws the same
             targets
  contained  the first answer, in list order, that the best-ranked gold passage containing any
             answer contains; resolved once at prepare time and written as the example's
             `target`; an example with no such gold passage keeps answers[0]

Dialog examples always train on their `target` (the response); the rule does not apply.
"""
from __future__ import annotations

import random

from jsarag.io import read_jsonl
from jsarag.text import has_answer

RULES = ("first", "canonical", "random", "contained")


def apply_rule(examples: list[dict], rule: str, passages_jsonl=None) -> dict:
    """Mark or resolve the target of each QA example with several answers; returns counts."""
    if rule == "canonical":
        return {"canonical": sum("target" in ex for ex in examples)}
    multi = [ex for ex in examples if "target" not in ex and len(ex.get("answers") or []) > 1]
    if rule == "random":
        for ex in multi:
            ex["target_rule"] = "random"
        return {"random": len(multi)}
    if rule != "contained":
        return {}
    need = {pid for ex in multi for pid in ex.get("gold_passages") or ()}
    text: dict[str, str] = {}
    if need and passages_jsonl is not None:
        for p in read_jsonl(passages_jsonl, required=("id", "contents")):  # a malformed line names file:line
            if p["id"] in need:
                text[p["id"]] = p["contents"]
    resolved = 0
    for ex in multi:
        for pid in ex.get("gold_passages") or ():
            hit = next((a for a in ex["answers"] if pid in text and has_answer(text[pid], [a])), None)
            if hit is not None:
                ex["target"] = hit
                resolved += 1
                break
    return {"contained": resolved, "first_fallback": len(multi) - resolved}


def visit(ex: dict, seed: int, epoch: int) -> dict:
    """The example as the trainer sees it on this visit (epoch): a `random` example gets this
    visit's seeded target; any other example is returned unchanged."""
    if ex.get("target_rule") != "random":
        return ex
    return {**ex, "target": random.Random(f"{seed}-{ex['id']}-{epoch}").choice(ex["answers"])}
