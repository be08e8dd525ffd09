"""The generator's batched log-likelihood equals an unpadded one-by-one computation."""
import torch

from jsarag.model.generator import Generator, build_prompt

PASSAGES = [{"title": "Paris", "contents": "Paris is the capital of France."},
            {"title": "Nile", "contents": "The Nile is a long river in Africa, flowing north."}]


def reference_loglik(gen, context, passage, target):
    prompt = gen.tokenizer(build_prompt(gen.instruction, context, passage))["input_ids"]
    tgt = gen.tokenizer(" " + target, add_special_tokens=False)["input_ids"] + [gen.tokenizer.eos_token_id]
    ids = torch.tensor([prompt + tgt])
    logits = gen.model(input_ids=ids).logits[0, len(prompt) - 1:-1]
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(tgt)[:, None]).sum()


def test_batched_loglik_matches_unpadded(tiny_causal_dir):
    gen = Generator.from_source(tiny_causal_dir, "causal")
    ctx = ["what is the capital of france", "which river flows through egypt and sudan"]
    tgt = ["Paris", "the Nile river"]
    ll = gen.loglik(ctx, PASSAGES, tgt)
    for i in range(2):
        ref = reference_loglik(gen, ctx[i], PASSAGES[i], tgt[i])
        assert torch.allclose(ll.seq[i], ref, atol=1e-4), (ll.seq[i], ref)
    # only target tokens count: lengths are the target lengths (+ eos)
    assert ll.mask.sum(-1).tolist() == [len(gen.tokenizer(" " + t, add_special_tokens=False)["input_ids"]) + 1 for t in tgt]


def test_lora_only_trains_selected_layers(tiny_causal_dir):
    gen = Generator.from_source(tiny_causal_dir, "causal", lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"], "layers": [1]})
    names = [n for n, p in gen.named_parameters() if p.requires_grad]
    assert names and all("lora" in n and "layers.1." in n for n in names)
    ll = gen.loglik(["q"], PASSAGES[:1], ["a"])
    ll.seq.sum().backward()
    assert all(p.grad is not None for p in gen.parameters() if p.requires_grad)


def test_seq2seq_generator(tiny_seq2seq_dir):
    gen = Generator.from_source(tiny_seq2seq_dir, "seq2seq")
    ll = gen.loglik(["what is the capital of france"] * 2, PASSAGES, ["Paris", "a long river"])
    # reference: labels-based loss of the model itself, one example at a time
    for i, t in enumerate(["Paris", "a long river"]):
        enc = gen.tokenizer(build_prompt(gen.instruction, "what is the capital of france", PASSAGES[i]), return_tensors="pt")
        lab = gen.tokenizer(" " + t, add_special_tokens=False)["input_ids"] + [gen.tokenizer.eos_token_id]
        out = gen.model(**enc, labels=torch.tensor([lab]))
        assert torch.allclose(ll.seq[i], -out.loss * len(lab), atol=1e-4)
    assert len(gen.generate(["q"], PASSAGES[:1], max_new_tokens=3)) == 1


def test_greedy_generation_is_deterministic(tiny_causal_dir):
    gen = Generator.from_source(tiny_causal_dir, "causal")
    a = gen.generate(["what is the capital of france"] * 3, PASSAGES + PASSAGES[:1], max_new_tokens=4, batch_size=2)
    b = gen.generate(["what is the capital of france"] * 3, PASSAGES + PASSAGES[:1], max_new_tokens=4, batch_size=3)
    assert a == b and a[0] == a[2]
