"""What every `python -m jsarag.<stage>` shares: logging, one parser for the config section a rule
hands its job, and one way to fail (a clear message and a non-zero exit).

SIGTERM (what SLURM and Snakemake send to stop a job) would kill Python without running any
`finally`, leaving the temp files of atomic writes behind; `run_cli` turns it into an exception,
so every `finally` and context manager runs, and the job exits with 128 + 15. Training installs its
own handler while it trains (jsarag/train/preemption.py: checkpoint, then exit 75) and restores
this one afterwards."""
from __future__ import annotations

import json
import logging
import signal
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


class Terminated(SystemExit):
    """Raised by the SIGTERM handler of `run_cli`: unwinds the job (its temp files go) and exits 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def _terminate(signum, frame):
    raise Terminated(signum)


def install_sigterm_handler() -> None:
    """SIGTERM raises Terminated (in the main thread; elsewhere signals cannot be handled)."""
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:
        pass


def run_cli(fn):
    setup_logging()
    install_sigterm_handler()
    try:
        return fn()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Terminated as e:
        print(f"error: stopped by signal {signal.Signals(e.signum).name}; its temp files were removed", file=sys.stderr)
        raise
