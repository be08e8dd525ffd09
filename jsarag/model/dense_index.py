"""The dense index: passage embeddings of the frozen passage encoder, in Pyserini's FaissSearcher
layout (`index`: a FAISS inner-product index, row i = line i of passages.jsonl; `docid`: one
passage id per line). Written by the index stage, read by training, evaluation and the baselines.

`index` is a FAISS `IndexScalarQuantizer` with fp16 codes: FaissSearcher reads it with
`faiss.read_index`, and because FAISS writes the codes last, as one contiguous block, the same file
is the [N, d] fp16 embedding matrix at a fixed offset. `DenseIndex` memory-maps that block, so
processes share the page cache instead of each holding a copy. An older fp32 `IndexFlatIP` still
loads (into memory, as fp16).

Where the rows live:
- one process on the CPU: the memory map, scanned in tiles (jsarag/model/search.py);
- one process on a GPU: the whole matrix in that GPU's memory, fp16;
- W training ranks (`shard`): rank r holds rows [r*N/W, (r+1)*N/W) only, on its own device, as
  Atlas does. A search all-gathers the queries, each rank scans its rows and re-scores its best in
  fp32, the candidates are all-gathered and merged: the result is FAISS flat's top-k over all rows.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from jsarag import InputError
from jsarag.model.device import is_cuda
from jsarag.model.encoders import Encoder, passage_text
from jsarag.model.passages import PassageStore
from jsarag.model.search import DEFAULT_BUFFER_BYTES, Scan

INDEX_FILE, DOCID_FILE = "index", "docid"  # Pyserini's FaissSearcher file names
SQ_FOURCC, COUNT_BYTES = b"IxSQ", 8  # FAISS scalar-quantizer index; codes follow a size_t count
RESCORE_MARGIN = 16  # extra fp16 candidates re-scored in fp32
# host bytes per vector element while re-scoring (the fp16 gather, its fp32 copy, the reordered copy),
# and per candidate row (np.unique's sort and inverse): the re-score is chunked to keep them in the budget
RESCORE_BYTES, ROW_BYTES = 2 + 4 + 4, 80


def encode_passages(encoder: Encoder, passages: list[dict], batch_size: int = 16) -> np.ndarray:
    """L2-normalized float32 embeddings of passage_text(p) (inner product = cosine)."""
    vec = encoder.encode([passage_text(p) for p in passages], batch_size=batch_size)
    if not encoder.normalize:
        vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    return vec


def sq_fp16_header(dim: int, ntotal: int) -> bytes:
    """The bytes FAISS writes before the codes of an fp16 inner-product IndexScalarQuantizer holding
    `ntotal` vectors: what follows is ntotal * dim fp16 values, row-major."""
    import faiss

    empty = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    head = faiss.serialize_index(empty).tobytes()[:-COUNT_BYTES]  # drop the zero code count
    return head[:8] + struct.pack("<q", ntotal) + head[16:] + struct.pack("<Q", ntotal * dim * 2)


def write_docids(out_dir: str | Path, docids: Iterable[str]) -> None:
    with open(Path(out_dir) / DOCID_FILE, "w", encoding="utf-8") as f:
        for d in docids:
            f.write(d + "\n")


def write_dense_index(out_dir: str | Path, vectors: np.ndarray, docids: Iterable[str]) -> None:
    """Write [N, d] embeddings (stored fp16) and their docids in the FaissSearcher layout."""
    out_dir = Path(out_dir)
    with open(out_dir / INDEX_FILE, "wb") as f:
        f.write(sq_fp16_header(vectors.shape[1], vectors.shape[0]))
        f.write(np.ascontiguousarray(vectors, dtype=np.float16).tobytes())
    write_docids(out_dir, docids)


def build_small_index(out_dir: str | Path, encoder: Encoder, passages: list[dict], batch_size: int = 16) -> None:
    """Encode a list of passages and write its index in one go (small knowledge bases only)."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_dense_index(out_dir, encode_passages(encoder, passages, batch_size), [p["id"] for p in passages])


