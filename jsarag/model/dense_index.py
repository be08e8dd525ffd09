"""The dense index: passage embeddings of the frozen passage encoder, in Pyserini's FaissSearcher
layout (`index`: a FAISS inner-product index, row i = line i of passages.jsonl; `docid`: one
passage id per line). Written by the index stage, read by training, evaluation and the baselines."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np
import torch

from jsarag import InputError
from jsarag.model.encoders import Encoder, passage_text
from jsarag.model.passages import PassageStore

INDEX_FILE, DOCID_FILE = "index", "docid"  # Pyserini's FaissSearcher file names


def encode_passages(encoder: Encoder, passages: list[dict], batch_size: int = 16) -> np.ndarray:
    """L2-normalized float32 embeddings of passage_text(p) (inner product = cosine)."""
    vec = encoder.encode([passage_text(p) for p in passages], batch_size=batch_size)
    if not encoder.normalize:
        faiss.normalize_L2(vec)
    return vec


def write_dense_index(out_dir: str | Path, index, docids: Iterable[str]) -> None:
    """Write a FAISS index and its docids in the FaissSearcher layout (into an existing folder)."""
    out_dir = Path(out_dir)
    faiss.write_index(index, str(out_dir / INDEX_FILE))
    (out_dir / DOCID_FILE).write_text("".join(d + "\n" for d in docids), encoding="utf-8")


def build_small_index(out_dir: str | Path, encoder: Encoder, passages: list[dict], batch_size: int = 16) -> None:
    """Encode a list of passages and write its index in one go (small knowledge bases only)."""
    index = faiss.IndexFlatIP(encoder.dim)
    index.add(encode_passages(encoder, passages, batch_size))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_dense_index(out_dir, index, [p["id"] for p in passages])


class DenseIndex:
    """The FAISS index written by `jsarag.index dense` (pyserini FaissSearcher layout)."""

    def __init__(self, index_dir: str | Path):
        path = Path(index_dir) / INDEX_FILE
        if not path.exists():
            raise InputError(f"{path}: dense index not found")
        try:
            self.index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise InputError(f"{path}: not a readable FAISS index ({str(e).splitlines()[0][:200]})") from None

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def search(self, queries: torch.Tensor, k: int) -> np.ndarray:
        q = np.ascontiguousarray(queries.detach().float().cpu().numpy())
        _, rows = self.index.search(q, min(k, self.ntotal))
        return rows

    def vectors(self, rows: torch.Tensor) -> torch.Tensor:
        flat = rows.reshape(-1).cpu().numpy().astype(np.int64)
        vec = self.index.reconstruct_batch(flat)
        return torch.from_numpy(vec).reshape(*rows.shape, -1)

    def rebuild(self, encoder: Encoder, store: PassageStore, batch_size: int = 16, chunk: int = 4096) -> None:
        """Index refresh: re-encode every passage with `encoder` (streamed) and replace the index."""
        new = faiss.IndexFlatIP(encoder.dim)
        for s in range(0, len(store), chunk):
            new.add(encode_passages(encoder, store.get(range(s, min(s + chunk, len(store)))), batch_size))
        self.index = new
