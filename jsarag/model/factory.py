"""The one factory of the latent-variable model: prior and posterior retrievers, generator (with
LoRA), the dense index and the passage store, built from typed config sections."""
from __future__ import annotations

import torch

from jsarag import InputError
from jsarag.config import GeneratorConfig, RetrieverConfig
from jsarag.model.dense_index import DenseIndex
from jsarag.model.encoders import Encoder
from jsarag.model.generator import Generator
from jsarag.model.latent import LatentModel
from jsarag.model.passages import PassageStore


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(cfg, retriever: RetrieverConfig, generator: GeneratorConfig, retriever_dir: str, generator_dir: str,
                index_dir: str, passages: str, posterior: bool) -> LatentModel:
    """Base models (+ LoRA), the index and the store. `cfg` is a training config (seed, tau, LoRA,
    prompt lengths); `posterior` adds the posterior retriever. Seeded, so LoRA init is reproducible."""
    seed_everything(cfg.seed)
    prior = Encoder.from_source(retriever_dir, retriever.pooling, retriever.normalize, retriever.max_length)
    gen = Generator.from_source(generator_dir, generator.kind, lora=cfg.lora, instruction=cfg.instruction,
                                max_input_tokens=cfg.max_input_tokens, max_target_tokens=cfg.max_target_tokens)
    post = LatentModel.posterior_from_prior(prior) if posterior else None
    model = LatentModel(prior, gen, DenseIndex(index_dir), PassageStore(passages), tau=cfg.tau, posterior=post)
    if torch.cuda.is_available():  # bf16 generator on a GPU; retrievers stay fp32
        gen.model.to(torch.bfloat16)
        model.to_device("cuda")
    return model


def load_trained(model: LatentModel, weights: str) -> None:
    """Load a run's trainable parameters (LoRA, query encoders) into a freshly built model."""
    state = torch.load(weights, weights_only=True)
    missing = set(state) - {n for n, _ in model.named_parameters()}
    if missing:
        raise InputError(f"{weights} has parameters the model lacks: {sorted(missing)[:3]}")
    model.load_state_dict(state, strict=False)
