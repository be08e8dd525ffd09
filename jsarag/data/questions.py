"""Readers for the raw question/dialog files, one per dataset format.

Each reader streams one source file (a member of a download) and yields (line, example) with
examples in the canonical form: QA {"id", "question", "answers"[, "gold_passages"]}, dialog
{"id", "history", "question", "target"[, "gold_passages"]}.

  dpr_topics  DPR / pyserini topics: question<TAB>python-list-of-answers, CSV quoting (TriviaQA
              lines have doubled quotes and quoted newlines)
  msmarco     queries TSV qid<TAB>query, with a TREC qrels file (qid 0 pid rel) -> gold_passages,
              and the MS MARCO QnA v2.1 JSON for answers (streamed); a query without judged
              passages or without an answer is dropped
  orquac      OR-QuAC preprocessed/{train,dev,test}.txt JSONL (qid, question, rewrite, history,
              answer{text,answer_start,bid}, evidences, retrieval_labels) + qrels.txt JSON
              {qid: {pid: 1}} -> gold_passages; CANNOTANSWER/NOTRECOVERED turns are dropped
              unless kept
  doqa        DoQA v2.1 JSON (QuAC/SQuAD-2 layout: data[].paragraphs[].qas[] in dialog order);
              gold is the passage of the paragraph's context (one per distinct context)
  triviaqa_release  the TriviaQA release JSON with FiD's split index (jsarag.data.triviaqa)
"""
from __future__ import annotations

import ast
import csv
import hashlib
import json
import sys
from collections.abc import Iterator

from jsarag import InputError
from jsarag.data.archive import load_json, open_binary, open_text, tab_pairs
from jsarag.io import json_lines

csv.field_size_limit(sys.maxsize)
CANNOT = "CANNOTANSWER"
UNANSWERABLE = (CANNOT, "NOTRECOVERED")  # OR-QuAC answers with no span
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
        text = f.read()
    if text.lstrip().startswith("{"):
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


NO_ANSWER = "No Answer Present."


def read_msmarco_answers(path, member, loc: str) -> dict[str, list[str]]:
    """MS MARCO QnA v2.1 columnar JSON -> {query_id: answers}, streamed (json_stream): well-formed
    answers preferred, "No Answer Present." dropped, queries left with no answer absent."""
    import io

    from jsarag.data.json_stream import iter_columns

    cols: dict[str, dict] = {"answers": {}, "wellFormedAnswers": {}, "query_id": {}}
    with open_binary(path, member) as f:
        text = io.TextIOWrapper(f, encoding="utf-8")
        for col, row, v in iter_columns(text, loc, set(cols)):
            if col == "query_id":
                cols[col][row] = str(v)
                continue
            ans = [a for a in v if isinstance(a, str) and a.strip() and a != NO_ANSWER] if isinstance(v, list) else []
            if ans:
                cols[col][row] = ans
    if not cols["query_id"]:
        raise InputError(f"{loc}: not MS MARCO QnA JSON (no query_id column)")
    wf, plain = cols["wellFormedAnswers"], cols["answers"]
    return {qid: wf.get(row) or plain[row] for row, qid in cols["query_id"].items() if row in wf or row in plain}


def read_msmarco(path, member, loc: str, qrels: dict, answers: dict, counts: dict | None = None) -> Iterator[Row]:
    """Queries that have judged passages (when qrels are given: this caps the dev/test source at
    qrels.dev.small) and an answer; `counts` gets how many were dropped for each reason."""
    counts = {} if counts is None else counts
    counts.setdefault("no_qrels", 0)
    counts.setdefault("no_answer", 0)
    for n, qid, q in tab_pairs(path, member, loc, "qid<TAB>query"):
        if qrels and qid not in qrels:
            counts["no_qrels"] += 1
            continue
        if not answers.get(qid):
            counts["no_answer"] += 1
            continue
        ex = {"id": qid, "question": q.strip(), "answers": answers[qid]}
        if qid in qrels:
            ex["gold_passages"] = qrels[qid]
        yield n, ex


def _field(obj, path: str, loc: str, n: int):
    cur = obj
    for k in path.split("."):
        if not isinstance(cur, dict) or k not in cur:
            raise InputError(f"{loc}:{n}: missing field {path}")
        cur = cur[k]
    return cur


