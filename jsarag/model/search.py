"""Exact inner-product top-k over an fp16 passage matrix, in bounded memory.

The matrix is scanned in tiles of (query chunk x row chunk) whose fp16 score matrix stays within a
byte budget (`index.search_buffer_mb` / `train.common.search_buffer_mb`); each tile keeps its best
`wide` candidates in fp16 (no fp32 copy of the scores), merged into a running top list per query.
The caller re-scores the survivors in fp32, so the result is FAISS flat's top-k unless a true top-k
row ranks below `wide` in fp16.

At paper scale the budget is what makes a search fit: NQ test (3,610 queries) against a 21M-row
matrix is a 152 GB fp16 score matrix, and its fp32 copy another 303 GB.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_BUFFER_BYTES = 1 << 30  # 1 GiB of fp16 scores per tile
CPU_CHUNK_ROWS = 1 << 16  # rows converted from the memory map per tile on the CPU (128 MiB at 1024-d)


@dataclass
class Tiling:
    query_chunk: int
    row_chunk: int

    @property
    def score_bytes(self) -> int:
        """The bytes of one tile's fp16 score matrix: the search buffer."""
        return 2 * self.query_chunk * self.row_chunk


def tiling(n_queries: int, n_rows: int, budget_bytes: int, max_row_chunk: int | None = None) -> Tiling:
    """The tile shape: as many rows per tile as allowed (one read of the matrix per query chunk),
    then as many queries as the budget leaves. A budget below one query's row of scores shrinks the
    row chunk instead, so the bound holds for any budget of at least 2 bytes."""
    if budget_bytes < 2:
        raise ValueError(f"search buffer of {budget_bytes} bytes: needs at least one fp16 score")
    cap = budget_bytes // 2  # fp16 scores the buffer holds
    rows = max(1, min(n_rows, max_row_chunk or n_rows, cap))
    return Tiling(query_chunk=max(1, min(max(n_queries, 1), cap // rows)), row_chunk=rows)


def merge_top(best: tuple[torch.Tensor, torch.Tensor] | None, scores: torch.Tensor, rows: torch.Tensor,
              wide: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge a tile's (scores, global rows) into the running best `wide` of each query."""
    if best is not None:
        scores, rows = torch.cat([best[0], scores], 1), torch.cat([best[1], rows], 1)
    if scores.shape[1] > wide:
        scores, pos = scores.topk(wide, dim=1)
        rows = rows.gather(1, pos)
    return scores, rows


class Scan:
    """Tiled fp16 scan of held rows [lo, lo + n) for the best `wide` rows of each query.
    `peak_score_bytes` records the largest score tile allocated (what the tests bound)."""

    def __init__(self, budget_bytes: int = DEFAULT_BUFFER_BYTES):
        self.budget_bytes = budget_bytes
        self.peak_score_bytes = 0

    def run(self, queries: torch.Tensor, held, lo: int, wide: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
        """queries [Q, d] (any dtype); held: a torch fp16 tensor on `device` or an [n, d] fp16 numpy
        array / memory map (CPU). Returns fp16 scores and int64 global rows [Q, min(wide, n)], on `device`."""
        n = held.shape[0]
        if n == 0 or queries.shape[0] == 0:  # an empty shard (more ranks than rows), or no query
            q = queries.shape[0]
            return torch.empty(q, 0, dtype=torch.float16, device=device), torch.empty(q, 0, dtype=torch.long, device=device)
        on_host = not isinstance(held, torch.Tensor)
        t = tiling(queries.shape[0], n, self.budget_bytes, CPU_CHUNK_ROWS if on_host else None)
        q16 = queries.detach().to(device, torch.float16)
        with warnings.catch_warnings():  # a read-only memory map: nothing writes to it
            warnings.simplefilter("ignore", UserWarning)
            parts = list(self._chunks(q16, held, lo, wide, t, on_host))
        return torch.cat([s for s, _ in parts]), torch.cat([r for _, r in parts])

    def _chunks(self, q16, held, lo, wide, t: Tiling, on_host: bool):
        """Each query chunk's best (fp16 scores, global rows), scanning the held rows tile by tile."""
        n = held.shape[0]
        for qs in range(0, q16.shape[0], t.query_chunk):
            q = q16[qs: qs + t.query_chunk]
            best = None
            for rs in range(0, n, t.row_chunk):
                tile = torch.from_numpy(np.asarray(held[rs: rs + t.row_chunk])) if on_host else held[rs: rs + t.row_chunk]
                s = q @ tile.T  # the score buffer: [query chunk, row chunk] fp16
                self.peak_score_bytes = max(self.peak_score_bytes, s.element_size() * s.nelement())
                ts, tr = s.topk(min(wide, s.shape[1]), dim=1)
                del s
                best = merge_top(best, ts, tr + (lo + rs), wide)
            yield best
