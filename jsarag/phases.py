"""Where a training step's time goes: named phases, timed only when a `PhaseTimer` is active
(benchmarks/paper_shape.py); otherwise `phase` costs one check of a global.

On a GPU each phase is timed with CUDA events (the host does not wait: the events are read once, at
`collect`); on the CPU with the wall clock. Phases do not nest."""
from __future__ import annotations

import contextlib
import time

_active: PhaseTimer | None = None


@contextlib.contextmanager
def phase(name: str):
    timer = _active
    if timer is None:
        yield
        return
    start = timer.mark()
    try:
        yield
    finally:
        timer.spans.append((name, start, timer.mark()))


class PhaseTimer:
    """Collects the spans of `phase` blocks while active (`with PhaseTimer(device) as t:`)."""

    def __init__(self, device: str = "cpu"):
        self.cuda = str(device).startswith("cuda")
        self.spans: list[tuple[str, object, object]] = []

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        import torch

        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def __enter__(self) -> PhaseTimer:
        global _active
        _active = self
        return self

    def __exit__(self, *exc) -> None:
        global _active
        _active = None

    def collect(self) -> dict[str, float]:
        """Seconds per phase name since the last collect (summed over its spans); resets."""
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        out: dict[str, float] = {}
        for name, a, b in self.spans:
            sec = a.elapsed_time(b) / 1e3 if self.cuda else b - a
            out[name] = out.get(name, 0.0) + sec
        self.spans = []
        return out
