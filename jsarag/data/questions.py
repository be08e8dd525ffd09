"""Readers for the raw question/dialog files, one per dataset format.

Each reader streams one source file (a member of a download) and yields (line, example) with
examples in the canonical form: QA {"id", "question", "answers"[, "gold_passages"]}, dialog
{"id", "history", "question", "target"[, "gold_passages"]}.

  dpr_topics  DPR / pyserini topics: question<TAB>python-list-of-answers, CSV quoting (TriviaQA
              lines have doubled quotes and quoted newlines)
  msmarco     queries TSV qid<TAB>query, with a TREC qrels file (qid 0 pid rel) -> gold_passages,
              and optionally the MS MARCO QnA v2.1 JSON for answers
  orquac      OR-QuAC preprocessed/{train,dev,test}.txt JSONL (qid, question, rewrite, history,
              answer{text,answer_start,bid}, evidences, retrieval_labels) + qrels.txt JSON
              {qid: {pid: 1}} -> gold_passages
  doqa        DoQA v2.1 JSON (QuAC/SQuAD-2 layout: data[].paragraphs[].qas[] in dialog order)
"""
from __future__ import annotations

import ast
import csv
import json
import sys
from collections.abc import Iterator

from jsarag import InputError
from jsarag.data.archive import open_binary, open_text
from jsarag.io import json_lines

csv.field_size_limit(sys.maxsize)
CANNOT = "CANNOTANSWER"
Row = tuple[int, dict]


def _unquote(s: str) -> str:
    """Some TriviaQA questions are CSV-quoted twice ('"Which ""X"" is..."'): undo the second layer."""
    if len(s) >= 2 and s[0] == s[-1] == '"' and '"' not in s[1:-1].replace('""', ""):
        return s[1:-1].replace('""', '"')
    return s


def read_dpr_topics(path, member, loc: str, prefix: str) -> Iterator[Row]:
    with open_text(path, member) as f:
        reader = csv.reader(f, delimiter="\t")
        for i, row in enumerate(reader):
            n = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != 2:
                raise InputError(f"{loc}:{n}: expected question<TAB>answers, got {len(row)} field(s)")
            q, a = row
            try:
                answers = ast.literal_eval(a)
            except (ValueError, SyntaxError):
                raise InputError(f"{loc}:{n}: answers are not a Python list literal: {a[:80]!r}") from None
            if not isinstance(answers, list) or not answers or not all(isinstance(x, str) for x in answers):
                raise InputError(f"{loc}:{n}: answers must be a non-empty list of strings")
            if not q.strip():
                raise InputError(f"{loc}:{n}: empty question")
            yield n, {"id": f"{prefix}-{i:06d}", "question": _unquote(q.strip()), "answers": answers}


