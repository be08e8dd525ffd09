"""Verification on a knowledge base small enough to enumerate (issue: the three training methods).

Tensor-level cases check the objectives and MIS against closed forms; model-level cases run the
trainers' own losses on tiny transformers in exact mode (candidate set = all 24 passages)."""
import pytest
import torch

from jsarag.data.examples import load_examples
from jsarag.evaluate import verify
from jsarag.evaluate.verify import estimator_draws, exact_gradients, summarize
from jsarag.train.mis import log_importance_weights, mis
from jsarag.train.objectives import (
    log_marginal,
    masked_log_softmax,
    posterior,
    rag_sequence_loss,
    rag_token_loss,
    vrag_elbo,
    vrag_sampled_surrogate,
)

TV_CACHE = 0.02  # total variation after 40,000 persistent-chain steps
TV_RESTART = 0.03  # after 400 restarted chains of 100 proposals


def tv(counts: torch.Tensor, p: torch.Tensor) -> float:
    return 0.5 * float((counts / counts.sum() - p).abs().sum())


def random_case(N=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    prior = torch.randn(1, N, generator=g) * 1.5
    loglik = torch.randn(1, N, generator=g) * 2.0
    post = torch.randn(1, N, generator=g) + 0.5 * (prior + loglik)  # an imperfect proposal
    return prior, loglik, post, torch.ones(1, N, dtype=torch.bool)


# -- 1. MIS converges to the exact posterior -------------------------------------------------------
def test_mis_persistent_chain_converges():
    prior, loglik, post, mask = random_case()
    exact = posterior(prior, loglik, mask)[0]
    logq = masked_log_softmax(post, mask)
    log_w = log_importance_weights(masked_log_softmax(prior, mask), loglik, logq)
    res = mis(log_w, logq, 40_000, None, torch.Generator().manual_seed(1))
    counts = torch.bincount(res.states[0], minlength=40).double()
    assert tv(counts, exact) < TV_CACHE
    assert tv(torch.bincount(res.states[0, :500], minlength=40).double(), exact) > tv(counts, exact)


def test_mis_restarted_chains_converge_as_m_grows():
    prior, loglik, post, mask = random_case()
    exact = posterior(prior, loglik, mask)[0]
    logq = masked_log_softmax(post, mask).expand(400, -1)
    log_w = log_importance_weights(masked_log_softmax(prior, mask), loglik, logq[:1]).expand(400, -1)
    tvs = {}
    for m in (2, 10, 100):
        res = mis(log_w, logq, m, None, torch.Generator().manual_seed(2))
        tvs[m] = tv(torch.bincount(res.states.reshape(-1), minlength=40).double(), exact)
    assert tvs[100] < TV_RESTART and tvs[100] < tvs[10] < tvs[2]


# -- model-level setup -------------------------------------------------------------------------------
def exact_setup(method, factory, kb, **opts):
    return verify.exact_setup(method, factory, load_examples(kb / "train.jsonl"), **opts)


def test_mis_on_model_scores_converges(tiny_model_factory, tiny_kb):
    trainer, batch, s, _ = exact_setup("jsa", tiny_model_factory, tiny_kb, proposals=50)
    exact = posterior(s.prior_logits, s.loglik, s.mask)[0].detach()
    counts = torch.zeros(s.mask.shape[1], dtype=torch.float64)
    for _ in range(600):
        res, _ = trainer.e_step(batch, s)
        counts += torch.bincount(res.states[0], minlength=len(counts)).double()
        trainer.state["cache"][batch[0]["id"]] = int(s.cand.rows[0, res.final[0]])
    assert tv(counts, exact) < TV_CACHE


# -- 2. JSA's gradient estimate is consistent -------------------------------------------------------
@pytest.mark.parametrize("cache", [True, False])
def test_jsa_gradient_matches_exact(cache, tiny_model_factory, tiny_kb):
    trainer, batch, s, comps = exact_setup("jsa", tiny_model_factory, tiny_kb, proposals=20, cache=cache)
    exact = exact_gradients(s, comps)
    draws = estimator_draws(trainer, batch, s, 300 if cache else 150)
    for comp, target in (("generator", "log_marginal"), ("prior", "log_marginal"), ("posterior", "inclusive_kl")):
        sm = summarize(draws[comp], exact[target][comp])
        if cache:  # textbook JSA: unbiased
            assert sm.cosine >= 0.99, (comp, sm)
            assert sm.frac_z_below_4 >= 0.95, (comp, sm)
        else:  # restarted chains of 20 proposals: biased at finite m, still close
            assert sm.cosine >= 0.95, (comp, sm)


# -- 3. RAG top-K gradient: exact at K = N, biased at K < N --------------------------------------------
def test_rag_gradient_exact_when_K_equals_N(tiny_model_factory, tiny_kb):
    trainer, batch, s, comps = exact_setup("rag", tiny_model_factory, tiny_kb)
    exact = exact_gradients(s, comps)["log_marginal"]
    draws = estimator_draws(trainer, batch, s, 1)
    for comp in ("generator", "prior"):
        assert torch.allclose(draws[comp][0], exact[comp], rtol=1e-4, atol=1e-7)


def test_rag_token_equals_sequence_for_one_token_targets():
    prior, loglik, _, mask = random_case(N=10)
    tok = loglik[..., None]
    assert torch.allclose(rag_token_loss(prior, tok, torch.ones(1, 1, dtype=torch.bool), mask),
                          rag_sequence_loss(prior, loglik, mask))


def test_rag_topk_gradient_biased_when_posterior_mass_outside_topk():
    """Prior logits and generator log-likelihoods as free parameters: the generator explains y only
    with passage 7, which the prior ranks last, so the top-K set misses the posterior's mass."""
    N, K = 8, 3
    prior = torch.linspace(2.0, -2.0, N)[None].requires_grad_()
    loglik = torch.full((1, N), -8.0)
    loglik[0, 7] = -0.5
    loglik.requires_grad_()
    mask = torch.ones(1, N, dtype=torch.bool)
    g_exact = torch.autograd.grad(log_marginal(prior, loglik, mask).sum(), [prior, loglik])
    g_full = torch.autograd.grad(-rag_sequence_loss(prior, loglik, mask, K=N).sum(), [prior, loglik])
    g_topk = torch.autograd.grad(-rag_sequence_loss(prior, loglik, mask, K=K).sum(), [prior, loglik])
    exact, full, topk = (torch.cat([g.reshape(-1) for g in gs]) for gs in (g_exact, g_full, g_topk))
    assert torch.allclose(full, exact, atol=1e-6)
    assert posterior(prior, loglik, mask)[0, K:].sum() > 0.5
    assert (topk - exact).norm() / exact.norm() > 0.5
    assert topk[7] == 0 and exact[7] > 0.1  # the passage that explains y gets no gradient from top-K


# -- 4. VRAG's objective is a lower bound, tight at the exact posterior --------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_vrag_elbo_lower_bound(seed):
    prior, loglik, post, mask = random_case(seed=seed)
    lm = log_marginal(prior, loglik, mask)
    for k in (None, 5):
        elbo = vrag_elbo(prior, post, loglik, mask, k)[0]
        assert elbo <= lm + 1e-6
    exact_q = torch.log(posterior(prior, loglik, mask))
    assert torch.allclose(vrag_elbo(prior, exact_q, loglik, mask, None)[0], lm, atol=1e-5)


def test_vrag_elbo_bound_on_model(tiny_model_factory, tiny_kb):
    _, _, s, _ = exact_setup("vrag", tiny_model_factory, tiny_kb)
    lm = log_marginal(s.prior_logits, s.loglik, s.mask)
    elbo = vrag_elbo(s.prior_logits, s.post_logits, s.loglik, s.mask, None)[0]
    assert (elbo <= lm + 1e-5).all() and (lm - elbo > 1e-4).all()


# -- 5. Posterior-gradient variance: sampled VRAG and JSA ---------------------------------------------
def test_posterior_gradient_variance_is_measured(tiny_model_factory, tiny_kb):
    trainer, batch, s, comps = exact_setup("vrag", tiny_model_factory, tiny_kb, estimator="sampled", n_samples=20, baseline="none")
    exact = exact_gradients(s, comps)
    sm_vrag = summarize(estimator_draws(trainer, batch, s, 200)["posterior"], exact["elbo"]["posterior"])
    trainer, batch, s, comps = exact_setup("jsa", tiny_model_factory, tiny_kb, proposals=20)
    exact = exact_gradients(s, comps)
    sm_jsa = summarize(estimator_draws(trainer, batch, s, 200)["posterior"], exact["inclusive_kl"]["posterior"])
    for sm in (sm_vrag, sm_jsa):
        assert sm.variance > 0 and sm.rel_variance > 0
    # the score-function estimate is unbiased (its mean is within a few standard errors of the
    # exact ELBO gradient) but noisy; JSA's posterior gradient is far less noisy on this case
    assert sm_vrag.frac_z_below_4 >= 0.95, sm_vrag
    assert sm_jsa.rel_variance < sm_vrag.rel_variance, (sm_jsa, sm_vrag)


def test_sampled_vrag_surrogate_is_unbiased_in_closed_form():
    """Tensor level: the average surrogate gradient over many draws equals the exact ELBO gradient."""
    prior, loglik, post, mask = random_case(N=12, seed=3)
    post = post.clone().requires_grad_()
    exact = torch.autograd.grad(vrag_elbo(prior, post, loglik, mask, None)[0].sum(), post)[0]
    g = torch.Generator().manual_seed(0)
    sur, _ = vrag_sampled_surrogate(prior, post.expand(20000, -1), loglik.expand(20000, -1), mask.expand(20000, -1), 2, g,
                                    baseline="mean")
    est = torch.autograd.grad(sur.mean(), post)[0]
    assert torch.nn.functional.cosine_similarity(est.reshape(-1), exact.reshape(-1), dim=0) > 0.99
