"""TriviaQA as FiD, Atlas and the JSA-RAG authors prepare it (format `triviaqa_release`).

The release, `triviaqa-unfiltered.tar.gz`, holds `triviaqa-unfiltered/unfiltered-web-{train,dev}.json`:
one JSON object, pretty-printed, `{"Data": [{"Question", "QuestionId", "QuestionSource",
"Answer": {"Value", "Aliases", "NormalizedAliases", "NormalizedValue", "Type", ...},
"EntityPages", "SearchResults"}, ...], "Domain", "Split", "Version", ...}` (the layout that the
`datasets` loader `trivia_qa` parses). The file is streamed (ijson): the train file is too large
to load whole in a prepare job.

Each question becomes {"id": QuestionId, "question": Question, "answers": Answer.Aliases}, and,
under `target: canonical` (this format's default), "target": Answer.Value, title-cased when it is
all upper case. This is `convert_triviaqa` in Atlas's and the authors'
`get_data/preprocessing/prepare_qa.py` (FiD's `preprocess.py` is the same): train on the
canonical value, score against the aliases. `NormalizedAliases` are not read, as there.

Splits: FiD's `dataindex.tar.gz` lists positions into `Data`: `TQA.train.idx.json` and
`TQA.dev.idx.json` into unfiltered-web-train.json (78,785 and 8,837 of its 87,622 questions),
`TQA.test.idx.json` into unfiltered-web-dev.json (all 11,313). A source with a `<source>_index`
member keeps the questions at those positions, in that order.
"""
from __future__ import annotations

import json
from collections.abc import Iterator

from jsarag import InputError
from jsarag.data.archive import open_binary

Row = tuple[str, dict]


def canonical_value(value: str) -> str:
    """The training target FiD and Atlas take from Answer.Value: title case for an all-caps value."""
    return value.title() if value.isupper() else value


def _str(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _question(rec, loc: str, i: int) -> dict:
    where = f"{loc}: Data[{i}]"
    if not isinstance(rec, dict):
        raise InputError(f"{where}: expected an object")
    for k in ("Question", "QuestionId"):
        if not _str(rec.get(k)):
            raise InputError(f"{where}: missing field {k}")
    ans = rec.get("Answer")
    if not isinstance(ans, dict) or not _str(ans.get("Value")):
        raise InputError(f"{where} ({rec['QuestionId']}): missing field Answer.Value (the test file without answers?)")
    aliases = ans.get("Aliases")
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise InputError(f"{where} ({rec['QuestionId']}): Answer.Aliases must be a list of strings")
    aliases = [a for a in aliases if a.strip()] or [ans["Value"]]
    return {"id": rec["QuestionId"], "question": rec["Question"].strip(), "answers": aliases, "value": ans["Value"].strip()}


def read_release(path, member, loc: str) -> list[dict]:
    """Every question of one release file, in `Data` order (only the fields kept)."""
    import ijson

    out = []
    with open_binary(path, member) as f:
        try:
            for i, rec in enumerate(ijson.items(f, "Data.item")):
                out.append(_question(rec, loc, i))
        except ijson.JSONError as e:
            raise InputError(f"{loc}: malformed JSON after Data[{len(out)}] ({e})") from None
    if not out:
        raise InputError(f"{loc}: no questions under Data (not a TriviaQA release file?)")
    return out


def read_index(path, member, loc: str) -> list[int]:
    """A FiD split index: a JSON list of positions."""
    with open_binary(path, member) as f:
        try:
            idx = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{loc}: malformed JSON ({e})") from None
    if not isinstance(idx, list) or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in idx):
        raise InputError(f"{loc}: expected a JSON list of question positions (non-negative integers)")
    return idx


def select(questions: list[dict], index: list[int] | None, loc: str, index_loc: str | None,
           canonical: bool, counts: dict) -> Iterator[Row]:
    """(location, example) for the questions at `index` (all, in order, without one)."""
    if canonical:
        counts.setdefault("title_cased_targets", 0)
    for j, k in enumerate(range(len(questions)) if index is None else index):
        if k >= len(questions):
            raise InputError(f"{index_loc}: entry {j} is position {k}, past the end of {loc} ({len(questions)} questions)")
        q = questions[k]
        ex = {"id": q["id"], "question": q["question"], "answers": list(q["answers"])}
        if canonical:
            ex["target"] = canonical_value(q["value"])
            counts["title_cased_targets"] += ex["target"] != q["value"]
        yield f"Data[{k}]", ex
