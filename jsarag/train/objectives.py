"""The three training objectives, on per-example tensors over a candidate set U.

Inputs are retriever logits [B, U] (-inf outside the candidate mask) and generator
log-likelihoods log p(y|x,h) [B, U]. Every function returns per-example values [B].
"""
from __future__ import annotations

import torch

NEG_INF = float("-inf")


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(~mask, NEG_INF).log_softmax(-1)


def topk_mask(logits: torch.Tensor, mask: torch.Tensor, k: int | None) -> torch.Tensor:
    """The k highest-scoring valid candidates of each row (all of them when k is None)."""
    if k is None or k >= logits.shape[-1]:
        return mask
    idx = logits.masked_fill(~mask, NEG_INF).topk(k, dim=-1).indices
    return torch.zeros_like(mask).scatter(-1, idx, True) & mask


def _wsum(w: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_h w(h) v(h) over the mask. Entries outside it are zeroed before the product, so a -inf
    there gives neither a nan value nor a nan gradient."""
    return (w.masked_fill(~mask, 0.0) * v.masked_fill(~mask, 0.0)).sum(-1)


def log_marginal(prior_logits, loglik, mask) -> torch.Tensor:
    """log p(y|x) = log sum_h p(h|x) p(y|x,h), p normalized over the mask."""
    return torch.logsumexp(torch.where(mask, masked_log_softmax(prior_logits, mask) + loglik, NEG_INF), -1)


def posterior(prior_logits, loglik, mask) -> torch.Tensor:
    """p(h|x,y) over the mask."""
    return masked_log_softmax(torch.where(mask, masked_log_softmax(prior_logits, mask) + loglik, NEG_INF), mask).exp()


# --- RAG (Lewis et al. 2020) ---------------------------------------------------------------
def rag_prior_logp(prior_logits, top, double_softmax: bool = False) -> torch.Tensor:
    """log p~(h|x) over the top-K set. double_softmax: the authors' RAG code softmaxes the top-K
    probabilities a second time (the probabilities are used as logits), which flattens the prior
    toward uniform over the top-K."""
    logp = masked_log_softmax(prior_logits, top)
    return masked_log_softmax(logp.exp(), top) if double_softmax else logp


def rag_sequence_loss(prior_logits, loglik, mask, K: int | None = None, double_softmax: bool = False) -> torch.Tensor:
    """-log sum_{h in top-K} p~(h|x) p(y|x,h), with the prior renormalized over the top-K."""
    top = topk_mask(prior_logits, mask, K)
    logp = rag_prior_logp(prior_logits, top, double_softmax)
    return -torch.logsumexp(torch.where(top, logp + loglik, NEG_INF), -1)


def rag_token_loss(prior_logits, token_logp, token_mask, mask, K: int | None = None, double_softmax: bool = False) -> torch.Tensor:
    """RAG-Token: -sum_t log sum_{h in top-K} p~(h|x) p(y_t|x,h,y_<t).

    token_logp [B, U, T] right-aligned per-token log-probs; token_mask [B, T]."""
    top = topk_mask(prior_logits, mask, K)
    logp = rag_prior_logp(prior_logits, top, double_softmax)
    per_tok = torch.logsumexp(torch.where(top[..., None], logp[..., None] + token_logp, NEG_INF), dim=1)
    return -torch.where(token_mask, per_tok, torch.zeros_like(per_tok)).sum(-1)


# --- VRAG (Mishra et al. 2022) -------------------------------------------------------------
KL_SUPPORTS = ("topk", "union_all", "union_kl_only")
KL_PRIORS = ("candidates", "support")


def vrag_sets(post_logits, mask, k: int | None, kl_support: str = "topk") -> tuple[torch.Tensor, torch.Tensor]:
    """(S, KS): the set the expected log-likelihood runs over and the set the KL runs over.
    - topk: both are q's top-k (textbook; the authors' default);
    - union_all: both are the whole candidate set (this suite's earlier `kl_over_union`);
    - union_kl_only: the authors' union option: the expectation stays on q's top-k, only the KL
      moves to the candidate set (the union of both retrievers' top-k)."""
    if kl_support not in KL_SUPPORTS:
        raise ValueError(f"unknown kl_support {kl_support!r}")
    top = topk_mask(post_logits, mask, k)
    S = mask if kl_support == "union_all" else top
    return S, (top if kl_support == "topk" else mask)


def vrag_elbo(prior_logits, post_logits, loglik, mask, k: int | None = None, kl_weight: float = 1.0,
              kl_support: str = "topk", kl_prior: str = "candidates") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ELBO = E_q[log p(y|x,h)] - kl_weight * KL(q || p), the expectation exact over q's support.

    q is renormalized over each set of `vrag_sets`; p over the candidate set (kl_prior
    "candidates") or, as in the authors' code, over the KL's own set (kl_prior "support"). With
    kl_weight = 1, kl_support topk|union_all and kl_prior candidates this lower-bounds log p(y|x)
    and equals it when q is the exact posterior. Returns (elbo, expected log-likelihood, kl)."""
    S, KS = vrag_sets(post_logits, mask, k, kl_support)
    q = masked_log_softmax(post_logits, S).exp()
    exp_ll = _wsum(q, loglik, S)
    logq = masked_log_softmax(post_logits, KS)
    logp = masked_log_softmax(prior_logits, KS if kl_prior == "support" else mask)
    kl = _wsum(logq.exp(), logq - logp, KS)
    return exp_ll - kl_weight * kl, exp_ll, kl


def vrag_sampled_surrogate(prior_logits, post_logits, loglik, mask, n_samples: int, generator: torch.Generator,
                           k: int | None = None, kl_weight: float = 1.0, kl_support: str = "topk",
                           baseline: str = "none", kl_prior: str = "candidates") -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo ELBO with the score-function (REINFORCE) gradient for q.

    Returns (surrogate, elbo_estimate), both [B]. Maximizing the surrogate gives unbiased ELBO
    gradients: f(h) = log p(y|x,h) + kl_weight (log p(h|x) - log q(h|x,y)) with h ~ q;
    grad = E[grad f] + E[(f(h) - b) grad log q(h)]. baseline "mean" uses the leave-one-out mean
    of the other samples' f (unbiased; needs n_samples > 1). kl_support union_kl_only has two
    sets and is refused here (use the exact estimator)."""
    if kl_support == "union_kl_only":
        raise ValueError("kl_support union_kl_only needs the exact estimator")
    S, _ = vrag_sets(post_logits, mask, k, kl_support)
    logq = masked_log_softmax(post_logits, S)
    logp = masked_log_softmax(prior_logits, S if kl_prior == "support" else mask)
    h = torch.multinomial(logq.detach().float().cpu().exp(), n_samples, replacement=True, generator=generator).to(logq.device)
    ll, lp, lq = loglik.gather(-1, h), logp.gather(-1, h), logq.gather(-1, h)
    f = ll + kl_weight * (lp - lq)
    signal = f.detach()
    if baseline == "mean" and n_samples > 1:
        b = (signal.sum(-1, keepdim=True) - signal) / (n_samples - 1)
    elif baseline in ("none", "mean"):
        b = torch.zeros_like(signal)
    else:
        raise ValueError(f"unknown baseline {baseline!r}")
    surrogate = (ll + kl_weight * lp + (signal - b) * lq).mean(-1)
    return surrogate, signal.mean(-1)


# --- JSA-RAG M-step --------------------------------------------------------------------------
def jsa_m_step(prior_logits, post_logits, loglik, mask, weights) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Losses on the MIS samples, weights [B, U] = frequency of each candidate among the chain
    states (rows sum to 1). Returns per-example (generator NLL, prior NLL, posterior NLL):
    sum_h w(h) [-log p(y|x,h)], sum_h w(h) [-log p(h|x)], sum_h w(h) [-log q(h|x,y)].
    Their gradients, with w drawn from the true posterior, are Fisher's identity for log p(y|x)
    (generator, prior) and the inclusive-KL gradient for q."""
    logp = masked_log_softmax(prior_logits, mask)
    on = mask & (weights > 0)
    gen = -_wsum(weights, loglik, on)
    prior = -_wsum(weights, logp, on)
    post = -_wsum(weights, masked_log_softmax(post_logits, mask), on) if post_logits is not None else torch.zeros_like(gen)
    return gen, prior, post
