"""One way for every `python -m jsarag.<stage>` to fail: a clear message and a non-zero exit."""
from __future__ import annotations

import logging
import sys

from jsarag import InputError


def setup_logging() -> logging.Logger:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    return logging.getLogger("jsarag")


def run_cli(fn):
    setup_logging()
    try:
        return fn()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
