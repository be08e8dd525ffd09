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
    """Every gold passage id of every example must be in the corpus; returns how many were checked."""
    need: dict[str, str] = {}
    for rows in sources.values():
        for loc, ex in rows:
            for pid in ex.get("gold_passages") or ():
                need.setdefault(pid, loc)
    if not need:
        return 0
    found, parts = set(), {}
    for p in read_jsonl(passages_jsonl, required=("id",)):  # a malformed line names file:line
        if p["id"] in need:
            found.add(p["id"])
        elif "#" in p["id"] and p["id"].rsplit("#", 1)[0] in need:
            parts.setdefault(p["id"].rsplit("#", 1)[0], p["id"])  # a document split into passages ID#0, ID#1, ...
    missing = [p for p in need if p not in found]
    if missing:
        hint = (f"; it is a document split into passages ({parts[missing[0]]!r}, ...): gold ids name passages, ID#n"
                if missing[0] in parts else "")
        raise InputError(f"{need[missing[0]]}: gold passage {missing[0]!r} is not in the corpus {passages_jsonl}"
                         f" ({len(missing)} gold id(s) missing){hint}")
    return len(need)
