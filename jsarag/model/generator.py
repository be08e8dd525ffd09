"""The generator p(y|x,h): a transformers LM reading a prompt built from the passage h and context x.

Log-likelihoods of many (x, h, y) triples come from one batched forward pass. Causal LMs are
left-padded so every target sits at the right edge, and logits are computed only there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from jsarag.model.device import autocast, is_cuda
from jsarag.model.sources import load_model, load_tokenizer
from jsarag.phases import phase

DEFAULT_INSTRUCTION = "Give a short answer to the Question based on relevant information given in Input."


def build_prompt(instruction: str, context: str, passage: dict) -> str:
    title = passage.get("title") or ""
    return f"{instruction}\nInput: {title}\n{passage['contents']}\nQuestion: {context}\nAnswer:"


def left_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> left-padded input ids and attention mask, [n, max length]."""
    L = max(map(len, seqs))
    ids = torch.full((len(seqs), L), pad, dtype=torch.long)
    att = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, L - len(s):] = torch.tensor(s)
        att[i, L - len(s):] = 1
    return ids, att


@dataclass
class LogLik:
    seq: torch.Tensor  # [n] sum over target tokens of log p(y_t | x, h, y_<t)
    tokens: torch.Tensor  # [n, T] per-token log-probs, right-aligned, 0 where masked
    mask: torch.Tensor  # [n, T] bool, True on target tokens
    n_tokens: int  # tokens the forward pass processed (for tokens/s)

    @property
    def length(self) -> torch.Tensor:
        return self.mask.sum(-1)