def open_matrix(path: Path) -> np.ndarray:
    """The [N, d] fp16 matrix of an index file: memory-mapped from an fp16 scalar-quantizer file,
    read into memory from any other FAISS index."""
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) == 16 and head[:4] == SQ_FOURCC:
        d, n = struct.unpack("<i", head[4:8])[0], struct.unpack("<q", head[8:16])[0]
        off = path.stat().st_size - n * d * 2
        header = sq_fp16_header(d, n) if n >= 0 and d > 0 else b""
        with open(path, "rb") as f:
            ok = off == len(header) and f.read(len(header)) == header
        if not ok:
            raise InputError(f"{path}: not an fp16 inner-product FAISS index of {n} x {d} (truncated or another quantizer)")
        return np.memmap(path, dtype=np.float16, mode="r", offset=off, shape=(n, d))
    import faiss

    try:
        index = faiss.read_index(str(path))
    except RuntimeError as e:
        raise InputError(f"{path}: not a readable FAISS index ({str(e).splitlines()[0][:200]})") from None
    return index.reconstruct_n(0, index.ntotal).astype(np.float16)


class Group(Protocol):
    """The collectives a sharded index needs (jsarag.train.distributed.DataParallel has them)."""
    rank: int
    world: int

    def all_gather(self, t: torch.Tensor) -> list[torch.Tensor]: ...  # equal shapes on every rank

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor: ...  # sum, in place


