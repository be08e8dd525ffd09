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
        """The negative ELBO, exact over q's top-k or estimated from samples of q (score function for q)."""
        cfg = self.cfg
        k = cfg.k  # q's top-k support; over the whole KB in exact mode (k >= N: the full ELBO)
        # the model scores q at the retrievers' tau; posterior_tau rescales its logits (authors: 1.0)
        post = s.post_logits * (cfg.tau / cfg.posterior_tau) if cfg.posterior_tau > 0 else s.post_logits
        loglik = s.loglik / s.target_lengths.clamp(min=1).unsqueeze(-1) if cfg.token_average else s.loglik
        if cfg.estimator == "exact":
            elbo, exp_ll, kl = vrag_elbo(s.prior_logits, post, loglik, s.mask, k, cfg.kl_weight, cfg.kl_support, cfg.kl_prior)
            return -elbo.mean(), {"loss/expected_nll": -exp_ll.mean().item(), "loss/kl": kl.mean().item()}
        surrogate, elbo = vrag_sampled_surrogate(s.prior_logits, post, loglik, s.mask, cfg.n_samples, self.sampler,
                                                 k, cfg.kl_weight, cfg.kl_support, cfg.baseline, cfg.kl_prior)
        return -surrogate.mean(), {"loss/neg_elbo_estimate": -elbo.mean().item()}
