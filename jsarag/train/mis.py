"""Metropolis independence sampling (MIS), the E-step of JSA-RAG.

Target: the posterior p(h|x,y) proportional to p(h|x) p(y|x,h). Proposal: q(h|x,y). With the
importance weight w(h) = p(h|x) p(y|x,h) / q(h|x,y), a proposal h' replaces the current state h
with probability min(1, w(h') / w(h)); the normalizers of p(y|x) and of p and q cancel.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MISResult:
    states: torch.Tensor  # [B, m] candidate column of the chain state after each proposal
    accepted: torch.Tensor  # [B, m] bool, proposal accepted
    tested: torch.Tensor  # [B, m] bool, proposal went through an accept/reject test (not a first state)
    moved: torch.Tensor  # [B, m] bool, tested, accepted and different from the state it replaced
    final: torch.Tensor  # [B] last state

    def weights(self, width: int) -> torch.Tensor:
        """[B, width] frequency of each candidate among the m chain states (rows sum to 1)."""
        m = self.states.shape[1]
        w = torch.zeros(self.states.shape[0], width, dtype=torch.float32)
        return w.scatter_add_(1, self.states, torch.ones_like(self.states, dtype=torch.float32)) / m

    def stats(self, init: torch.Tensor, cache: bool = False) -> dict:
        """acceptance_rate counts a proposal equal to the current state as accepted (it always is);
        move_rate counts only accepted proposals of a different state, among the tested ones;
        moves_per_chain is the number of state changes per chain; cache_hit_rate (with the cache)
        is the fraction of chains that started from a cached state."""
        tested = self.tested.sum().item()
        has_init = init >= 0
        distinct = torch.tensor([len(set(r.tolist())) for r in self.states], dtype=torch.float32)
        nan = float("nan")
        out = {
            "mis/acceptance_rate": (self.accepted & self.tested).sum().item() / tested if tested else nan,
            "mis/move_rate": self.moved.sum().item() / tested if tested else nan,
            "mis/moves_per_chain": self.moved.sum(-1).float().mean().item(),
            "mis/distinct": distinct.mean().item(),
        }
        if cache:
            out["mis/cache_hit_rate"] = has_init.float().mean().item()
        if has_init.any():
            survived = (self.states[:, 0] == init) & has_init
            out["mis/cache_survived"] = survived.sum().item() / has_init.sum().item()
        return out


def log_importance_weights(prior_logp, loglik, post_logq, token_lengths=None) -> torch.Tensor:
    """log w(h) = log p(h|x) + log p(y|x,h) - log q(h|x,y); with token_lengths, the authors'
    variant that uses the token-averaged log-likelihood (a tempered posterior)."""
    ll = loglik / token_lengths.unsqueeze(-1).clamp(min=1) if token_lengths is not None else loglik
    return prior_logp + ll - post_logq


@torch.no_grad()
def mis(log_w: torch.Tensor, proposal_logq: torch.Tensor, m: int, init: torch.Tensor | None = None,
        generator: torch.Generator | None = None) -> MISResult:
    """Run one chain per row for m proposals drawn from q (i.i.d., independent of the state).

    log_w [B, U]: log importance weights (-inf or anything outside the support of q is never
    proposed). proposal_logq [B, U]: log q over the candidates. init [B]: column of the cached
    state, -1 for none (then the first proposal is accepted unconditionally, as in the authors' code)."""
    B = log_w.shape[0]
    props = torch.multinomial(proposal_logq.float().exp(), m, replacement=True, generator=generator)  # [B, m]
    u = torch.rand(B, m, generator=generator)
    cur = init.clone() if init is not None else torch.full((B,), -1, dtype=torch.long)
    states = torch.empty(B, m, dtype=torch.long)
    accepted = torch.empty(B, m, dtype=torch.bool)
    tested = torch.empty(B, m, dtype=torch.bool)
    moved = torch.empty(B, m, dtype=torch.bool)
    for t in range(m):
        prop = props[:, t]
        lw_prop = log_w.gather(1, prop[:, None]).squeeze(1)
        has = cur >= 0
        lw_cur = log_w.gather(1, cur.clamp(min=0)[:, None]).squeeze(1)
        acc = torch.log(u[:, t]) < (lw_prop - lw_cur)
        acc = torch.where(has, acc, torch.ones_like(acc))
        moved[:, t] = acc & has & (prop != cur)
        cur = torch.where(acc, prop, cur)
        states[:, t], accepted[:, t], tested[:, t] = cur, acc, has
    return MISResult(states=states, accepted=accepted, tested=tested, moved=moved, final=cur)