def shard_rows(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [lo, hi) of rank `rank` of `world`: equal slices, the remainder spread."""
    return rank * n // world, (rank + 1) * n // world


def _gather_rows(group: Group, t: torch.Tensor) -> tuple[list[torch.Tensor], list[int]]:
    """All ranks' `t` ([n_r, ...], n_r may differ): padded all-gather, then unpadded; and the n_r."""
    sizes = [int(s) for s in group.all_gather(torch.tensor([t.shape[0]], device=t.device))]
    pad = torch.zeros((max(sizes) - t.shape[0], *t.shape[1:]), dtype=t.dtype, device=t.device)
    parts = group.all_gather(torch.cat([t, pad]))
    return [p[:n] for p, n in zip(parts, sizes)], sizes


class DenseIndex:
    """The passage embeddings, searched where the model runs (see the module docstring).

    `device`: "cpu" (the memory map) or "cuda:N" (the held rows in that GPU's memory). `shard`: the
    process group of the training ranks, each holding its own rows. `buffer_bytes` bounds the score
    matrix of one search tile."""

    def __init__(self, index_dir: str | Path, device: str = "cpu", expect_rows: int | None = None, shard: Group | None = None,
                 buffer_bytes: int = DEFAULT_BUFFER_BYTES):
        path = Path(index_dir) / INDEX_FILE
        if not path.exists():
            raise InputError(f"{path}: dense index not found")
        matrix = open_matrix(path)
        if expect_rows is not None and expect_rows != matrix.shape[0]:
            raise InputError(f"{path}: the dense index has {matrix.shape[0]} rows but passages.jsonl has {expect_rows}: rebuild the index")
        self._setup(path, matrix, device, shard, buffer_bytes)

    @classmethod
    def from_matrix(cls, matrix, device: str = "cpu", shard: Group | None = None, buffer_bytes: int = DEFAULT_BUFFER_BYTES) -> DenseIndex:
        """An index over an [N, d] fp16 matrix already in memory (numpy, or a torch tensor on `device`)."""
        self = cls.__new__(cls)
        self._setup(Path("<memory>"), matrix, device, shard, buffer_bytes)
        return self

    def _setup(self, path: Path, matrix, device: str, shard: Group | None, buffer_bytes: int) -> None:
        if device == "cuda" or (is_cuda(device) and not torch.cuda.is_available()):
            raise InputError(f"{path}: device {device!r}: a GPU must be named cuda:N (jsarag.model.device.placement) and present")
        self.path, self.device, self.group = path, device, shard if shard is not None and shard.world > 1 else None
        self.ntotal, self.dim = int(matrix.shape[0]), int(matrix.shape[1])
        self.lo, self.hi = shard_rows(self.ntotal, self.group.rank, self.group.world) if self.group else (0, self.ntotal)
        self.scan = Scan(buffer_bytes)
        self.refreshed_at: int | None = None  # the step of the last index refresh (None: the file's rows)
        self.held = self._hold(matrix[self.lo: self.hi])

    def _hold(self, rows, chunk: int = 1 << 16):
        """The held rows: a view of the memory map on the CPU; an fp16 tensor on a GPU, filled chunk by chunk
        (never a host copy of the whole shard)."""
        if not is_cuda(self.device):
            return rows.detach().cpu().numpy() if isinstance(rows, torch.Tensor) else rows
        if isinstance(rows, torch.Tensor):
            return rows.to(self.device, torch.float16)
        out = torch.empty(rows.shape, dtype=torch.float16, device=self.device)
        for s in range(0, rows.shape[0], chunk):
            out[s: s + chunk] = torch.from_numpy(np.array(rows[s: s + chunk], dtype=np.float16)).to(self.device)
        return out

    @property
    def sharded(self) -> bool:
        return self.group is not None

    @property
    def comm_device(self) -> str:
        """Where a sharded search's collective tensors live: this rank's GPU (NCCL), the CPU (gloo)."""
        return self.device if is_cuda(self.device) else "cpu"

    # -- search -----------------------------------------------------------------------------
    def _local(self, q: torch.Tensor, wide: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's best `wide` rows of each query, re-scored exactly: (fp32 scores, global rows), on the CPU."""
        _, rows = self.scan.run(q, self.held, self.lo, wide, self.device)
        q = q.detach()
        # the re-score's buffers within the budget too (measured: RESCORE_BYTES per vector element, ROW_BYTES per row)
        step = max(1, self.scan.budget_bytes // max(1, rows.shape[1] * (RESCORE_BYTES * self.dim + ROW_BYTES)))
        exact = []
        for s in range(0, rows.shape[0], step):
            vec = self._held_vectors(rows[s: s + step] - self.lo)
            exact.append(torch.einsum("qd,qkd->qk", q[s: s + step].float().to(vec.device), vec).cpu())
        return (torch.cat(exact) if exact else torch.empty(0, rows.shape[1])), rows.cpu()

    def search_scores(self, queries: torch.Tensor, k: int, replicated: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k inner products of every query row: (scores float32 [Q, k], rows int64 [Q, k]) on the CPU.

        The scan runs in fp16 in bounded tiles and keeps 2k + 16 candidates per process; those are
        re-scored in fp32, so the result is the exact fp32 top-k unless a true top-k row ranks below
        2k + 16 in fp16. Sharded, this is a collective: every rank calls it, with its own queries, or
        with the same ones when `replicated` (validation), which skips the query gather."""
        k = min(k, self.ntotal)
        wide = min(2 * k + RESCORE_MARGIN, self.ntotal)
        if not self.sharded:
            s, r = self._local(queries, wide)
            best, pos = s.topk(min(k, s.shape[1]), dim=1)
            return best, r.gather(1, pos)
        comm = self.comm_device
        q = queries.detach().float().to(comm)
        if replicated:
            q_all, mine = q, slice(0, q.shape[0])
        else:
            parts, sizes = _gather_rows(self.group, q)
            q_all = torch.cat(parts)
            start = sum(sizes[: self.group.rank])
            mine = slice(start, start + sizes[self.group.rank])
        s, r = self._local(q_all, wide)
        pad = wide - s.shape[1]  # a shard with fewer rows than `wide`
        s = torch.cat([s, torch.full((s.shape[0], pad), float("-inf"))], 1).to(comm)
        r = torch.cat([r, torch.full((r.shape[0], pad), -1, dtype=torch.long)], 1).to(comm)
        s_all = torch.cat(self.group.all_gather(s), 1).cpu()[mine]
        r_all = torch.cat(self.group.all_gather(r), 1).cpu()[mine]
        best, pos = s_all.topk(k, dim=1)
        return best, r_all.gather(1, pos)

    def search(self, queries: torch.Tensor, k: int, replicated: bool = False) -> np.ndarray:
        """Rows of each query's top-k, [Q, k] int64."""
        return self.search_scores(queries, k, replicated)[1].numpy()

    @property
    def peak_score_bytes(self) -> int:
        """The largest score tile any search of this index allocated."""
        return self.scan.peak_score_bytes

    # -- vectors ----------------------------------------------------------------------------
    def _held_vectors(self, local_rows: torch.Tensor) -> torch.Tensor:
        """fp32 vectors of held rows (local numbering), on the held device."""
        if isinstance(self.held, torch.Tensor):
            return self.held[local_rows.to(self.held.device)].float()
        flat = local_rows.reshape(-1).cpu().numpy()
        uniq, inv = np.unique(flat, return_inverse=True)  # sorted reads from the memory map
        vec = np.asarray(self.held[uniq], dtype=np.float32)[inv]
        return torch.from_numpy(vec).reshape(*local_rows.shape, -1)

    def vectors(self, rows: torch.Tensor) -> torch.Tensor:
        """Embeddings of the given global rows, float32 on the CPU, shape rows.shape + (d,). Sharded,
        a collective: every rank asks for its rows, each answers those it holds, and a sum gives all."""
        flat = rows.reshape(-1).cpu()
        if not self.sharded:
            return self._held_vectors(flat).cpu().reshape(*rows.shape, -1)
        comm = self.comm_device
        asks, sizes = _gather_rows(self.group, flat.to(comm))
        ask = torch.cat(asks).cpu()
        out = torch.zeros(ask.shape[0], self.dim, dtype=torch.float32, device=comm)
        held = (ask >= self.lo) & (ask < self.hi)
        if held.any():
            out[held.to(comm)] = self._held_vectors(ask[held] - self.lo).to(comm)
        self.group.all_reduce(out)
        start = sum(sizes[: self.group.rank])
        return out[start: start + flat.shape[0]].cpu().reshape(*rows.shape, -1)

    # -- index refresh ----------------------------------------------------------------------
    def refresh(self, encoder: Encoder, store: PassageStore, step: int, batch_size: int = 64, chunk: int = 4096) -> None:
        """Re-encode the held rows with `encoder` (the prior's current weights, in the compute dtype of
        its device), streamed from the passage store; each rank re-encodes its own shard only."""
        new = np.empty((self.hi - self.lo, self.dim), dtype=np.float16)
        for s in range(self.lo, self.hi, chunk):
            new[s - self.lo: min(s + chunk, self.hi) - self.lo] = encode_passages(encoder, store.get(range(s, min(s + chunk, self.hi))),
                                                                                  batch_size)
        self.held, self.refreshed_at = self._hold(new), step

    def refresh_file(self, folder: str | Path, step: int) -> Path:
        """Where the rows of this process's refresh at `step` are kept (its own file, not the checkpoint)."""
        who = f"rank{self.group.rank}of{self.group.world}" if self.sharded else "rank0of1"
        return Path(folder) / f"index-refresh.step{step}.{who}.npy"

    def save_refresh(self, folder: str | Path) -> Path:
        from jsarag.io import atomic_path

        path = self.refresh_file(folder, self.refreshed_at)
        held = self.held.cpu().numpy() if isinstance(self.held, torch.Tensor) else np.asarray(self.held)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, held)
        return path

    def load_refresh(self, folder: str | Path, step: int) -> None:
        path = self.refresh_file(folder, step)
        if not path.exists():
            raise InputError(f"{path}: the checkpoint records an index refresh at step {step}, but its rows are missing")
        rows = np.load(path, mmap_mode="r")
        if rows.shape != (self.hi - self.lo, self.dim):
            raise InputError(f"{path}: {rows.shape} rows, expected {(self.hi - self.lo, self.dim)} for rows [{self.lo}, {self.hi})")
        self.held, self.refreshed_at = self._hold(np.array(rows)), step
