"""Read a named member out of a downloaded file: a plain or gzipped file, a zip/wheel/jar (also one
nested inside another, like the Anserini jar inside the pyserini wheel), a tar archive, or a
Debian package (.deb: the files of its data.tar, jsarag.data.debian).

A member is found by its exact name, or else by its normalized path: `./collection.tsv` (how
`tar -czf x.tar.gz ./collection.tsv` stores it) answers to `collection.tsv`, and the reverse."""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import posixpath
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from jsarag import InputError
from jsarag.io import COMPRESSED_ERRORS

_NESTED = (".jar", ".zip", ".whl")


def _norm(name: str) -> str:
    return posixpath.normpath(name.lstrip("/"))


def match_member(names: list[str], member: str, where: str) -> str | None:
    """The archive's own name for `member`: itself when present, else the one file whose
    normalized path is the same (None when there is none; two such files are an error)."""
    if member in names:
        return member
    want = _norm(member)
    hits = sorted({n for n in names if not n.endswith("/") and _norm(n) == want})
    if len(hits) > 1:
        raise InputError(f"{where}: member {member!r} is ambiguous: the archive holds {', '.join(map(repr, hits))}")
    return hits[0] if hits else None


def _find_in_zip(zf: zipfile.ZipFile, member: str, where: str) -> IO[bytes]:
    names = zf.namelist()
    if (name := match_member(names, member, where)) is not None:
        return zf.open(name)
    for n in sorted(names):
        if n.lower().endswith(_NESTED):
            inner = zipfile.ZipFile(io.BytesIO(zf.read(n)))
            if (name := match_member(inner.namelist(), member, f"{where}!{n}")) is not None:
                return inner.open(name)
    raise InputError(f"{where}: no member {member!r} (also searched nested jars/zips)")


@contextlib.contextmanager
def open_binary(path: str | Path, member: str | None = None) -> Iterator[IO[bytes]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if member is None:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as f:
            yield f
        return
    from jsarag.data import debian

    if debian.is_deb(path):
        with debian.open_member(path, member) as f:
            yield gzip.GzipFile(fileobj=f) if member.endswith(".gz") else f
        return
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            f = _find_in_zip(zf, member, str(path))
            with f:
                yield gzip.GzipFile(fileobj=f) if member.endswith(".gz") else f
        return
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tf:
            files = {m.name: m for m in tf.getmembers() if not m.isdir()}
            name = match_member(list(files), member, str(path))
            f = tf.extractfile(files[name]) if name is not None else None
            if f is None:
                raise InputError(f"{path}: no member {member!r}")
            with f:
                yield gzip.GzipFile(fileobj=f) if member.endswith(".gz") else f
        return
    raise InputError(f"{path}: not a zip, tar or .deb archive, cannot read member {member!r}")


class Utf8Lines:
    """UTF-8 text read from a binary stream line by line, so that bad bytes name their line.
    Iterating yields lines with their line ends (what csv.reader wants); read() returns the rest."""

    def __init__(self, f: IO[bytes], loc: str):
        self.f, self.loc, self.line = f, loc, 0

    def __iter__(self) -> Iterator[str]:
        with compressed_errors(self.loc, self):
            for raw in self.f:
                self.line += 1
                yield decode(raw, self.loc, self.line)

    def read(self) -> str:
        with compressed_errors(self.loc, self):
            return decode(self.f.read(), self.loc, self.line + 1)


@contextlib.contextmanager
def compressed_errors(loc: str, at=None):
    """A gzip stream that ends early (EOFError) or is corrupt names loc:line instead of a traceback."""
    try:
        yield
    except COMPRESSED_ERRORS as e:
        line = f":{at.line + 1}" if at is not None else ""
        raise InputError(f"{loc}{line}: truncated or corrupt compressed data ({e})") from None


def decode(data: bytes, loc: str, first_line: int = 1) -> str:
    """data as UTF-8; bad bytes raise InputError naming loc:line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + data.count(b"\n", 0, e.start)
        raise InputError(f"{loc}:{line}: not UTF-8 (bad byte 0x{data[e.start]:02x})") from None


@contextlib.contextmanager
def open_text(path: str | Path, member: str | None = None) -> Iterator[Utf8Lines]:
    with open_binary(path, member) as f:
        yield Utf8Lines(f, where(path, member))


def tab_pairs(path: str | Path, member: str | None, loc: str, what: str, need_text: bool = True) -> Iterator[tuple[int, str, str]]:
    """(line number, key, text) of each non-blank `key<TAB>text` line (MS MARCO's collection and
    queries); a line without both names `loc`:line and what was expected."""
    with open_text(path, member) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            key, tab, text = line.partition("\t")
            if not tab or not key or (need_text and not text.strip()):
                raise InputError(f"{loc}:{n}: expected {what}")
            yield n, key, text


def where(path: str | Path, member: str | None) -> str:
    """How errors name a location: file, or file!member."""
    return f"{path}!{member}" if member else str(path)


def load_json(path: str | Path, member: str | None = None):
    """One JSON document (a small file: ovos summaries, DoQA); bad UTF-8 or JSON names file:line."""
    loc = where(path, member)
    with open_binary(path, member) as f, compressed_errors(loc):
        text = decode(f.read(), loc)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{loc}:{e.lineno}: malformed JSON ({e.msg})") from None
