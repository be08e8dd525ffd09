"""Checks that hold exactly on a knowledge base small enough to enumerate.

With the candidate set equal to the whole knowledge base, log p(y|x), the posterior p(h|x,y) and
their gradients are exact. Each estimator is run through the trainers' own `loss_from_scores`
on one scored forward graph, and its draws are compared with the exact gradient.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from jsarag.model.latent import Scores
from jsarag.train.loop import Trainer
from jsarag.train.objectives import log_marginal, masked_log_softmax, posterior, topk_mask, vrag_elbo


def flat_grad(output: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = torch.autograd.grad(output, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def exact_gradients(s: Scores, comps: dict[str, list]) -> dict[str, dict[str, torch.Tensor]]:
    """Targets by enumeration, per component:
    - "log_marginal": grad of log p(y|x) (what RAG and JSA estimate for generator and prior);
    - "inclusive_kl": grad of E_{p(h|x,y)}[log q(h|x,y)] (JSA's posterior target, = -grad KL(p||q));
    - "elbo": grad of the ELBO with q over the whole KB (what VRAG estimates)."""
    lm = log_marginal(s.prior_logits, s.loglik, s.mask).sum()
    post = posterior(s.prior_logits, s.loglik, s.mask).detach()
    incl = (post * masked_log_softmax(s.post_logits, s.mask)).sum() if s.post_logits is not None else None
    elbo = vrag_elbo(s.prior_logits, s.post_logits, s.loglik, s.mask, None)[0].sum() if s.post_logits is not None else None
    out = {}
    for name, target in (("log_marginal", lm), ("inclusive_kl", incl), ("elbo", elbo)):
        if target is not None:
            out[name] = {c: flat_grad(target, ps) for c, ps in comps.items() if ps}
    return out


def estimator_draws(trainer: Trainer, batch: list[dict], s: Scores, n_draws: int) -> dict[str, torch.Tensor]:
    """n_draws gradient estimates (of the quantity the method maximizes) per component, each from
    one call of the trainer's loss on the same scores; JSA's cache carries over between draws."""
    comps = {c: ps for c, ps in trainer.model.components().items() if ps}
    params = [p for ps in comps.values() for p in ps]
    sizes = [sum(p.numel() for p in ps) for ps in comps.values()]
    rows = []
    for _ in range(n_draws):
        loss, _ = trainer.loss_from_scores(batch, s)
        rows.append(-flat_grad(loss, params))  # one backward pass for all components
    parts = torch.stack(rows).split(sizes, dim=1)
    return dict(zip(comps, parts))


@dataclass
class EstimatorSummary:
    cosine: float  # cosine(mean estimate, exact)
    rel_bias: float  # ||mean - exact|| / ||exact|| (includes Monte Carlo noise: see rel_bias_noise)
    rel_bias_se: float  # Monte Carlo standard error of rel_bias (delta method along mean - exact)
    rel_bias_noise: float  # the rel_bias an unbiased estimator shows on average at this n (from the batch-mean errors)
    bias_p: float  # p-value of "bias = 0": batch-means t-tests on fixed projections (PROJECTIONS), Bonferroni
    variance: float  # trace of the covariance of one draw
    variance_se: float  # its Monte Carlo standard error
    rel_variance: float  # variance / ||exact||^2
    rel_variance_se: float
    max_abs_z: float  # max over coordinates of |mean - exact| / standard error
    frac_z_below_4: float
    n_draws: int


BATCHES = 20  # batch means: consecutive draws of a persistent chain are correlated
PROJECTIONS = 8  # random fixed directions tested for bias, besides the exact gradient's own direction


def _t_to_z(t: torch.Tensor, df: int) -> torch.Tensor:
    """|z| with the same tail probability as a Student t of df degrees of freedom (Wallace's approximation)."""
    return (df * torch.log1p(t ** 2 / df)).sqrt()


def projection_bias_p(batch_means: torch.Tensor, exact: torch.Tensor) -> float:
    """p-value of "bias = 0" from the batch means [b, D] of the draws.

    The draws are projected on directions fixed before looking at them: the exact gradient's own
    direction (a wrong scale shows there) and PROJECTIONS random Gaussian directions (seeded). Each
    projection gets a t-test of its batch means against the exact gradient's projection (b - 1
    degrees of freedom); the smallest p-value is Bonferroni-corrected. A scalar projection averages
    many coordinates, so the test stays calibrated where a per-coordinate maximum is not: MIS and
    sampled-VRAG draws are heavy-tailed in coordinates that only a rare passage moves."""
    b, dim = batch_means.shape
    gen = torch.Generator().manual_seed(0)
    dirs = torch.cat([exact.reshape(1, -1) / exact.norm().clamp(min=1e-300),
                      torch.randn(PROJECTIONS, dim, generator=gen, dtype=exact.dtype)])
    proj, target = batch_means @ dirs.T, dirs @ exact  # [b, P], [P]
    se = proj.std(0) / b ** 0.5
    live = se > 1e-12 * (target.abs().max() + 1e-30)
    if not bool(live.any()):
        return 1.0
    t = ((proj.mean(0) - target).abs() / se.clamp(min=1e-300))[live]
    normal = torch.distributions.Normal(0.0, 1.0)
    p_min = 2 * (1 - normal.cdf(_t_to_z(t.max(), b - 1)).item())
    return float(min(1.0, len(t) * p_min))


def summarize(draws: torch.Tensor, exact: torch.Tensor) -> EstimatorSummary:
    """Bias and variance of n draws against the exact gradient, each with its Monte Carlo error.
    Standard errors of the mean come from BATCHES batch means of consecutive draws, so that the
    autocorrelation of a persistent MIS chain (JSA with the cache: each draw continues the chain of
    the previous one) does not pass for bias. One draw (a deterministic estimator) has no variance:
    its bias is exact, bias_p 0 or 1."""
    d, e = draws.double(), exact.double()
    mean = d.mean(0)
    n = d.shape[0]
    var = d.var(0, unbiased=True) if n > 1 else torch.zeros_like(mean)
    b = min(BATCHES, n)
    bm = d[: n - n % b].reshape(b, -1, d.shape[1]).mean(1) if n > 1 else d
    se = bm.std(0) / b ** 0.5 if b > 1 else torch.zeros_like(mean)
    live = se > 1e-12 * (e.abs().max() + 1e-30)
    z = ((mean - e).abs() / se.clamp(min=1e-300))[live]
    en, err = float(e.norm()), mean - e
    u = err / err.norm().clamp(min=1e-300)
    sq = ((d - mean) ** 2).sum(-1)  # per-draw squared deviation: its mean * n/(n-1) is the trace
    if n > 1:
        p = projection_bias_p(bm, e)
        rel_bias_se = float((bm @ u).std() / b ** 0.5) / en
        var_se = float(sq.std() / n ** 0.5) * n / (n - 1)
    else:
        p = 0.0 if float(err.norm()) > 1e-6 * en else 1.0
        rel_bias_se, var_se = 0.0, 0.0
    return EstimatorSummary(
        cosine=float(torch.nn.functional.cosine_similarity(mean, e, dim=0)),
        rel_bias=float(err.norm()) / en, rel_bias_se=rel_bias_se, rel_bias_noise=float((se ** 2).sum()) ** 0.5 / en, bias_p=p,
        variance=float(var.sum()), variance_se=var_se, rel_variance=float(var.sum()) / en ** 2,
        rel_variance_se=var_se / en ** 2,
        max_abs_z=float(z.max()) if len(z) else 0.0, frac_z_below_4=float((z < 4).double().mean()) if len(z) else 1.0, n_draws=n)


def summary_row(estimator: str, component: str, target: str, sm: EstimatorSummary, **extra) -> str:
    return json.dumps({"estimator": estimator, "component": component, "target": target, **sm.__dict__, **extra})


# -- the enumerable setting -------------------------------------------------------------------------
def exact_setup(method: str, model_factory, examples: list[dict], example: int = 0, **opts):
    """A trainer in exact mode (candidate set = whole KB) and the scores of one example.
    The encoders' embedding tables stay frozen to keep gradient vectors small."""
    from jsarag.train import TRAINERS

    cfg = TRAINERS[method].config_class.from_dict({"exact": True, "k": 100, "tau": 0.05, "threads": 1,
                                                   "lora": {"r": 2, "alpha": 4, "target_modules": ["v_proj"]}, **opts})
    model = model_factory(method, cfg)
    trainer = TRAINERS[method](cfg, model, examples, "unused")
    for enc in (model.prior, model.posterior):
        if enc is not None:
            enc.model.embeddings.requires_grad_(False)
    model.eval()
    batch = examples[example:example + 1]
    s = model.score(batch, k=0, use_posterior=trainer.uses_posterior, exact=True)
    comps = {c: ps for c, ps in model.components().items() if ps}
    return trainer, batch, s, comps


# name, method, options, whether draws are random; the targets each estimates, per component
ESTIMATORS = [
    ("rag_K=N", "rag", {"k": 100}, False),
    ("rag_K=3", "rag", {"k": 3}, False),
    ("vrag_exact_k=N", "vrag", {"estimator": "exact", "k": 100}, False),
    ("vrag_sampled", "vrag", {"estimator": "sampled", "n_samples": 10, "baseline": "none"}, True),
    ("vrag_sampled_baseline", "vrag", {"estimator": "sampled", "n_samples": 10, "baseline": "mean"}, True),
    ("jsa", "jsa", {"proposals": 10, "cache": True}, True),
    ("jsa_nocache", "jsa", {"proposals": 10, "cache": False}, True),
]
TARGETS = {"rag": {"generator": "log_marginal", "prior": "log_marginal"},
           "vrag": {"generator": "elbo", "prior": "elbo", "posterior": "elbo"},
           "jsa": {"generator": "log_marginal", "prior": "log_marginal", "posterior": "inclusive_kl"}}


def run_estimators(model_factory, examples: list[dict], draws: int = 200, example: int = 0):
    """Yield one JSON line per (estimator, component). Each line carries the posterior mass outside
    the estimator's top-K (RAG) and the seconds its draws took."""
    import time

    for name, method, opts, random in ESTIMATORS:
        t0 = time.perf_counter()
        trainer, batch, s, comps = exact_setup(method, model_factory, examples, example, **opts)
        exact = exact_gradients(s, comps)
        est = estimator_draws(trainer, batch, s, draws if random else 1)
        extra = {"example": batch[0]["id"], "seconds": time.perf_counter() - t0}
        if method == "rag":
            post = posterior(s.prior_logits, s.loglik, s.mask).detach()
            top = topk_mask(s.prior_logits, s.mask, opts["k"])
            extra["posterior_mass_outside_topk"] = float(post.masked_fill(top, 0.0).sum())
        for comp, target in TARGETS[method].items():
            yield summary_row(name, comp, target, summarize(est[comp], exact[target][comp]), **extra)


def verify(draws: int, out: str, example: int = 0, threads: int = 2) -> list[str]:
    """Run every estimator on the enumerable knowledge base; write (and return) the JSON lines."""
    import tempfile

    from jsarag.data.examples import load_examples
    from jsarag.evaluate.tiny_kb import build_all, model_factory
    from jsarag.io import atomic_open

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        a = build_all(tmp)
        examples = load_examples(f"{a['kb']}/train.jsonl")
        lines = list(run_estimators(model_factory(a["encoder"], a["causal"], a["kb"]), examples, draws, example))
    with atomic_open(out) as f:
        f.write("".join(line + "\n" for line in lines))
    return lines
