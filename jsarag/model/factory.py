"""The one factory of the latent-variable model: prior and posterior retrievers, generator (with
LoRA), the dense index and the passage store, built from typed config sections."""
from __future__ import annotations

import torch

from jsarag import InputError
from jsarag.config import GeneratorConfig, RetrieverConfig
from jsarag.fingerprint import check_index_against_passages
from jsarag.model.dense_index import DenseIndex, Group
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
                index_dir: str, passages: str, posterior: bool, device: str | None = None, shard: Group | None = None,
                training: bool = True) -> LatentModel:
    """Base models (+ LoRA), the index and the store. `cfg` is a training config (seed, tau, LoRA,
    prompt lengths); `posterior` adds the posterior retriever. Seeded, so LoRA init is reproducible.

    `device` is this process's device as `placement` names it ("cpu" or "cuda:N"; by default this
    process's local rank, resolved from cfg.device): every part is built there. `shard`, the
    training ranks' group, makes each rank hold its own rows of the index. `training` False (evaluation)
    builds the generator without gradient checkpointing, so decoding keeps its KV cache."""
    device = device or resolve_device(cfg.device, "train.common.device")  # cuda without a GPU stops here
    if device == "cuda":
        raise InputError("build_model: a GPU must be named cuda:N (jsarag.model.device.placement)")
    seed_everything(cfg.seed)
    prior = Encoder.from_source(retriever_dir, retriever.pooling, retriever.normalize, retriever.max_length)
    # the generator loads in bf16 straight onto its GPU (fp32 LoRA); the retrievers keep fp32 weights
    gen = Generator.from_source(generator_dir, generator.kind, lora=cfg.lora, device=device,
                                gradient_checkpointing=cfg.gradient_checkpointing and training, instruction=cfg.instruction,
                                max_input_tokens=cfg.max_input_tokens, max_target_tokens=cfg.max_target_tokens)
    post = LatentModel.posterior_from_prior(prior) if posterior else None
    check_index_against_passages(index_dir, passages)  # built from this passages.jsonl, as it is now (jsarag/fingerprint.py)
    store = PassageStore(passages)
    index = DenseIndex(index_dir, device=device, expect_rows=len(store), shard=shard,
                       buffer_bytes=cfg.search_buffer_mb << 20)  # on a GPU, the held rows in its memory
    model = LatentModel(prior, gen, index, store, tau=cfg.tau, posterior=post)
    return model.to_device(device)


def load_trained(model: LatentModel, weights: str) -> None:
    """Load a run's trainable parameters (LoRA, query encoders) into a freshly built model."""
    state = torch.load(weights, map_location=model.device, weights_only=True)
    missing = set(state) - {n for n, _ in model.named_parameters()}
    if missing:
        raise InputError(f"{weights} has parameters the model lacks: {sorted(missing)[:3]}")
    model.load_state_dict(state, strict=False)
