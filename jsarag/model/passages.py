"""Random access to a passage JSONL without holding it in memory.

Row i of the store is line i of the collection file and row i of the dense index. Only a numpy
array of byte offsets (8 bytes a passage) is kept; texts are read on demand.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jsarag.io import atomic_path


def offsets_path(jsonl: str | Path) -> Path:
    return Path(str(jsonl) + ".offsets.npy")


def build_offsets(jsonl: str | Path) -> int:
    """Scan the file once and save the start offset of each non-empty line."""
    offs = []
    with open(jsonl, "rb") as f:
        pos = 0
        for line in f:
            if line.strip():
                offs.append(pos)
            pos += len(line)
    arr = np.asarray(offs, dtype=np.int64)
    with atomic_path(offsets_path(jsonl)) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)
    return len(arr)


class PassageStore:
    def __init__(self, jsonl: str | Path):
        self.path = Path(jsonl)
        op = offsets_path(jsonl)
        if not op.exists():
            build_offsets(jsonl)
        self.offsets = np.load(op, mmap_mode="r")
        self._f = open(self.path, "rb")

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, row: int) -> dict:
        self._f.seek(int(self.offsets[int(row)]))
        return json.loads(self._f.readline())

    def get(self, rows) -> list[dict]:
        return [self[r] for r in rows]

    def close(self):
        self._f.close()
