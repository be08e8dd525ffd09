"""Vanilla RAG: top-K marginal likelihood (RAG-Sequence or RAG-Token)."""
from __future__ import annotations

from jsarag.train.config import RAGConfig
from jsarag.train.loop import Trainer
from jsarag.train.objectives import rag_sequence_loss, rag_token_loss


class RAGTrainer(Trainer):
    method = "rag"
    config_class = RAGConfig
    uses_posterior = False

    def loss_from_scores(self, batch, s):
        """-log sum over the prior's top-K of p~(h|x) p(y|x,h) (RAG-Sequence), or per token (RAG-Token)."""
        cfg = self.cfg
        K = cfg.k  # top-K of the prior; over the whole KB in exact mode (K >= N: exact marginal)
        lengths = s.target_lengths.clamp(min=1)
        if cfg.variant == "token":
            nll = rag_token_loss(s.prior_logits, s.token_logp, s.token_mask, s.mask, K, cfg.double_softmax)
            nll = nll / lengths if cfg.token_average else nll
        else:
            loglik = s.loglik / lengths.unsqueeze(-1) if cfg.token_average else s.loglik
            nll = rag_sequence_loss(s.prior_logits, loglik, s.mask, K, cfg.double_softmax)
        return nll.mean(), {"loss/nll": nll.mean().item()}
