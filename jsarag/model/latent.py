"""The latent-variable model shared by the three methods: prior retriever, posterior retriever,
generator, and the fixed passage index they read."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from jsarag.data.examples import context_text, posterior_text, target_text
from jsarag.model.encoders import Encoder
from jsarag.model.generator import Generator
from jsarag.model.passages import PassageStore
from jsarag.model.retrievers import Candidates, DenseIndex, candidate_set, retriever_logits
from jsarag.phases import phase


@dataclass
class Scores:
    cand: Candidates
    prior_logits: torch.Tensor  # [B, U]
    post_logits: torch.Tensor | None  # [B, U]
    loglik: torch.Tensor  # [B, U] log p(y|x,h), -inf outside the mask
    token_logp: torch.Tensor  # [B, U, T]
    token_mask: torch.Tensor  # [B, T]
    n_tokens: int

    @property
    def mask(self) -> torch.Tensor:
        return self.cand.mask

    @property
    def target_lengths(self) -> torch.Tensor:
        return self.token_mask.sum(-1)


class LatentModel(nn.Module):
    """p(y|x) = sum_h p(h|x) p(y|x,h): the model of all three methods (RAG, VRAG and JSA-RAG differ
    only in how they train it)."""

    def __init__(self, prior: Encoder, generator: Generator, index: DenseIndex, store: PassageStore,
                 tau: float = 0.1, posterior: Encoder | None = None):
        super().__init__()
        self.prior, self.posterior, self.generator = prior, posterior, generator
        self.index, self.store, self.tau = index, store, tau
        self.device = str(next(prior.parameters()).device)

    @staticmethod
    def posterior_from_prior(prior: Encoder) -> Encoder:
        """The posterior retriever starts as a copy of the prior's query encoder."""
        return copy.deepcopy(prior)

    def to_device(self, device: str) -> LatentModel:
        """Move the towers to `device` (the index holds its rows where it was built; the passage store
        stays on the host)."""
        for m in (self.prior, self.posterior, self.generator):
            if m is not None:
                m.to(device)
        self.device = device
        return self

    def forward(self, examples: list[dict], k: int, use_posterior: bool, extra_rows: list[list[int]] | None = None,
                exact: bool = False) -> Scores:
        """The training forward pass (what DDP wraps): `score`."""
        return self.score(examples, k, use_posterior, extra_rows, exact)

    def components(self) -> dict[str, list[nn.Parameter]]:
        out = {"prior": [p for p in self.prior.parameters() if p.requires_grad],
               "generator": [p for p in self.generator.parameters() if p.requires_grad]}
        if self.posterior is not None:
            out["posterior"] = [p for p in self.posterior.parameters() if p.requires_grad]
        return out

    def score(self, examples: list[dict], k: int, use_posterior: bool, extra_rows: list[list[int]] | None = None,
              exact: bool = False) -> Scores:
        """Encode queries, build the candidate set, and score every candidate with both retrievers
        and the generator (one batched generator forward over all candidates of the batch)."""
        xs = [context_text(e) for e in examples]
        ys = [target_text(e) for e in examples]
        with phase("query_encode"):
            q_prior = self.prior(xs)
            q_post = self.posterior([posterior_text(e) for e in examples]) if use_posterior else None
        with phase("search"):  # the candidate set and its passage vectors (collectives over a sharded index)
            cand = candidate_set(self.index, k, [q for q in (q_prior, q_post) if q is not None], extra_rows, exact=exact)
            dev = q_prior.device
            cand = Candidates(cand.rows.to(dev), cand.mask.to(dev))
            pvec = self.index.vectors(cand.rows).to(dev)
        prior_logits = retriever_logits(q_prior, pvec, self.tau, cand.mask)
        post_logits = retriever_logits(q_post, pvec, self.tau, cand.mask) if q_post is not None else None

        bs, us = cand.mask.nonzero(as_tuple=True)
        with phase("passage_fetch"):
            passages = self.store.get(cand.rows[bs, us].tolist())
        ll = self.generator.loglik([xs[b] for b in bs.tolist()], passages, [ys[b] for b in bs.tolist()])
        B, U = cand.mask.shape
        T = ll.tokens.shape[1]
        bs, us = bs.to(ll.seq.device), us.to(ll.seq.device)
        loglik = torch.full((B, U), float("-inf"), dtype=ll.seq.dtype, device=ll.seq.device).index_put((bs, us), ll.seq).to(dev)
        token_logp = torch.zeros(B, U, T, dtype=ll.tokens.dtype, device=ll.seq.device).index_put((bs, us), ll.tokens).to(dev)
        token_mask = torch.zeros(B, T, dtype=torch.bool, device=ll.seq.device).index_put((bs,), ll.mask).to(dev)
        return Scores(cand, prior_logits, post_logits, loglik, token_logp, token_mask, ll.n_tokens)
