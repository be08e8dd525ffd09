"""The MIS sweep of a trained JSA-RAG model: acceptance rate and distinct states of the E-step on
validation examples, against the number of proposals m and the top-k per retriever."""
from __future__ import annotations

import torch

from jsarag.config import RunParams
from jsarag.data.examples import load_examples
from jsarag.evaluate.predict import load_for_eval
from jsarag.io import write_jsonl
from jsarag.layout import RunFiles
from jsarag.train.mis import log_importance_weights, mis
from jsarag.train.objectives import masked_log_softmax, topk_mask


@torch.inference_mode()
def mis_sweep(p: RunParams, examples_path: str, passages: str, index: str, retriever: str, generator: str,
              run_dir: str) -> list[dict]:
    """E-step statistics of the trained JSA model on validation examples, for each (m, k). The
    generator scores the candidates of the largest k once; smaller k use subsets of them."""
    cfg, sw = p.train, p.evaluate.mis_sweep
    files = RunFiles(run_dir)
    model = load_for_eval(p, passages, index, retriever, generator, files.weights)
    examples = load_examples(examples_path)[: sw.n_examples]
    sampler = torch.Generator().manual_seed(cfg.seed)
    rows_out = []
    stats = {(m, k): [] for m in sw.proposals for k in sw.k}
    for s in range(0, len(examples), 4):
        batch = examples[s:s + 4]
        sc = model.score(batch, k=max(sw.k), use_posterior=True)
        for k in sw.k:
            mask = topk_mask(sc.prior_logits, sc.mask, k) | topk_mask(sc.post_logits, sc.mask, k)
            logp, logq = masked_log_softmax(sc.prior_logits, mask), masked_log_softmax(sc.post_logits, mask)
            lengths = sc.target_lengths if cfg.token_average else None
            log_w = log_importance_weights(logp, sc.loglik, logq, lengths).masked_fill(~mask, float("-inf"))
            for m in sw.proposals:
                res = mis(log_w.float().cpu(), logq.float().cpu(), m, None, sampler)  # the sampler is a CPU generator
                st = res.stats(torch.full((len(batch),), -1))
                stats[(m, k)].append((len(batch), st["mis/acceptance_rate"], st["mis/distinct"]))
    for (m, k), parts in stats.items():
        n = sum(x[0] for x in parts)
        rows_out.append({"proposals": m, "k": k, "n": n,
                         "acceptance_rate": float(sum(x[0] * x[1] for x in parts) / n),
                         "distinct": float(sum(x[0] * x[2] for x in parts) / n)})
    write_jsonl(files.mis_sweep, rows_out)
    return rows_out
