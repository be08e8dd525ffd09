"""Answer normalization (SQuAD) and answer containment, shared by data filtering and metrics."""
from __future__ import annotations

import re
import string
from collections.abc import Iterable

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    """SQuAD normalization: lower case, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def tokens(text: str) -> list[str]:
    return normalize(text).split()


def has_answer(text: str, answers: Iterable[str]) -> bool:
    """True if some answer's normalized token sequence occurs in the text's, on word boundaries."""
    padded = f" {normalize(text)} "
    for a in answers:
        na = normalize(a)
        if na and f" {na} " in padded:
            return True
    return False
