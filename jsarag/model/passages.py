"""Random access to a passage JSONL without holding it in memory.

Row i of the store is line i of the collection file and row i of the dense index. Only a numpy
array of byte offsets (8 bytes a passage) is kept; texts are read on demand.

The offsets file records the size and sampled hash of the passages.jsonl it indexes
(jsarag.fingerprint): a passages.jsonl changed since (cut, appended, edited) is refused at open,
with both sizes and the command that rebuilds the offsets (`python -m jsarag.model.passages FILE`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jsarag import InputError
from jsarag.fingerprint import check, forget, stamp
from jsarag.io import atomic_path


def offsets_path(jsonl: str | Path) -> Path:
    return Path(str(jsonl) + ".offsets.npy")


def rebuild_command(jsonl: str | Path) -> str:
    return (f"python -m jsarag.model.passages {jsonl} (if passages.jsonl was meant to change; else regenerate it: "
            f"snakemake --forcerun prepare_corpus)")


def build_offsets(jsonl: str | Path) -> int:
    """Scan the file once and save the start offset of each non-empty line, with the record of
    the file they index. An empty collection is an error."""
    offs = []
    with open(jsonl, "rb") as f:
        pos = 0
        for line in f:
            if line.strip():
                offs.append(pos)
            pos += len(line)
    if not offs:
        raise InputError(f"{jsonl}: no passages (0 non-blank lines in {pos} bytes)")
    arr = np.asarray(offs, dtype=np.int64)
    out = offsets_path(jsonl)
    forget(out)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)
    stamp(out, {"passages": jsonl}, len(arr))
    return len(arr)


def line_of(path: str | Path, offset: int) -> int:
    """1-based line number of the byte `offset` (error messages only: reads the file up to it)."""
    n, left = 1, offset
    with open(path, "rb") as f:
        while left > 0:
            block = f.read(min(left, 1 << 24))
            if not block:
                break
            n += block.count(b"\n")
            left -= len(block)
    return n


def parse_passage(raw: bytes, path: str | Path, offset: int) -> dict:
    """One passage line; malformed JSON, bad UTF-8 or a missing id/contents names file:line."""
    try:
        p = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        cut = "" if raw.endswith(b"\n") else "; the file ends in the middle of this line (truncated?)"
        raise InputError(f"{path}:{line_of(path, offset)}: malformed passage ({getattr(e, 'msg', e)}){cut}") from None
    if not isinstance(p, dict) or not isinstance(p.get("id"), str) or not isinstance(p.get("contents"), str):
        raise InputError(f"{path}:{line_of(path, offset)}: a passage needs string id and contents")
    return p


class PassageStore:
    def __init__(self, jsonl: str | Path):
        self.path = Path(jsonl)
        if not self.path.is_file():
            raise InputError(f"{self.path}: passage file not found")
        op = offsets_path(jsonl)
        if not op.exists():
            build_offsets(jsonl)
        self.offsets = np.load(op, mmap_mode="r")
        check(op, {"passages": self.path}, rebuild_command(self.path), rows=len(self.offsets))
        if len(self.offsets) == 0:
            raise InputError(f"{self.path}: no passages")
        self._f = open(self.path, "rb")

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, row: int) -> dict:
        row = int(row)
        if not 0 <= row < len(self):
            raise InputError(f"{self.path}: row {row} asked for, the file has {len(self)} passages (an index of another passages.jsonl?)")
        off = int(self.offsets[row])
        self._f.seek(off)
        raw = self._f.readline()
        if not raw:
            raise InputError(f"{self.path}: row {row} starts at byte {off}, past the end of the file: it shrank since its offsets "
                             f"were built; rebuild: {rebuild_command(self.path)}")
        return parse_passage(raw, self.path, off)

    def get(self, rows) -> list[dict]:
        return [self[r] for r in rows]

    def read_range(self, start: int, stop: int) -> list[dict]:
        """Rows [start, stop), read sequentially from the offset of `start`; exactly stop - start
        rows or an InputError (a file shorter than its offsets say)."""
        if not 0 <= start <= stop <= len(self):
            raise InputError(f"{self.path}: rows [{start}, {stop}) asked for, the file has {len(self)}")
        rows: list[dict] = []
        if start == stop:
            return rows
        self._f.seek(int(self.offsets[start]))
        pos = int(self.offsets[start])
        while len(rows) < stop - start:
            raw = self._f.readline()
            if not raw:
                break
            if raw.strip():
                rows.append(parse_passage(raw, self.path, pos))
            pos += len(raw)
        if len(rows) != stop - start:
            raise InputError(f"{self.path}: rows [{start}, {stop}) asked for, only {len(rows)} read before the end of the file "
                             f"(shorter than its offsets say); rebuild: {rebuild_command(self.path)}")
        return rows

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":  # `python -m jsarag.model.passages FILE...`: rebuild the offsets of changed passage files
    import sys

    from jsarag.cli import run_cli

    run_cli(lambda: [print(f"{p}: {build_offsets(p)} passages") for p in sys.argv[1:]])
