"""Preemption: SIGTERM or SIGUSR1 makes training write a checkpoint at the end of the current step
and exit with EXIT_PREEMPTED, a failure, so that Snakemake's `retries` (profiles/slurm) resubmits
the job; the new job resumes from that checkpoint at the exact step.

On SLURM, SIGTERM reaches every process of a job at its time limit (and `--signal=TERM@300`, set
for the train rule, sends it 300 s earlier); a preempted job gets it too. The train rule `exec`s
the trainer so that no shell sits between Snakemake and it: Snakemake waits for a job it runs when
it is itself sent SIGTERM, while a shell would die at once.
"""
from __future__ import annotations

import logging
import signal

log = logging.getLogger("jsarag.train")

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: try again later
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(SystemExit):
    """Raised after the checkpoint of `step` is written; exits the process with EXIT_PREEMPTED."""

    def __init__(self, step: int, signum=None):
        super().__init__(EXIT_PREEMPTED)
        self.step = step
        log.warning("signal %s: checkpoint written at step %d; exiting with %d to be retried", signum, step, EXIT_PREEMPTED)


class StopFlag:
    """Installs the handlers; `requested` turns true on a signal. Handlers are restored on close."""

    def __init__(self):
        self.requested = False
        self.signum = None
        self._old = {}
        for s in SIGNALS:
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: no handler, never preempted
                pass

    def _handle(self, signum, frame):
        self.requested, self.signum = True, signum

    def any_rank(self, dp) -> bool:
        """True when any rank got the signal (all ranks then stop at the same step)."""
        return dp.any(self.requested)

    def close(self):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}