def read_orquac(path, member, loc: str, qrels: dict | None, keep_unanswerable: bool = False,
                counts: dict | None = None) -> Iterator[Row]:
    """OR-QuAC turns; a turn whose answer is CANNOTANSWER or NOTRECOVERED (the release's own
    `utils.py` treats both as impossible) is left out unless `keep_unanswerable`, and counted in
    `counts` by answer. It stays in later turns' history, which is the record's own `history`
    field, as in the authors' group's code (Red-Liu199/semi-rag: `--skip_cannot_answer` skips the
    example, `GetDialog` keeps every earlier turn)."""
    counts = {} if counts is None else counts
    if not keep_unanswerable:
        for a in UNANSWERABLE:
            counts.setdefault(a, 0)
    with open_text(path, member) as f:
        for n, r in json_lines(f, loc):
            qid = str(_field(r, "qid", loc, n))
            hist = []
            for h in _field(r, "history", loc, n):
                hist += [_field(h, "question", loc, n), _field(h, "answer.text", loc, n)]
            ex = {"id": qid, "history": hist, "question": _field(r, "question", loc, n),
                  "target": _field(r, "answer.text", loc, n)}
            if ex["target"] in UNANSWERABLE and not keep_unanswerable:
                counts[ex["target"]] += 1
                continue
            if r.get("rewrite"):
                ex["rewrite"] = r["rewrite"]
            if qrels is not None and qid in qrels:
                ex["gold_passages"] = qrels[qid]
            yield n, ex


def doqa_context(para: dict, loc: str, where: str) -> str:
    """A paragraph's context without the CANNOTANSWER token that the QuAC layout appends."""
    ctx = para.get("context")
    if not isinstance(ctx, str):
        raise InputError(f"{loc}: {where} has no context")
    ctx = ctx.rstrip()
    return ctx[: -len(CANNOT)].rstrip() if ctx.endswith(CANNOT) else ctx


def doqa_passage_id(context: str) -> str:
    """The passage id of a DoQA context: a hash of its text. Several dialogs share one context
    (379 train contexts), each under its own paragraph (and paragraph id, where the release gives
    one), so the id must follow the text for the copies to become one passage, and for the corpus
    and each split file to agree on it without reading each other."""
    return "doqa-" + hashlib.blake2b(context.encode("utf-8"), digest_size=8).hexdigest()


def _doqa_paragraphs(path, member, loc: str) -> Iterator[tuple[str, dict, dict]]:
    d = load_json(path, member)
    for di, doc in enumerate(_field(d, "data", loc, 0)):
        for pi, para in enumerate(doc.get("paragraphs", [])):
            yield f"data[{di}].paragraphs[{pi}]", doc, para


def read_doqa(path, member, loc: str, keep_unanswerable: bool = False, counts: dict | None = None) -> Iterator[Row]:
    """DoQA turns; a CANNOTANSWER turn is left out (counted) unless `keep_unanswerable`, and stays
    in the history of the turns after it. Gold: the passage of the paragraph's context."""
    counts = {} if counts is None else counts
    if not keep_unanswerable:
        counts.setdefault(CANNOT, 0)
    for where, _doc, para in _doqa_paragraphs(path, member, loc):
        if "qas" not in para:
            raise InputError(f"{loc}: {where} needs qas")
        gold = doqa_passage_id(doqa_context(para, loc, where))
        hist: list[str] = []
        for qi, qa in enumerate(para["qas"]):
            if "question" not in qa or "id" not in qa:
                raise InputError(f"{loc}: {where}.qas[{qi}] needs id and question")
            ans = (qa.get("orig_answer") or {}).get("text") or ((qa.get("answers") or [{}])[0].get("text"))
            if ans is None:
                raise InputError(f"{loc}: {where}.qas[{qi}] has no answer text")
            if ans != CANNOT or keep_unanswerable:
                yield 0, {"id": str(qa["id"]), "history": list(hist), "question": qa["question"], "target": ans,
                          "gold_passages": [gold]}
            else:
                counts[CANNOT] += 1
            hist += [qa["question"], ans]


def read_doqa_contexts(path, members: list[str], loc_of, counts: dict | None = None) -> Iterator[Row]:
    """The DoQA knowledge base: one passage per distinct context over all `members` (the first
    paragraph's title names it); `counts["duplicate_contexts_merged"]` counts the other copies."""
    counts = {} if counts is None else counts
    counts.setdefault("duplicate_contexts_merged", 0)
    seen: set[str] = set()
    for m in members:
        loc = loc_of(m)
        for where, doc, para in _doqa_paragraphs(path, m, loc):
            ctx = doqa_context(para, loc, where)
            pid = doqa_passage_id(ctx)
            if pid in seen:
                counts["duplicate_contexts_merged"] += 1
                continue
            seen.add(pid)
            yield 0, {"id": pid, "title": doc.get("title") or "", "contents": ctx}
