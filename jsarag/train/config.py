"""Typed training configs, one per method (TRL style). Unknown keys are refused by name."""
from __future__ import annotations

from dataclasses import dataclass, field

from jsarag import InputError
from jsarag.config import Section, choice
from jsarag.model.generator import DEFAULT_INSTRUCTION


def method_config(method: str, train: dict) -> TrainConfig:
    """The typed config of `method` from a merged train section."""
    from jsarag.train import TRAINERS

    if method not in TRAINERS:
        raise InputError(f"unknown method {method!r} (choose from {', '.join(TRAINERS)})")
    return TRAINERS[method].config_class.from_dict(train, where=f"train.{method}")


@dataclass
class TrainConfig(Section):
    epochs: int = 1
    max_steps: int = 0  # > 0 caps optimizer steps
    batch_size: int = 1
    grad_accum: int = 1
    lr_generator: float = 2e-4
    lr_retriever: float = 1e-5
    betas: tuple = (0.9, 0.95)
    eps: float = 1e-7
    weight_decay: float = 0.01
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    schedule: str = "cosine"  # cosine: decay to min_lr_ratio at the last step; authors: reach it at half the steps, then flat
    clip: float = 1.0
    clip_per_component: bool = True  # one norm per component (generator, prior, posterior); False: one global norm (authors)
    retriever_dropout: bool = False  # dropout in the retriever towers while training (authors: on, HF train mode)
    tau: float = 0.1
    k: int = 3  # top-k per retriever in the candidate set
    exact: bool = False  # normalize over the whole knowledge base (small KBs only)
    train_prior: bool = True
    index_refresh: int = 0  # re-encode the passages with the prior encoder every N steps (0: never)
    max_input_tokens: int = 256
    max_target_tokens: int = 32
    checkpoint_every: int = 50
    threads: int = 2
    device: str = "auto"  # auto | cpu | cuda (cuda stops with an error when no GPU is present)
    gradient_checkpointing: bool = False  # recompute the generator's activations in backward (training only)
    search_buffer_mb: int = 1024  # bound on the fp16 score matrix of one search tile (jsarag/model/search.py)
    seed: int = 0
    lora: dict | None = field(default_factory=lambda: {"r": 8, "alpha": 16, "dropout": 0.0})
    instruction: str = DEFAULT_INSTRUCTION
    valid_every: int = 0  # validate every N optimizer steps (and at the last) on the validation split (0: never)
    valid_k: tuple = (1, 5, 20)  # the prior's R@k logged at validation
    keep_best: str = ""  # "", "loss" or "r@K" / "mrr@10": save the best validated step's model instead of the last

    def check(self, where):
        if self.keep_best:
            allowed = ["loss", "mrr@10", *(f"r@{k}" for k in self.valid_k)]
            choice(self.keep_best, allowed, f"{where}.keep_best")
            if self.valid_every <= 0:
                raise InputError(f"{where}.keep_best: needs valid_every > 0")
        choice(self.schedule, ("cosine", "authors"), f"{where}.schedule")


@dataclass
class RAGConfig(TrainConfig):
    variant: str = "sequence"  # sequence | token
    token_average: bool = False  # authors: token-averaged log-likelihood of y
    double_softmax: bool = False  # authors: the top-K prior is softmaxed twice

    def check(self, where):
        super().check(where)
        choice(self.variant, ("sequence", "token"), f"{where}.variant")


@dataclass
class VRAGConfig(TrainConfig):
    estimator: str = "exact"  # exact: weighted sum over q's top-k; sampled: score-function estimate
    kl_weight: float = 1.0
    kl_support: str = "topk"  # topk | union_all (q's whole support on the union) | union_kl_only (authors' union option)
    kl_prior: str = "candidates"  # candidates: p over the candidate set; support: p renormalized over the KL's set (authors)
    posterior_tau: float = 0.0  # q's temperature; 0: the retrievers' tau (textbook); authors: 1.0
    token_average: bool = False  # authors: token-averaged log-likelihood of y
    n_samples: int = 4
    baseline: str = "mean"  # none | mean (leave-one-out)

    def check(self, where):
        super().check(where)
        choice(self.kl_support, ("topk", "union_all", "union_kl_only"), f"{where}.kl_support")
        choice(self.kl_prior, ("candidates", "support"), f"{where}.kl_prior")
        if self.estimator == "sampled" and self.kl_support == "union_kl_only":
            raise InputError(f"{where}.kl_support: union_kl_only needs estimator: exact")
        choice(self.estimator, ("exact", "sampled"), f"{where}.estimator")
        choice(self.baseline, ("none", "mean"), f"{where}.baseline")


@dataclass
class JSAConfig(TrainConfig):
    proposals: int = 10  # m, MIS proposals per example and step
    token_average: bool = False  # authors' code: token-averaged log-likelihood in acceptance and loss
    cache: bool = True  # textbook persistent MIS; False: authors' code (restart each step)
