"""Bi-encoder towers: the frozen passage encoder and the trainable prior/posterior query encoders."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from jsarag.model.device import autocast
from jsarag.model.sources import load_model, load_tokenizer


def passage_text(p: dict) -> str:
    """What the passage encoder reads: title, then text."""
    title = p.get("title") or ""
    return f"{title}\n{p['contents']}" if title else p["contents"]


class Encoder(nn.Module):
    """A transformers encoder with CLS or mean pooling, optionally L2-normalized.

    The embedding is pooled from the last hidden state, so the model's own pooler layer (BERT's
    dense + tanh over CLS) never contributes: it is frozen, which is what lets DDP run without
    `find_unused_parameters`. On a GPU the forward runs under bf16 autocast (fp32 master weights
    when trained), the same precision the passage encoder uses (jsarag/index/shards.py)."""

    def __init__(self, model, tokenizer, pooling: str = "mean", normalize: bool = True, max_length: int = 256):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be cls or mean, got {pooling!r}")
        self.model, self.tokenizer = model, tokenizer
        self.pooling, self.normalize, self.max_length = pooling, normalize, max_length
        for name, p in model.named_parameters():
            if name.split(".")[0] == "pooler":
                p.requires_grad_(False)

    @classmethod
    def from_source(cls, source: str, pooling: str = "mean", normalize: bool = True, max_length: int = 256):
        return cls(load_model(source, "encoder"), load_tokenizer(source), pooling, normalize, max_length)

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def forward(self, texts: list[str]) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(dev)
        with autocast(dev):
            hidden = self.model(**enc).last_hidden_state.float()
        if self.pooling == "cls":
            emb = hidden[:, 0]
        else:
            m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return nn.functional.normalize(emb, dim=-1) if self.normalize else emb

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Encode without gradients. Texts are batched by length (less padding), output in input order."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        was_training = self.training
        self.eval()
        it = range(0, len(texts), batch_size)
        for s in tqdm(it, desc="encode", disable=not progress, mininterval=5):
            idx = order[s : s + batch_size]
            out[idx] = self.forward([texts[i] for i in idx]).float().cpu().numpy()
        self.train(was_training)
        return out
