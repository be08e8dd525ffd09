"""The generic formats: bring your own corpus and questions as plain JSONL (no Python to write).

Corpus `jsonl`: Pyserini's JsonCollection, one passage per line, `{"id", "contents", "title"?}`;
one file or several (`member:` a list), each optionally gzipped. With `passage_words`, a long
`contents` is split into passages `ID#0, ID#1, ...` of at most that many words.

Dataset `jsonl`, one example per line:
  qa      {"id"?, "question", "answers": [str, ...] or "target": str, "gold_passages"?: [pid, ...]}
  dialog  {"id"?, "history": [turn, ...], "question", "target", "gold_passages"?: [pid, ...]}
A missing id becomes `<dataset>-<source>-<line>`. `fields:` maps a canonical name to the name (or
dotted path, like `answer.aliases`) in the file, so the JSONL of an `hf_dataset` download is read
as it is.
"""
from __future__ import annotations

from collections.abc import Iterator

from jsarag import InputError
from jsarag.data.archive import open_text
from jsarag.io import json_lines

Row = tuple[int, dict]
CANONICAL = ("id", "question", "answers", "target", "history", "gold_passages")


def _get(row: dict, path: str):
    cur = row
    for k in path.split("."):
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return cur


def _str_list(value, what: str, loc: str, n: int, allow_empty: bool) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise InputError(f"{loc}:{n}: {what} must be a list of strings")
    if not allow_empty and not [x for x in value if x.strip()]:
        raise InputError(f"{loc}:{n}: {what} is empty")
    return value


def _lines(path, members, loc_of) -> Iterator[tuple[str, int, object]]:
    for m in members:
        loc = loc_of(m)
        with open_text(path, m) as f:
            for n, row in json_lines(f, loc):
                if not isinstance(row, dict):
                    raise InputError(f"{loc}:{n}: expected a JSON object, got {type(row).__name__}")
                yield loc, n, row


def read_jsonl_corpus(path, member, loc_of, passage_words: int | None) -> Iterator[Row]:
    """Passages of a JsonCollection file (or of each file in `member` when it is a list)."""
    from jsarag.data.corpora import split_words

    members = member if isinstance(member, list) else [member]
    for loc, n, row in _lines(path, members, loc_of):
        pid, text = row.get("id"), row.get("contents")
        if not isinstance(pid, (str, int)) or isinstance(pid, bool) or str(pid) == "":
            raise InputError(f"{loc}:{n}: missing field id")
        if not isinstance(text, str):
            raise InputError(f"{loc}:{n}: missing field contents (a string)")
        title = row.get("title") or ""
        if passage_words:
            for c, chunk in enumerate(split_words(text, passage_words)):
                yield n, {"id": f"{pid}#{c}", "title": title, "contents": chunk}
        else:
            yield n, {"id": str(pid), "title": title, "contents": text}


def read_jsonl_examples(path, member, loc: str, task: str, prefix: str, fields: dict | None) -> Iterator[Row]:
    """Canonical QA or dialog examples of a JSONL file; every problem names file:line."""
    fields = {k: (fields or {}).get(k, k) for k in CANONICAL}
    for _, n, row in _lines(path, [member], lambda _m: loc):
        v = {k: _get(row, src) for k, src in fields.items()}
        q = v["question"]
        if not isinstance(q, str) or not q.strip():
            raise InputError(f"{loc}:{n}: missing or empty field {fields['question']}")
        ex = {"id": str(v["id"]) if v["id"] is not None else f"{prefix}-{n:06d}", "question": q.strip()}
        if task == "dialog":
            if v["history"] is None:
                raise InputError(f"{loc}:{n}: missing field {fields['history']}")
            ex["history"] = _str_list(v["history"], fields["history"], loc, n, allow_empty=True)
        if v["answers"] is not None and task == "qa":
            ex["answers"] = _str_list(v["answers"], fields["answers"], loc, n, allow_empty=False)
        if v["target"] is not None:
            if not isinstance(v["target"], str) or not v["target"].strip():
                raise InputError(f"{loc}:{n}: {fields['target']} must be a non-empty string")
            ex["target"] = v["target"]
            if task == "qa":
                ex.setdefault("answers", [v["target"]])
        if "answers" not in ex and "target" not in ex:
            need = f"{fields['answers']} or {fields['target']}" if task == "qa" else fields["target"]
            raise InputError(f"{loc}:{n}: missing field {need}")
        gold = v["gold_passages"]
        if gold is not None:
            gold = [str(p) if isinstance(p, int) and not isinstance(p, bool) else p for p in gold] if isinstance(gold, list) else gold
            ex["gold_passages"] = _str_list(gold, fields["gold_passages"], loc, n, allow_empty=False)
        yield n, ex
