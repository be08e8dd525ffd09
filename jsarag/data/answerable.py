"""Which questions have an answer somewhere in the corpus: one streamed pass, Aho-Corasick over
the normalized answer strings (word-bounded, the same test as jsarag.text.has_answer)."""
from __future__ import annotations

import logging
from pathlib import Path

import ahocorasick
from tqdm.auto import tqdm

from jsarag.io import read_jsonl
from jsarag.text import normalize

log = logging.getLogger("jsarag.answerable")


def answerable(examples: list[dict], passages_jsonl: str | Path) -> list[bool]:
    """ok[i]: some passage's contents contains an answer of examples[i] (QA), or the corpus holds
    one of its gold passages (examples with gold_passages)."""
    ok = [False] * len(examples)
    auto = ahocorasick.Automaton()
    gold: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        if ex.get("gold_passages"):
            for pid in ex["gold_passages"]:
                gold.setdefault(pid, []).append(i)
            continue
        for a in ex.get("answers") or []:
            na = normalize(a)
            if not na:
                continue
            key = f" {na} "
            if key in auto:
                auto.get(key).append(i)
            else:
                auto.add_word(key, [i])
    use_ac = len(auto) > 0
    if use_ac:
        auto.make_automaton()
    for p in tqdm(read_jsonl(passages_jsonl, required=("id", "contents")), desc="answerable", unit="p", mininterval=10):
        for i in gold.get(p["id"], ()):
            ok[i] = True
        if use_ac:
            for _, idx in auto.iter(f" {normalize(p['contents'])} "):
                for i in idx:
                    ok[i] = True
    return ok
