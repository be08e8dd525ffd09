"""JSA-RAG: MIS E-step with the posterior retriever as proposal, then the M-step on the samples.

The generator scores every candidate once, with gradient; MIS runs on the detached values, and
only the terms of the accepted samples carry weight in the backward pass."""
from __future__ import annotations

import logging

import torch

from jsarag.train.config import JSAConfig
from jsarag.train.loop import Trainer
from jsarag.train.mis import MISResult, log_importance_weights, mis
from jsarag.train.objectives import jsa_m_step, masked_log_softmax

log = logging.getLogger("jsarag.train")


class JSATrainer(Trainer):
    method = "jsa"
    config_class = JSAConfig
    uses_posterior = True

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.state = {"cache": {}}  # example id -> passage row of the last chain state

    def train(self, *a, **kw):
        draws = self.total_steps * self.cfg.grad_accum * self.cfg.batch_size
        if self.cfg.cache and draws <= len(self.examples):
            log.warning("train.jsa.cache is true but the run draws %d examples out of %d: no example is visited twice, so "
                        "no cached chain is ever reused and every chain restarts (the authors' variant, cache: false)",
                        draws, len(self.examples))
        return super().train(*a, **kw)

    def extra_rows(self, batch):
        if not self.cfg.cache:
            return None
        cache = self.state["cache"]
        return [[cache[ex["id"]]] if ex["id"] in cache else [] for ex in batch]

    def e_step(self, batch, s) -> tuple[MISResult, torch.Tensor]:
        """Metropolis independence sampling on detached scores; returns (result, initial columns)."""
        cfg, mask = self.cfg, s.mask
        prior_logp = masked_log_softmax(s.prior_logits, mask).detach()
        post_logq = masked_log_softmax(s.post_logits, mask).detach()
        lengths = s.target_lengths if cfg.token_average else None
        log_w = log_importance_weights(prior_logp, s.loglik.detach(), post_logq, lengths).masked_fill(~mask, float("-inf"))
        init = torch.full((len(batch),), -1, dtype=torch.long)
        if cfg.cache:
            for b, ex in enumerate(batch):
                row = self.state["cache"].get(ex["id"])
                hit = ((s.cand.rows[b] == row) & mask[b]).nonzero().cpu() if row is not None else []
                if len(hit):
                    init[b] = int(hit[0])
        # MIS runs on the host with the seeded sampler (the scores are tiny: B x |U|)
        return mis(log_w.float().cpu(), post_logq.float().cpu(), cfg.proposals, init, self.sampler), init

    def loss_from_scores(self, batch, s):
        """The M-step losses on the MIS samples of the E-step (generator, prior and posterior)."""
        cfg = self.cfg
        res, init = self.e_step(batch, s)
        weights = res.weights(s.mask.shape[1]).to(s.mask.device)
        loglik = s.loglik / s.target_lengths.unsqueeze(-1).clamp(min=1) if cfg.token_average else s.loglik
        gen, prior, post = jsa_m_step(s.prior_logits, s.post_logits, loglik, s.mask, weights)
        loss = (gen + (prior if cfg.train_prior else 0) + post).mean()
        if cfg.cache:
            for b, ex in enumerate(batch):
                self.state["cache"][ex["id"]] = int(s.cand.rows[b, res.final[b]])
        return loss, {"loss/generator": gen.mean().item(), "loss/prior": prior.mean().item(),
                      "loss/posterior": post.mean().item(), **res.stats(init, cfg.cache)}
