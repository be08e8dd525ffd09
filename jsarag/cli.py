"""What every `python -m jsarag.<stage>` shares: logging, one parser for the config section a rule
hands its job, and one way to fail (a clear message and a non-zero exit)."""
from __future__ import annotations

import json
import logging
import sys

from jsarag import InputError


def setup_logging() -> logging.Logger:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    return logging.getLogger("jsarag")


def read_params(text: str, cls=None, where: str = "--params"):
    """Parse a job's `--params` JSON: into the typed section `cls` (a jsarag.config.Section) when
    given, else a plain mapping. Malformed JSON, a wrong key or a wrong type is an InputError."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: malformed JSON at char {e.pos} ({e.msg})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return cls.from_dict(obj, where) if cls is not None else obj


def run_cli(fn):
    setup_logging()
    try:
        return fn()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