class Generator(nn.Module):
    def __init__(self, model, tokenizer, instruction: str = DEFAULT_INSTRUCTION, max_input_tokens: int = 256, max_target_tokens: int = 32):
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.instruction = instruction
        self.max_input_tokens, self.max_target_tokens = max_input_tokens, max_target_tokens
        self.is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"

    @classmethod
    def from_source(cls, source: str, kind: str = "causal", lora: dict | None = None, device: str = "cpu",
                    gradient_checkpointing: bool = False, **kw):
        """Load the base model in the device's compute dtype (bf16 on a GPU), straight onto it."""
        from jsarag.model.device import compute_dtype

        model = load_model(source, kind, dtype=compute_dtype(device), device=device)
        tok = load_tokenizer(source)
        gen = cls(model, tok, **kw)
        if gradient_checkpointing:
            gen.enable_gradient_checkpointing()
        if lora:
            gen.add_lora(**lora)
        return gen

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each layer's activations in backward instead of keeping them (non-reentrant,
        so a frozen base with LoRA adapters still gets gradients)."""
        if hasattr(self.model, "activation_checkpointing_enable"):  # transformers >= 5.2x
            self.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model.config.use_cache = False

    def add_lora(self, r: int = 8, alpha: int = 16, dropout: float = 0.0, target_modules=None, layers=None):
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules) if target_modules else None,
                         layers_to_transform=list(layers) if layers else None,
                         task_type="SEQ_2_SEQ_LM" if self.is_encoder_decoder else "CAUSAL_LM")
        self.model = get_peft_model(self.model, cfg)
        # LoRA weights (and so their Adam state) in fp32 even on a bf16 base: bf16 would round
        # away updates of lr 2e-5. On a GPU the forward runs under bf16 autocast, and peft's cast of
        # each adapter's input to the adapter's dtype is turned off: without it every LoRA
        # projection would read an fp32 copy of its bf16 input and run its matmuls in fp32.
        for p in self.model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
        if is_cuda(self.device):
            for m in self.model.modules():
                if hasattr(m, "cast_input_dtype_enabled"):
                    m.cast_input_dtype_enabled = False

    @property
    def device(self):
        return next(self.model.parameters()).device

    # -- tokenization -----------------------------------------------------------------------
    def _prompt_ids(self, contexts, passages) -> list[list[int]]:
        """Prompt token ids within max_input_tokens: an over-long prompt loses the end of its passage,
        not its instruction (and BOS); only a context too long on its own is cut from the left."""
        texts = [build_prompt(self.instruction, c, p) for c, p in zip(contexts, passages)]
        ids = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        for i, (c, p) in enumerate(zip(contexts, passages)):
            for _ in range(3):  # re-tokenizing after a cut can shift a token or two
                excess = len(ids[i]) - self.max_input_tokens
                body = self.tokenizer(p["contents"], add_special_tokens=False)["input_ids"]
                if excess <= 0 or not body:
                    break
                p = {**p, "contents": self.tokenizer.decode(body[: max(0, len(body) - excess - 1)])}
                ids[i] = self.tokenizer(build_prompt(self.instruction, c, p), add_special_tokens=True)["input_ids"]
        return [x[-self.max_input_tokens:] for x in ids]

    def _target_ids(self, targets, eos: list[bool] | None = None) -> list[list[int]]:
        """' ' + target, then EOS (unless eos[i] is False: an answer cut off by max_new_tokens ended nowhere)."""
        ids = self.tokenizer([" " + t for t in targets], add_special_tokens=False)["input_ids"]
        end = self.tokenizer.eos_token_id
        eos = eos or [True] * len(ids)
        return [x[: self.max_target_tokens - 1] + [end] if e else x[: self.max_target_tokens] for x, e in zip(ids, eos)]

    # -- scoring ----------------------------------------------------------------------------
    def loglik(self, contexts: list[str], passages: list[dict], targets: list[str], eos: list[bool] | None = None) -> LogLik:
        """log p(y|x,h) for aligned lists of contexts, passages and targets (one forward pass);
        eos[i] False scores target i without the closing EOS."""
        with phase("tokenize"):
            prompts, tgts = self._prompt_ids(contexts, passages), self._target_ids(targets, eos)
        T = max(len(t) for t in tgts)
        dev = self.device
        tmask = torch.zeros(len(tgts), T, dtype=torch.bool, device=dev)
        tgt = torch.full((len(tgts), T), self.tokenizer.pad_token_id, dtype=torch.long, device=dev)
        for i, t in enumerate(tgts):
            tgt[i, T - len(t):] = torch.tensor(t, device=dev)
            tmask[i, T - len(t):] = True
        with phase("generator_forward"):
            if self.is_encoder_decoder:
                logits, n_tok = self._seq2seq_logits(prompts, tgts, T)
            else:
                logits, n_tok = self._causal_logits(prompts, tgts, T)
            logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        logp = torch.where(tmask, logp, torch.zeros_like(logp))
        return LogLik(seq=logp.sum(-1), tokens=logp, mask=tmask, n_tokens=n_tok)

    def _causal_logits(self, prompts, tgts, T):
        ids, att = left_pad([p + t for p, t in zip(prompts, tgts)], self.tokenizer.pad_token_id)
        pos = (att.cumsum(-1) - 1).clamp(min=0)
        dev = self.device
        with autocast(dev):
            out = self.model(input_ids=ids.to(dev), attention_mask=att.to(dev), position_ids=pos.to(dev), logits_to_keep=T + 1)
        # logits at position j predict token j+1: keep the T positions that predict the targets
        return out.logits[:, -(T + 1):-1], int(att.sum())

    def _seq2seq_logits(self, prompts, tgts, T):
        ids, att = left_pad(prompts, self.tokenizer.pad_token_id)
        # standard right-padded decoder labels; logits are re-aligned to the right edge afterwards
        labels = torch.full((len(tgts), T), -100, dtype=torch.long)
        for i, t in enumerate(tgts):
            labels[i, :len(t)] = torch.tensor(t)
        dev = self.device
        with autocast(dev):
            out = self.model(input_ids=ids.to(dev), attention_mask=att.to(dev), labels=labels.to(dev))
        logits = torch.stack([out.logits[i].roll(T - len(t), dims=0) for i, t in enumerate(tgts)])
        return logits, int(att.sum()) + sum(map(len, tgts))

    # -- decoding ---------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, contexts: list[str], passages: list[dict], max_new_tokens: int = 16, batch_size: int = 16,
                 finished: list[bool] | None = None) -> list[str]:
        """Greedy decoding, one answer per (context, passage); `finished`, if given, receives whether
        each generation ended with EOS (False: cut off at max_new_tokens)."""
        outs: list[str] = []
        pad = self.tokenizer.pad_token_id
        was_training = self.model.training
        self.model.eval()
        prompts = self._prompt_ids(contexts, passages)
        for s in range(0, len(prompts), batch_size):
            ids, att = left_pad(prompts[s: s + batch_size], pad)
            L = ids.shape[1]
            with autocast(self.device):  # the KV cache on: evaluation builds the generator without checkpointing
                gen = self.model.generate(input_ids=ids.to(self.device), attention_mask=att.to(self.device), max_new_tokens=max_new_tokens,
                                          do_sample=False, num_beams=1, pad_token_id=pad, eos_token_id=self.tokenizer.eos_token_id,
                                          use_cache=True)
            new = gen if self.is_encoder_decoder else gen[:, L:]
            if finished is not None:
                finished.extend((new == self.tokenizer.eos_token_id).any(-1).tolist())
            for row in self.tokenizer.batch_decode(new, skip_special_tokens=True):
                outs.append(row.strip().split("\n")[0].strip())
        self.model.train(was_training)
        return outs
