"""The one factory of the latent-variable model: prior and posterior retrievers, generator (with
LoRA), the dense index and the passage store, built from typed config sections."""
from __future__ import annotations

import torch

from jsarag import InputError
from jsarag.config import GeneratorConfig, RetrieverConfig
from jsarag.model.dense_index import DenseIndex
from jsarag.model.device import resolve_device
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
    device = resolve_device(cfg.device, "train.common.device")  # cuda without a GPU stops here
    seed_everything(cfg.seed)
    prior = Encoder.from_source(retriever_dir, retriever.pooling, retriever.normalize, retriever.max_length)
    # the generator loads in bf16 straight onto a GPU (fp32 LoRA); the retrievers stay fp32
    gen = Generator.from_source(generator_dir, generator.kind, lora=cfg.lora, device=device,
                                gradient_checkpointing=cfg.gradient_checkpointing, instruction=cfg.instruction,
                                max_input_tokens=cfg.max_input_tokens, max_target_tokens=cfg.max_target_tokens)
    post = LatentModel.posterior_from_prior(prior) if posterior else None
    store = PassageStore(passages)
    index = DenseIndex(index_dir, device=device, expect_rows=len(store))  # the passage matrix in GPU memory on a GPU
    model = LatentModel(prior, gen, index, store, tau=cfg.tau, posterior=post)
    if device == "cuda":
        model.to_device("cuda")
    return model


def load_trained(model: LatentModel, weights: str) -> None:
    """Load a run's trainable parameters (LoRA, query encoders) into a freshly built model."""
    state = torch.load(weights, weights_only=True)
    missing = set(state) - {n for n, _ in model.named_parameters()}
    if missing:
        raise InputError(f"{weights} has parameters the model lacks: {sorted(missing)[:3]}")
    model.load_state_dict(state, strict=False)
