"""Stream a JSON object of columns, `{"col": {"row": value, ...}, ...}` (the MS MARCO QnA v2.1 layout),
one entry at a time: memory holds one value, not the file (train_v2.1.json is ~17 GB once unpacked,
most of it the `passages` column). Standard library only: json.JSONDecoder.raw_decode on a sliding
buffer."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO

from jsarag import InputError
from jsarag.io import COMPRESSED_ERRORS

_WS = " \t\r\n"
_DECODER = json.JSONDecoder()


class _Buffer:
    def __init__(self, f: IO[str], loc: str, chunk: int):
        self.f, self.loc, self.chunk = f, loc, chunk
        self.buf, self.pos, self.base, self.eof = "", 0, 0, False
        self.lines_before = 0  # newlines in the part of the file dropped from the buffer

    def more(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.f.read(self.chunk)
        except UnicodeDecodeError as e:
            raise InputError(f"{self.loc}: not UTF-8 (byte {e.start} of a read block near character {self.base + len(self.buf)})") from None
        except COMPRESSED_ERRORS as e:  # a gzip member that ends early or is corrupt
            raise InputError(f"{self.loc}: truncated or corrupt compressed data near character {self.base + len(self.buf)} "
                             f"(line {self.line()}): {e}") from None
        if not data:
            self.eof = True
            return False
        self.base += self.pos
        self.lines_before += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos:] + data
        self.pos = 0
        return True

    def line(self) -> int:
        """1-based line of the read position (counted over what has been read so far)."""
        return self.lines_before + self.buf.count("\n", 0, self.pos) + 1

    def error(self, what: str):
        return InputError(f"{self.loc}: malformed JSON at character {self.base + self.pos} (line {self.line()}): {what}")

    def peek(self) -> str:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                raise self.error("unexpected end of file")

    def expect(self, chars: str) -> str:
        c = self.peek()
        if c not in chars:
            raise self.error(f"expected one of {chars!r}, got {c!r}")
        self.pos += 1
        return c

    def value(self):
        self.peek()
        while True:
            try:
                v, end = _DECODER.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:  # a number cut at the buffer's end would parse short
                    self.pos = end
                    return v
            except json.JSONDecodeError as e:
                if self.eof:
                    raise self.error(e.msg) from None
            self.more()  # at the end of the file, decode once more, then fail or return


def iter_columns(f: IO[str], loc: str, columns: set[str], chunk: int = 1 << 20) -> Iterator[tuple[str, str, object]]:
    """(column, row key, value) for every entry of the wanted columns, in file order. Other columns
    are parsed entry by entry and dropped."""
    b = _Buffer(f, loc, chunk)
    b.expect("{")
    if b.peek() == "}":
        return
    while True:
        col = b.value()
        if not isinstance(col, str):
            raise b.error("expected a column name")
        b.expect(":")
        b.expect("{")
        if b.peek() != "}":
            while True:
                key = b.value()
                if not isinstance(key, str):
                    raise b.error("expected a row key")
                b.expect(":")
                v = b.value()
                if col in columns:
                    yield col, key, v
                if b.expect(",}") == "}":
                    break
        else:
            b.pos += 1
        if b.expect(",}") == "}":
            return
