"""Undo the double encoding of the MS MARCO passage collection, the way ir_datasets does it.

collection.tsv is valid UTF-8, but part of its text was UTF-8 that had been decoded as latin-1 and
encoded again: a right quote U+2019 (bytes e2 80 99) is stored as the three characters
U+00E2 U+0080 U+0099 ("â\\x80\\x99"), an emoji as four. Well-encoded characters sit beside broken
ones, even in one passage, so the text cannot be decoded back as a whole.

ir_datasets (`ir_datasets/datasets/msmarco_passage.py`, `FixEncoding`) repairs it window by
window: for widths 4, 3 and 2, each window holding a character in U+0080..U+00FF is encoded as
latin-1 and decoded as UTF-8; when that gives exactly one character, it replaces the window. With
this rule its passages match the MS MARCO QnA passages, which were never double-encoded. This
module applies the same rule. ftfy (`fix_encoding`) agrees on ordinary mojibake but does more: it
turns lone C1 controls into cp1252 characters and guesses at "Ã " sequences, so it is not used.
"""
from __future__ import annotations

import re

_SUSPECT = "[\x80-\xff]"


def _window(width: int) -> re.Pattern:
    """Any `width` characters with at least one in U+0080..U+00FF."""
    alts = ("." * k + _SUSPECT + "." * (width - 1 - k) for k in range(width - 1, -1, -1))
    return re.compile("|".join(alts))


_WINDOWS = tuple(_window(w) for w in (4, 3, 2))


def repair(text: str) -> str:
    """`text` with each latin-1-decoded UTF-8 sequence turned back into its character."""
    if text.isascii():
        return text
    for pattern in _WINDOWS:
        start = 0
        while (m := pattern.search(text, start)) is not None:
            try:
                fixed = m.group().encode("latin-1").decode("utf-8")
            except UnicodeError:
                fixed = ""
            if len(fixed) == 1:
                text = text[: m.start()] + fixed + text[m.end():]
            start = m.start() + 1
    return text
