"""Shared fixtures: tiny transformers models built locally from the real MiniLM tokenizer, and a
tiny knowledge base with a real FAISS index (jsarag.tiny). Offline by construction."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from jsarag.evaluate import tiny_kb as tiny  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    return tiny.tokenizer()


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory):
    return tiny.encoder(tmp_path_factory.mktemp("tiny_encoder"))


@pytest.fixture(scope="session")
def tiny_causal_dir(tmp_path_factory):
    return tiny.causal(tmp_path_factory.mktemp("tiny_causal"))


@pytest.fixture(scope="session")
def tiny_seq2seq_dir(tmp_path_factory):
    return tiny.seq2seq(tmp_path_factory.mktemp("tiny_t5"))


@pytest.fixture(scope="session")
def tiny_kb(tmp_path_factory, tiny_encoder_dir):
    return tiny.knowledge_base(tmp_path_factory.mktemp("kb"), tiny_encoder_dir)


@pytest.fixture
def tiny_model_factory(tiny_encoder_dir, tiny_causal_dir, tiny_kb):
    """Build a LatentModel on the tiny assets for a method and config."""
    return tiny.model_factory(tiny_encoder_dir, tiny_causal_dir, tiny_kb)
