"""Validation during training: every `valid_every` optimizer steps, the prior retriever's R@k and
the generator's loss on the validation split, logged as rows of the training log; with
`keep_best`, the trainable state of the best step by that validation metric is the one saved.

The generator's validation loss is -log p(y|x,h) per target token, h the prior's top-1 passage
(the passage greedy top-1 decoding reads), averaged over the validation examples. The test split is
never read here: the train rule hands the trainer the validation split only.
"""
from __future__ import annotations

import logging

import torch

from jsarag.data.examples import context_text, target_text
from jsarag.evaluate.metrics import passage_hits, retrieval_metrics
from jsarag.model.latent import LatentModel

log = logging.getLogger("jsarag.train")

# metric -> whether larger is better (the retrieval keys are "r@K" and "mrr@10")
LOWER_IS_BETTER = ("loss",)


def metric_key(name: str) -> str:
    return f"valid/{name}"


@torch.inference_mode()
def validate(model: LatentModel, examples: list[dict], k_values, batch_size: int = 8) -> dict[str, float]:
    """{"valid/r@K": ..., "valid/mrr@10": ..., "valid/loss": ...} on `examples` (R@k in points)."""
    modes = {m: m.training for m in model.modules()}  # each module's own mode (retrievers may stay in eval)
    model.eval()
    try:
        xs = [context_text(e) for e in examples]
        q = model.prior.encode(xs, batch_size=64)
        rows = model.index.search(torch.from_numpy(q), max(k_values), replicated=True)  # every rank validates the same questions
        rows = [[int(i) for i in r if i >= 0] for r in rows]  # -1: fewer passages than k
        hits = [passage_hits(e, model.store.get(r)) for e, r in zip(examples, rows)]
        out = {metric_key(k): v for k, v in retrieval_metrics(hits, list(k_values)).items()}
        ys = [target_text(e) for e in examples]
        nll, ntok = 0.0, 0
        for s in range(0, len(examples), batch_size):
            ll = model.generator.loglik(xs[s:s + batch_size], [model.store[int(r[0])] for r in rows[s:s + batch_size]],
                                        ys[s:s + batch_size])
            nll -= float(ll.seq.float().sum())
            ntok += int(ll.mask.sum())
        out[metric_key("loss")] = nll / max(1, ntok)
    finally:
        for m, mode in modes.items():
            m.train(mode)
    return out


class Validator:
    """Runs `validate` every `every` steps and remembers the best step's trainable state."""

    def __init__(self, examples: list[dict] | None, every: int, k_values, keep_best: str = ""):
        self.examples, self.every, self.k_values = examples or [], every, list(k_values)
        self.keep_best = keep_best
        self.best: dict = {}  # {"step", "value", "state"} of the best validated step

    @property
    def active(self) -> bool:
        return bool(self.examples) and self.every > 0

    def due(self, step: int, total: int) -> bool:
        return self.active and (step % self.every == 0 or step == total)

    def better(self, value: float) -> bool:
        if "value" not in self.best:
            return True
        lower = self.keep_best in LOWER_IS_BETTER
        return value < self.best["value"] if lower else value > self.best["value"]

    def run(self, step: int, model: LatentModel, trainable_state) -> dict:
        """The validation row of `step`; updates the best state when `keep_best` is set."""
        row = {"step": step, **validate(model, self.examples, self.k_values)}
        if self.keep_best:
            value = row[metric_key(self.keep_best)]
            if self.better(value):
                self.best = {"step": step, "value": value, "state": trainable_state()}
        log.info("validation at step %d: %s", step, {k: round(v, 4) for k, v in row.items() if k != "step"})
        return row

    def restore_best(self, model: LatentModel) -> int | None:
        """Load the best validated state into `model`; returns its step (None when not kept)."""
        if not self.keep_best or "state" not in self.best:
            return None
        model.load_state_dict(self.best["state"], strict=False)
        return self.best["step"]
