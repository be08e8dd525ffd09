"""Prior retriever p(h|x), posterior retriever q(h|x,y), and the candidate set they share.

Both retrievers are bi-encoders over the frozen passage embeddings held by the FAISS index:
score(h) = e_q(.) . e_p(h) / tau. Probabilities are normalized over a per-example candidate set
U = union(prior top-k, posterior top-k, extra rows such as a cached MIS state), or over the whole
knowledge base in exact mode.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from jsarag.model.dense_index import DenseIndex


@dataclass
class Candidates:
    rows: torch.Tensor  # [B, U] passage rows (0 where padded)
    mask: torch.Tensor  # [B, U] bool


def candidate_set(index: DenseIndex, k: int, queries: list[torch.Tensor], extra: list[list[int]] | None = None,
                  exact: bool = False) -> Candidates:
    """Union of each query's top-k plus extra rows, per example, padded to one width."""
    B = queries[0].shape[0]
    if exact:
        rows = torch.arange(index.ntotal).expand(B, -1).clone()
        return Candidates(rows, torch.ones_like(rows, dtype=torch.bool))
    # both retrievers' queries in one search call: one pass over the passage matrix
    hits = np.split(index.search(torch.cat([q.detach().to(queries[0].device) for q in queries]), k), len(queries))
    sets = []
    for b in range(B):
        seen: dict[int, None] = {}
        for h in hits:
            for r in h[b]:
                if r >= 0:
                    seen.setdefault(int(r))
        for r in (extra[b] if extra else []):
            if r is not None and r >= 0:
                seen.setdefault(int(r))
        sets.append(list(seen))
    U = max(map(len, sets))
    rows = torch.zeros(B, U, dtype=torch.long)
    mask = torch.zeros(B, U, dtype=torch.bool)
    for b, s in enumerate(sets):
        rows[b, : len(s)] = torch.tensor(s)
        mask[b, : len(s)] = True
    return Candidates(rows, mask)


def retriever_logits(query: torch.Tensor, passages: torch.Tensor, tau: float, mask: torch.Tensor) -> torch.Tensor:
    """[B, d] x [B, U, d] -> [B, U] scores / tau, -inf outside the candidate mask."""
    logits = torch.einsum("bd,bud->bu", query, passages.to(query.dtype)) / tau
    return logits.masked_fill(~mask, float("-inf"))
