"""Preemption: SIGTERM or SIGUSR1 makes training write a checkpoint at the end of the current step
and exit with EXIT_PREEMPTED, a failure, so that Snakemake's `retries` (profiles/slurm) resubmits
the job; the new job resumes from that checkpoint at the exact step.

Every rank installs the handler; after each step the ranks ask whether any of them was signalled
(`any_rank`, one all-reduce), so that all stop at the same step, rank 0 writes the checkpoint while
the others wait at a barrier, and all exit together.

On SLURM, SIGTERM reaches every task of a job's steps at its time limit, and `--signal=TERM@LEAD`
(set for the train rule: jsarag.resources.signal_lead_s, sized from the checkpoint's write time)
sends it LEAD seconds earlier; `scancel --signal=TERM` and a preemption send it too. A multi-GPU job
runs its ranks as srun tasks (jsarag/train/launch.py), so SLURM signals them directly: no launcher
agent in between, whose own shutdown would SIGKILL them 30 s later (torchrun's PContext.close) while
the checkpoint is still being written. The train rule `exec`s its launcher, so that no shell sits
between Snakemake and it: Snakemake waits for a job it runs when it is itself sent SIGTERM, while a
shell would die at once.
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
