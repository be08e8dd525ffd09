"""Typed training configs, one per method (TRL style). Unknown keys are refused by name."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from jsarag import InputError
from jsarag.generator import DEFAULT_INSTRUCTION


@dataclass
class TrainConfig:
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
    clip: float = 1.0
    tau: float = 0.1
    k: int = 3  # top-k per retriever in the candidate set
    exact: bool = False  # normalize over the whole knowledge base (small KBs only)
    train_prior: bool = True
    index_refresh: int = 0  # re-encode the passages with the prior encoder every N steps (0: never)
    max_input_tokens: int = 256
    max_target_tokens: int = 32
    checkpoint_every: int = 50
    threads: int = 2
    seed: int = 0
    lora: dict | None = field(default_factory=lambda: {"r": 8, "alpha": 16, "dropout": 0.0})
    instruction: str = DEFAULT_INSTRUCTION

    @classmethod
    def from_dict(cls, d: dict, where: str = "train"):
        names = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise InputError(f"unknown config key {where}.{bad[0]} (allowed: {', '.join(sorted(names))})")
        kw = dict(d)
        if "betas" in kw:
            kw["betas"] = tuple(kw["betas"])
        return cls(**kw)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass
class RAGConfig(TrainConfig):
    variant: str = "sequence"  # sequence | token

    def __post_init__(self):
        if self.variant not in ("sequence", "token"):
            raise InputError(f"train.rag.variant must be sequence or token, got {self.variant!r}")


@dataclass
class VRAGConfig(TrainConfig):
    estimator: str = "exact"  # exact: weighted sum over q's top-k; sampled: score-function estimate
    kl_weight: float = 1.0
    kl_over_union: bool = False
    n_samples: int = 4
    baseline: str = "mean"  # none | mean (leave-one-out)

    def __post_init__(self):
        if self.estimator not in ("exact", "sampled"):
            raise InputError(f"train.vrag.estimator must be exact or sampled, got {self.estimator!r}")
        if self.baseline not in ("none", "mean"):
            raise InputError(f"train.vrag.baseline must be none or mean, got {self.baseline!r}")


@dataclass
class JSAConfig(TrainConfig):
    proposals: int = 10  # m, MIS proposals per example and step
    token_average: bool = False  # authors' code: token-averaged log-likelihood in acceptance and loss
    cache: bool = True  # textbook persistent MIS; False: authors' code (restart each step)
