"""VRAG: maximize the ELBO E_q[log p(y|x,h)] - KL(q(h|x,y) || p(h|x))."""
from __future__ import annotations

from jsarag.train.config import VRAGConfig
from jsarag.train.loop import Trainer
from jsarag.train.objectives import vrag_elbo, vrag_sampled_surrogate


class VRAGTrainer(Trainer):
    method = "vrag"
    config_class = VRAGConfig
    uses_posterior = True

    def loss_from_scores(self, batch, s):
        cfg = self.cfg
        k = cfg.k  # q's top-k support; over the whole KB in exact mode (k >= N: the full ELBO)
        if cfg.estimator == "exact":
            elbo, exp_ll, kl = vrag_elbo(s.prior_logits, s.post_logits, s.loglik, s.mask, k, cfg.kl_weight, cfg.kl_over_union)
            return -elbo.mean(), {"loss/expected_nll": -exp_ll.mean().item(), "loss/kl": kl.mean().item()}
        surrogate, elbo = vrag_sampled_surrogate(s.prior_logits, s.post_logits, s.loglik, s.mask, cfg.n_samples, self.sampler,
                                                 k, cfg.kl_weight, cfg.kl_over_union, cfg.baseline)
        return -surrogate.mean(), {"loss/neg_elbo_estimate": -elbo.mean().item()}
