"""The dense index: passage embeddings of the frozen passage encoder, in Pyserini's FaissSearcher
layout (`index`: a FAISS inner-product index, row i = line i of passages.jsonl; `docid`: one
passage id per line). Written by the index stage, read by training, evaluation and the baselines.

`index` is a FAISS `IndexScalarQuantizer` with fp16 codes: FaissSearcher reads it with
`faiss.read_index`, and because FAISS writes the codes last, as one contiguous block, the same file
is the [N, d] fp16 embedding matrix at a fixed offset. `DenseIndex` memory-maps that block, so
processes share the page cache instead of each holding a copy; on a GPU it holds it in GPU memory
(split across GPUs when several) and searches by matmul and top-k. An older fp32 `IndexFlatIP`
still loads (into memory, as fp16).
"""
from __future__ import annotations

import struct
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from jsarag import InputError
from jsarag.model.encoders import Encoder, passage_text
from jsarag.model.passages import PassageStore

INDEX_FILE, DOCID_FILE = "index", "docid"  # Pyserini's FaissSearcher file names
SQ_FOURCC, COUNT_BYTES = b"IxSQ", 8  # FAISS scalar-quantizer index; codes follow a size_t count
RESCORE_MARGIN = 16  # extra fp16 candidates re-scored in fp32
CPU_CHUNK_ROWS = 1 << 16  # rows converted to fp32 per matmul on the CPU (256 MiB at 1024-d)


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


