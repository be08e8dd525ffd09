"""Integrity of prepared data: a content hash and counts in stats.json for every collection and
split, pinned counts that stop the run on a mismatch, and gold passages that must exist."""
from __future__ import annotations

from pathlib import Path

from jsarag import InputError
from jsarag.io import read_jsonl


def content_hash(path: str | Path) -> str:
    """sha256 of a prepared file (passages.jsonl, a split): the same digest as a download's."""
    from jsarag.data.download import sha256_file

    return sha256_file(path)


def check_count(where: str, expected: int | None, got: int, what: str) -> None:
    if expected is not None and expected != got:
        raise InputError(f"{where}: expected {expected} {what}, got {got}")


def check_gold(sources: dict[str, list], passages_jsonl: str | Path) -> int:
    """Every gold passage id of every example must be in the corpus; returns how many were checked.
    A gold id D that names a document the corpus split into passages D#0, D#1, ... (`passage_words`)
    is replaced, in the example, by those passages (each one then counts as gold for R@k and MRR), and
    the example records the document ids it named under `gold_documents`."""
    need: dict[str, str] = {}
    for rows in sources.values():
        for loc, ex in rows:
            for pid in ex.get("gold_passages") or ():
                need.setdefault(pid, loc)
    if not need:
        return 0
    found, parts = set(), {}
    for p in read_jsonl(passages_jsonl, required=("id",)):  # a malformed line names file:line
        pid = p["id"]
        doc, sep, c = pid.rpartition("#")
        if pid in need:
            found.add(pid)
        if sep and c.isdigit() and doc in need:
            parts.setdefault(doc, []).append(pid)
    missing = [p for p in need if p not in found and p not in parts]
    if missing:
        raise InputError(f"{need[missing[0]]}: gold passage {missing[0]!r} is not in the corpus {passages_jsonl} (neither a "
                         f"passage id nor a document split into {missing[0]}#0, ...; {len(missing)} gold id(s) missing)")
    for rows in sources.values():
        for _, ex in rows:
            docs = [g for g in ex.get("gold_passages") or () if g not in found]
            if docs:  # document-level ids: each one's passages, in corpus order
                ex["gold_passages"] = list(dict.fromkeys(q for g in ex["gold_passages"] for q in ([g] if g in found else parts[g])))
                ex["gold_documents"] = docs
    return len(need)