def read_qrels(path, member, loc: str) -> dict[str, list[str]]:
    """TREC qrels (qid iter docid rel) or OR-QuAC JSON {qid: {pid: rel}} -> {qid: [relevant pids]}."""
    with open_text(path, member) as f:
        head = f.read(1)
        rest = f.read()
    text = head + rest
    if head == "{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{loc}:{e.lineno}: malformed JSON ({e.msg})") from None
        return {str(q): [str(p) for p, r in d.items() if int(r) > 0] for q, d in data.items()}
    out: dict[str, list[str]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise InputError(f"{loc}:{n}: expected 'qid iter docid relevance'")
        if int(parts[3]) > 0:
            out.setdefault(parts[0], []).append(parts[2])
    return out


def read_msmarco_answers(path, member, loc: str) -> dict[str, list[str]]:
    """MS MARCO QnA v2.1 columnar JSON -> {query_id: answers} (well-formed answers preferred)."""
    with open_binary(path, member) as f:
        try:
            d = json.load(f)
        except json.JSONDecodeError as e:
            raise InputError(f"{loc}:{e.lineno}: malformed JSON ({e.msg})") from None
    if "query_id" not in d or "answers" not in d:
        raise InputError(f"{loc}: not MS MARCO QnA JSON (needs query_id and answers)")
    wf = d.get("wellFormedAnswers", {})
    out = {}
    for k, qid in d["query_id"].items():
        ans = wf.get(k) if isinstance(wf.get(k), list) and wf.get(k) else d["answers"].get(k, [])
        ans = [a for a in ans if a and a != "No Answer Present."]
        if ans:
            out[str(qid)] = ans
    return out


def read_msmarco(path, member, loc: str, qrels: dict, answers: dict | None) -> Iterator[Row]:
    with open_text(path, member) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            qid, tab, q = line.partition("\t")
            if not tab or not qid or not q.strip():
                raise InputError(f"{loc}:{n}: expected qid<TAB>query")
            ex = {"id": qid, "question": q.strip(), "answers": (answers or {}).get(qid, [])}
            if qid in qrels:
                ex["gold_passages"] = qrels[qid]
            if answers is not None and not ex["answers"]:
                continue  # no usable answer in QnA
            yield n, ex


def _field(obj, path: str, loc: str, n: int):
    cur = obj
    for k in path.split("."):
        if not isinstance(cur, dict) or k not in cur:
            raise InputError(f"{loc}:{n}: missing field {path}")
        cur = cur[k]
    return cur


def read_orquac(path, member, loc: str, qrels: dict | None) -> Iterator[Row]:
    with open_text(path, member) as f:
        for n, r in json_lines(f, loc):
            qid = str(_field(r, "qid", loc, n))
            hist = []
            for h in _field(r, "history", loc, n):
                hist += [_field(h, "question", loc, n), _field(h, "answer.text", loc, n)]
            ex = {"id": qid, "history": hist, "question": _field(r, "question", loc, n),
                  "target": _field(r, "answer.text", loc, n)}
            if r.get("rewrite"):
                ex["rewrite"] = r["rewrite"]
            if qrels is not None and qid in qrels:
                ex["gold_passages"] = qrels[qid]
            yield n, ex


def read_doqa(path, member, loc: str, keep_unanswerable: bool = False) -> Iterator[Row]:
    with open_binary(path, member) as f:
        try:
            d = json.load(f)
        except json.JSONDecodeError as e:
            raise InputError(f"{loc}:{e.lineno}: malformed JSON ({e.msg})") from None
    for di, doc in enumerate(_field(d, "data", loc, 0)):
        for pi, para in enumerate(doc.get("paragraphs", [])):
            where = f"data[{di}].paragraphs[{pi}]"
            if "qas" not in para or "id" not in para:
                raise InputError(f"{loc}: {where} needs id and qas")
            hist: list[str] = []
            for qi, qa in enumerate(para["qas"]):
                if "question" not in qa or "id" not in qa:
                    raise InputError(f"{loc}: {where}.qas[{qi}] needs id and question")
                ans = (qa.get("orig_answer") or {}).get("text") or ((qa.get("answers") or [{}])[0].get("text"))
                if ans is None:
                    raise InputError(f"{loc}: {where}.qas[{qi}] has no answer text")
                if ans != CANNOT or keep_unanswerable:
                    yield 0, {"id": str(qa["id"]), "history": list(hist), "question": qa["question"], "target": ans,
                              "gold_passages": [str(para["id"])]}
                hist += [qa["question"], ans]


def read_doqa_contexts(path, member, loc: str) -> Iterator[Row]:
    """DoQA paragraphs as a corpus (the KB the dialogs are grounded in)."""
    with open_binary(path, member) as f:
        d = json.load(f)
    for doc in d.get("data", []):
        for para in doc.get("paragraphs", []):
            ctx = para["context"]
            if ctx.endswith(CANNOT):
                ctx = ctx[: -len(CANNOT)].rstrip()
            yield 0, {"id": str(para["id"]), "title": doc.get("title") or "", "contents": ctx}
