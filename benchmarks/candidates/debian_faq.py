"""The Debian FAQ (Debian package debian-faq) as a candidate grounded dataset, in the generic JSONL
formats (jsarag/data/generic.py): a corpus of FAQ sections and one dialog example per question.

It mirrors the Perl FAQ dataset (jsarag/data/perlfaq.py: corpus `perl_pod`, dataset `perlfaq`) on
the one English rendering the package ships as text, usr/share/doc/debian/FAQ/debian-faq.en.txt.gz
(DocBook rendered to wrapped plain text). Its layout: front matter and a table of contents (which
lists every question, like perltoc: left out), then `Chapter N. TITLE` and numbered headings
`N.M. HEADING` / `N.M.K. HEADING` at column 0 (a heading may wrap onto more column-0 lines, up to a
blank line), their text indented; a chapter may end with a rule of dashes and its footnotes `^[1]`.

Corpus (`{"id", "title", "contents"}`, one record per section): every numbered section, and a
chapter's text before its first section (id `debfaq/N`). The id is `debfaq/` + the section number
(numbers are unique, so no `~2`); the title is the chapter's title and the heading is not in the
contents (the heading is the question: it would make retrieval trivial). Footnote blocks and the
`^[n]` markers are dropped; paragraphs are whitespace-normalized and joined by blank lines.

Dialog (`{"id", "history", "question", "target", "gold_passages"}`): one example per section whose
heading asks a question (contains `?`): question = the heading, target = the first `--target-words`
words of the answer, history empty, gold = that section's passages `ID#0, ID#1, ...`, cut as the
corpus reader will cut them (jsarag.data.corpora.split_words at `--passage-words`, which the config's
`passage_words` must equal). A question section without text is dropped and counted.

  python benchmarks/candidates/debian_faq.py debian-faq_11.1_all.deb --corpus C.jsonl --dialog D.jsonl
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from dataclasses import dataclass, field

from jsarag.data.corpora import split_words
from jsarag.data.debian import open_member
from jsarag.io import atomic_open

MEMBER = "usr/share/doc/debian/FAQ/debian-faq.en.txt.gz"
CHAPTER = re.compile(r"Chapter\s+(\d+)\.\s+(.+)")
SECTION = re.compile(r"(\d+(?:\.\d+)+)\.\s+(.+)")
RULE = re.compile(r"-{10,}")
MARKER = re.compile(r"\s*\^\[\d+\]")


@dataclass
class Section:
    number: str
    heading: str  # "" for a chapter's text before its first section
    chapter: str  # the chapter's title
    line: int
    paragraphs: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"debfaq/{self.number}"

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs)


def sections(text: str, counts: dict) -> list[Section]:
    """The chapters' intros and numbered sections, in document order."""
    lines = text.splitlines()
    i = next((n for n, ln in enumerate(lines) if CHAPTER.fullmatch(ln.strip())), None)
    if i is None:
        sys.exit(f"{MEMBER}: no 'Chapter 1.' heading")
    out: list[Section] = []
    cur, para, in_notes = None, [], False

    def end_paragraph():
        if para and cur is not None and not in_notes:
            cur.paragraphs.append(" ".join(MARKER.sub("", " ".join(para)).split()))
        para.clear()

    while i < len(lines):
        ln = lines[i]
        if ln[:1] and not ln[0].isspace():  # a heading (its wrapped lines up to the blank line) or a rule
            end_paragraph()
            start, head = i + 1, [ln]
            while i + 1 < len(lines) and lines[i + 1][:1] and not lines[i + 1][0].isspace():
                i += 1
                head.append(lines[i])
            head = " ".join(" ".join(head).split())
            if RULE.fullmatch(head):
                in_notes = True
                counts["footnote_blocks"] += 1
            elif m := CHAPTER.fullmatch(head):
                in_notes, chapter = False, m.group(2)
                cur = Section(m.group(1), "", chapter, start)
                out.append(cur)
            elif m := SECTION.fullmatch(head):
                in_notes = False
                cur = Section(m.group(1), m.group(2), chapter, start)
                out.append(cur)
            else:
                sys.exit(f"{MEMBER}:{start}: unexpected column-0 line {head!r}")
        elif ln.strip():
            para.append(ln.strip())
        else:
            end_paragraph()
        i += 1
    end_paragraph()
    return [s for s in out if s.heading or s.paragraphs]  # a chapter without intro text has no record


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("deb", help="debian-faq_VERSION_all.deb (apt-get download debian-faq=11.1)")
    ap.add_argument("--corpus", required=True, help="output corpus JSONL")
    ap.add_argument("--dialog", required=True, help="output dialog JSONL")
    ap.add_argument("--passage-words", type=int, default=100, help="the corpus config's passage_words (default 100)")
    ap.add_argument("--target-words", type=int, default=32, help="target: the answer's first N words (default 32)")
    a = ap.parse_args(argv)

    with open_member(a.deb, MEMBER) as f:
        text = gzip.decompress(f.read()).decode("utf-8")
    counts = {"footnote_blocks": 0, "sections": 0, "chapter_intros": 0, "question_sections": 0,
              "examples": 0, "empty_answer": 0, "passages": 0}
    secs = sections(text, counts)
    with atomic_open(a.corpus) as c, atomic_open(a.dialog) as d:  # both files or neither
        for s in secs:
            counts["sections" if s.heading else "chapter_intros"] += 1
            c.write(json.dumps({"id": s.id, "title": s.chapter, "contents": s.text}, ensure_ascii=False) + "\n")
            n = len(split_words(s.text, a.passage_words))
            counts["passages"] += n
            if "?" not in s.heading:
                continue
            counts["question_sections"] += 1
            words = s.text.split()
            if not words:
                counts["empty_answer"] += 1
                continue
            counts["examples"] += 1
            d.write(json.dumps({"id": s.id, "history": [], "question": s.heading,
                                "target": " ".join(words[: a.target_words]),
                                "gold_passages": [f"{s.id}#{k}" for k in range(n)]}, ensure_ascii=False) + "\n")
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
