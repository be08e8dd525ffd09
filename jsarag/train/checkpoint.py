"""The checkpoint files of a training run (`runs/<dataset>/<method>/seed<N>/checkpoint/`), written
so that a node that dies at any moment leaves one to resume from.

- `last.pt` is the newest checkpoint and `previous.pt` the one before it. A save writes a temp file
  beside them, fsyncs it, moves last.pt to previous.pt, renames the temp file to last.pt and fsyncs
  the folder (jsarag.io.atomic_path with fsync): at every moment a complete checkpoint is on disk.
- A resume reads last.pt. When it cannot be read (torch.load raises, the zip is truncated, or a
  member fails its CRC-32: a torn write), it says so in the log and reads previous.pt; the torn file
  is moved aside to `unreadable.pt`, so that the next save keeps previous.pt. All ranks read the
  same file: a rank that cannot read it makes every rank go to the next one (`dp.any`).
- Temp files (`.*.tmp`) left in the folder by a killed writer are removed when training starts.
- The rows of an index refresh are not in a checkpoint: each rank keeps its own file beside them
  (`index-refresh.step*.rank*of*.npy`, jsarag.model.dense_index). A checkpoint names the step of its
  rows and records the steps named by both files on disk (`refresh_steps`), so that a resumed run
  keeps the rows of both checkpoints and removes the others.

What a checkpoint holds is what a resume needs (jsarag.train.loop.Trainer.save_checkpoint): the
trainable parameters only (LoRA, the retrievers; never the frozen base), their AdamW state, the
schedule, the method state (the MIS cache), the log rows, the random states and the best validated
state when `keep_best` is set. `checkpoint_bytes` gives its size from the parameter counts.
"""
from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

import torch

from jsarag import InputError
from jsarag.io import atomic_path

log = logging.getLogger("jsarag.train")

LATEST, PREVIOUS, UNREADABLE = "last.pt", "previous.pt", "unreadable.pt"
REQUIRED = ("fingerprint", "step", "model", "optimizer", "scheduler", "state", "log", "rng")


class Unreadable(Exception):
    """A checkpoint file that exists but cannot be resumed from."""


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint at `path`, on the host. Raises Unreadable when the file is truncated or torn
    (its zip is cut short, or a member's CRC-32 does not match: torch.load alone does not check
    them, and zeroed pages in the middle would load as wrong weights) or is not a checkpoint."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
        if bad is not None:
            raise Unreadable(f"{path}: member {bad} fails its CRC-32")
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Unreadable:
        raise
    except Exception as e:  # what a torn file raises varies: BadZipFile, RuntimeError, EOFError, UnpicklingError, OSError
        raise Unreadable(f"{path}: {type(e).__name__}: {e}") from None
    missing = [k for k in REQUIRED if k not in ck] if isinstance(ck, dict) else list(REQUIRED)
    if missing:
        raise Unreadable(f"{path}: not a checkpoint (no {', '.join(missing)})")
    return ck


class CheckpointFiles:
    """last.pt and previous.pt of one run. Every rank holds one and makes the same calls, so that
    each knows which refresh rows the files on disk name; only rank 0 writes."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.refresh_steps: dict[str, int | None] = {}  # file on disk -> the index-refresh step it names

    @property
    def latest(self) -> Path:
        return self.folder / LATEST

    @property
    def previous(self) -> Path:
        return self.folder / PREVIOUS

    def remove_stale_temps(self) -> list[Path]:
        """Remove the temp files of writes that never finished (a killed job's); returns them."""
        stale = sorted(self.folder.glob(".*.tmp")) if self.folder.is_dir() else []
        for p in stale:
            log.warning("%s: removing a temp file left by a killed writer (%.1f MB)", p, p.stat().st_size / 1e6)
            p.unlink()
        return stale

    def kept_refresh_steps(self) -> set[int]:
        """The index-refresh steps whose rows a checkpoint on disk needs."""
        return {s for s in self.refresh_steps.values() if s is not None}

    def write(self, ck: dict, is_writer: bool = True) -> None:
        """Save `ck` as last.pt, the last one becoming previous.pt. Every rank calls it (the
        bookkeeping); the rank with `is_writer` writes."""
        steps = dict(self.refresh_steps)
        if LATEST in steps:
            steps[PREVIOUS] = steps[LATEST]
        steps[LATEST] = ck.get("index_refresh_step")
        ck["refresh_steps"] = steps
        if is_writer:
            with atomic_path(self.latest, fsync=True) as tmp:
                torch.save(ck, tmp)
                if self.latest.exists():  # the new one is complete: the last one becomes the previous one
                    os.replace(self.latest, self.previous)
        self.refresh_steps = steps

    def load(self, dp) -> tuple[dict, Path] | None:
        """The newest checkpoint that every rank can read, and its path; None when there is none.
        Raises InputError when checkpoints exist and none can be read."""
        failures = []
        for path in (self.latest, self.previous):
            exists, ck, why = path.exists(), None, None
            if exists:
                try:
                    ck = read_checkpoint(path)
                except Unreadable as e:
                    why = str(e)
            if not dp.any(ck is None):
                if path == self.latest:
                    self.refresh_steps = ck.get("refresh_steps", {LATEST: ck.get("index_refresh_step")})
                else:  # the one before it is gone: previous.pt was last.pt when it was written
                    self.refresh_steps = {PREVIOUS: ck.get("index_refresh_step")}
                if failures:
                    log.warning("resuming from %s (step %d) instead", path, ck["step"])
                elif path == self.previous:
                    log.warning("no %s (a save was cut short after it moved the last one): resuming from %s (step %d)",
                                LATEST, path, ck["step"])
                return ck, path
            if dp.any(exists and ck is None):  # it is there, and some rank cannot read it
                failures.append(why or f"{path}: unreadable on another rank")
                log.warning("cannot resume from %s", failures[-1])
                if path == self.latest and dp.is_main and exists:  # the next save must not turn it into previous.pt
                    os.replace(path, self.folder / UNREADABLE)
        if failures:
            raise InputError("no checkpoint can be read: " + "; ".join(failures) + f"; remove {self.folder} to start from step 0")
        return None

    def discard(self) -> None:
        """Remove both checkpoints (they belong to another config); rank 0 calls it."""
        for p in (self.latest, self.previous):
            p.unlink(missing_ok=True)
        self.refresh_steps = {}


def mistral_7b_lora_params(r: int = 8) -> int:
    """LoRA rank r on q, k, v, o, gate, up and down of Mistral-7B (32 layers, 4096-d, 8 KV heads of
    128, MLP 14336): r x (in + out) per adapted linear layer."""
    h, kv, mlp = 4096, 8 * 128, 14336
    dims = [(h, h), (h, kv), (h, kv), (h, h), (h, mlp), (h, mlp), (mlp, h)]
    return 32 * sum(r * (i + o) for i, o in dims)


def checkpoint_bytes(trainable_params: int, param_bytes: int = 4, adam_moments: int = 2) -> int:
    """Bytes of the tensors of a checkpoint: the trainable parameters and AdamW's two moments of each
    (fp32). The rest (schedule, MIS cache, log rows, random states) is small, and measured."""
    return trainable_params * param_bytes * (1 + adam_moments)