def topk_merge(scores: list[torch.Tensor], rows: list[torch.Tensor], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge per-block top-k (scores, global rows) into the overall top-k, best first."""
    s, r = torch.cat(scores, 1), torch.cat(rows, 1)
    best, pos = s.topk(min(k, s.shape[1]), dim=1)
    return best, r.gather(1, pos)


class DenseIndex:
    """The passage embeddings, searched where the model runs.

    device "cpu": the fp16 matrix stays memory-mapped; a search multiplies it block by block in fp16
    (no fp32 copy) and keeps each block's top candidates. device "cuda": the matrix is copied to GPU memory in fp16, split in
    equal row blocks over every visible GPU (or handed to FAISS on the GPUs when `use_faiss_gpu`
    and faiss has GPU support); a search is one fp16 matmul and top-k per GPU, the per-GPU top-k
    merged on the first."""

    def __init__(self, index_dir: str | Path, device: str = "cpu", expect_rows: int | None = None, use_faiss_gpu: bool = False):
        path = Path(index_dir) / INDEX_FILE
        if not path.exists():
            raise InputError(f"{path}: dense index not found")
        self.path, self.matrix = path, open_matrix(path)
        if expect_rows is not None and expect_rows != self.ntotal:
            raise InputError(f"{path}: the dense index has {self.ntotal} rows but passages.jsonl has {expect_rows}: rebuild the index")
        self.device, self.blocks, self.faiss_gpu = "cpu", [], []
        if device.startswith("cuda"):
            self.to_device(device, use_faiss_gpu)

    @classmethod
    def from_matrix(cls, matrix) -> DenseIndex:
        """An index over an [N, d] fp16 matrix already in memory: a numpy array (searched as on the
        CPU) or a CUDA tensor (searched on that GPU). For benchmarks and in-memory knowledge bases."""
        self = cls.__new__(cls)
        self.path, self.matrix, self.blocks, self.faiss_gpu, self.device = Path("<memory>"), matrix, [], [], "cpu"
        if isinstance(matrix, torch.Tensor):
            self.blocks, self.device = [(0, matrix)], str(matrix.device)
        return self

    @property
    def ntotal(self) -> int:
        return self.matrix.shape[0]

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    def to_device(self, device: str, use_faiss_gpu: bool = False) -> None:
        """Hold the matrix in GPU memory, in equal row blocks over all visible GPUs: torch fp16
        tensors searched by matmul + top-k, or (use_faiss_gpu, with a GPU build of faiss) one
        fp16 GpuIndexFlatIP per GPU. Both are filled block by block, never as one fp32 host copy."""
        if not torch.cuda.is_available():
            raise InputError(f"{self.path}: device {device!r} asked for, but no CUDA device is present")
        devices = [f"cuda:{g}" for g in range(torch.cuda.device_count())]
        import faiss

        if use_faiss_gpu and hasattr(faiss, "GpuIndexFlatIP") and faiss.get_num_gpus() > 0:
            self.faiss_gpu = []
            step = -(-self.ntotal // len(devices))
            for g, start in enumerate(range(0, self.ntotal, step)):
                cfg = faiss.GpuIndexFlatConfig()
                cfg.device, cfg.useFloat16 = g, True
                res = faiss.StandardGpuResources()  # must outlive the index: kept beside it
                index = faiss.GpuIndexFlatIP(res, self.dim, cfg)
                for s in range(start, min(start + step, self.ntotal), CPU_CHUNK_ROWS):
                    index.add(np.asarray(self.matrix[s: min(s + CPU_CHUNK_ROWS, start + step)], dtype=np.float32))
                self.faiss_gpu.append((start, index, res))
        else:
            self.hold_blocks(devices)
        self.device = devices[0]

    def hold_blocks(self, devices: list[str]) -> None:
        """Copy the fp16 matrix into equal row blocks, one per device (searched by matmul + top-k)."""
        step = -(-self.ntotal // len(devices))
        self.blocks = [(s, torch.from_numpy(np.array(self.matrix[s: s + step])).to(dev))
                       for dev, s in zip(devices, range(0, self.ntotal, step))]

    def search_scores(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k inner products of every query row: (scores float32 [Q, k], rows int64 [Q, k]) on the CPU.

        The scan runs in fp16 (no fp32 copy of the matrix, on the CPU as on a GPU) and keeps
        2k + 16 candidates; those are re-scored in fp32, so the result is the exact fp32 top-k
        unless a true top-k row ranks below 2k + 16 in fp16."""
        k = min(k, self.ntotal)
        wide = min(2 * k + RESCORE_MARGIN, self.ntotal)
        q = queries.detach()
        parts_s, parts_r = [], []
        if self.faiss_gpu:
            for start, index, _ in self.faiss_gpu:
                s, r = index.search(np.ascontiguousarray(q.float().cpu().numpy()), min(wide, index.ntotal))
                parts_s.append(torch.from_numpy(s))
                parts_r.append(torch.from_numpy(r) + start)
        elif self.blocks:
            for start, block in self.blocks:
                s, r = (q.to(block.device, torch.float16) @ block.T).float().topk(min(wide, block.shape[0]), dim=1)
                parts_s.append(s.to(self.device))
                parts_r.append(r.to(self.device) + start)
        else:
            qh = q.cpu().half()
            with warnings.catch_warnings():  # the memory map is read-only; nothing writes to it
                warnings.simplefilter("ignore", UserWarning)
                for start in range(0, self.ntotal, CPU_CHUNK_ROWS):
                    block = torch.from_numpy(np.asarray(self.matrix[start: start + CPU_CHUNK_ROWS]))
                    s, r = (qh @ block.T).float().topk(min(wide, block.shape[0]), dim=1)
                    parts_s.append(s)
                    parts_r.append(r + start)
        _, rows = topk_merge(parts_s, parts_r, wide)
        rows = rows.cpu()
        exact = torch.einsum("qd,qkd->qk", q.float().cpu(), self.vectors(rows))
        best, pos = exact.topk(k, dim=1)
        return best, rows.gather(1, pos)

    def search(self, queries: torch.Tensor, k: int) -> np.ndarray:
        """Rows of each query's top-k, [Q, k] int64."""
        return self.search_scores(queries, k)[1].numpy()

    def vectors(self, rows: torch.Tensor) -> torch.Tensor:
        """Embeddings of the given rows, float32, shape rows.shape + (d,)."""
        flat = rows.reshape(-1).cpu()
        if len(self.blocks) == 1:
            block = self.blocks[0][1]
            return block[flat.to(block.device)].float().cpu().reshape(*rows.shape, -1)
        uniq, inv = np.unique(flat.numpy(), return_inverse=True)  # sorted reads from the memory map
        vec = np.asarray(self.matrix[uniq], dtype=np.float32)[inv]
        return torch.from_numpy(vec).reshape(*rows.shape, -1)

    def rebuild(self, encoder: Encoder, store: PassageStore, batch_size: int = 16, chunk: int = 4096) -> None:
        """Index refresh: re-encode every passage with `encoder` (streamed) and replace the matrix
        (held in memory as fp16 from then on; the file on disk is not touched)."""
        new = np.empty((len(store), encoder.dim), dtype=np.float16)
        for s in range(0, len(store), chunk):
            new[s: s + chunk] = encode_passages(encoder, store.get(range(s, min(s + chunk, len(store)))), batch_size)
        self.set_matrix(new)

    def set_matrix(self, matrix: np.ndarray) -> None:
        """Replace the passage matrix (index refresh, or its restore from a checkpoint)."""
        self.matrix = np.asarray(matrix, dtype=np.float16)
        if self.device != "cpu":
            use_faiss_gpu, self.blocks, self.faiss_gpu = bool(self.faiss_gpu), [], []
            self.to_device(self.device, use_faiss_gpu)
