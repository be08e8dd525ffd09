"""The per-GPU memory plan (jsarag/plan.py, jsarag/plan_shapes.py): exact parameter counts, the
plan of configs/paper.yaml, and the plan's fp32 figures against peaks measured on the CPU.

The measurement runs this file as a script in a subprocess. glibc keeps freed heap memory, so the
child runs with MALLOC_MMAP_THRESHOLD_=65536: tensors are mmapped and returned to the system on
free, and the kernel's VmHWM (reset through /proc/self/clear_refs) is the step's peak. A warm-up
step first creates AdamW's state and faults in the code pages the step runs, so the measured peak
is the step's activations, gradients and temporaries. (torch.profiler's memory events were the
other candidate: without its memory-timeline machinery they do not add up to a running total,
and with it the step runs twice as long. The RSS peak repeated within 10 kB over runs.)
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                                  "down_proj"]}
ENC = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 256, "max_position_embeddings": 512}
QLEN = 64


def _gen(layers, inter=112):
    """Mistral-shaped (grouped-query attention, 2 kv heads for 4, SwiGLU, RMSNorm, untied head), and
    narrow: CPU time grows with the hidden size, the activations the plan counts mostly do not."""
    return {"hidden_size": 32, "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2}


# one training step each: the logits' backward, one recomputed layer, every layer kept; then no-grad scoring and encoding
CASES = {
    "checkpointed_logits": {"mode": "train", "gen": _gen(2), "lin": 208, "lt": 48, "n": 8, "gc": True},
    "checkpointed_layer": {"mode": "train", "gen": _gen(2, inter=1536), "lin": 504, "lt": 8, "n": 6, "gc": True},
    "no_checkpointing": {"mode": "train", "gen": _gen(4, inter=224), "lin": 368, "lt": 16, "n": 8, "gc": False},
    "scoring": {"mode": "score", "gen": _gen(2, inter=1536), "lin": 504, "lt": 8, "n": 8},
    "encoding": {"mode": "encode", "batch": 64, "len": 512},
}


# -- the child: measure --------------------------------------------------------------------------
def _rss(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def _peak_of(fn) -> int:
    gc.collect()
    base = _rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    fn()
    return _rss("VmHWM") - base


def _measure(case: dict) -> int:
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, BertConfig, MistralConfig

    from jsarag.evaluate import tiny_kb
    from jsarag.model.encoders import Encoder
    from jsarag.model.generator import Generator

    torch.manual_seed(0)
    tok = tiny_kb.tokenizer(eos=True)
    words = " ".join(f"w{i}" for i in range(260))  # 710 tokens: longer than every case's lengths
    enc_cfg = BertConfig(**ENC, vocab_size=tok.vocab_size)
    if case["mode"] == "encode":
        enc = Encoder(AutoModel.from_config(enc_cfg), tok, "cls", True, case["len"])
        texts = [words] * (case["batch"] - 1) + ["short"]  # padded: attention gets a mask
        enc.encode(texts[:2], batch_size=2)
        return _peak_of(lambda: enc.encode(texts, batch_size=case["batch"]))
    gen_cfg = MistralConfig(**case["gen"], vocab_size=tok.vocab_size, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                            bos_token_id=tok.cls_token_id, tie_word_embeddings=False)
    gen = Generator(AutoModelForCausalLM.from_config(gen_cfg), tok, max_input_tokens=case["lin"], max_target_tokens=case["lt"])
    if case.get("gc"):
        gen.enable_gradient_checkpointing()
    gen.add_lora(**LORA)
    n = case["n"]  # one passage is short: the batch is left-padded, so attention gets a padding mask
    psg = [{"title": "t", "contents": words}] * (n - 1) + [{"title": "t", "contents": "short"}]
    ctx, tgt = ["a question"] * n, [words] * n
    if case["mode"] == "score":
        def score(k=n):
            with torch.inference_mode():
                assert gen.loglik(ctx[:k], psg[-k:], tgt[:k]).tokens.shape[1] == case["lt"]
        score(2)
        return _peak_of(score)
    encs = [Encoder(AutoModel.from_config(enc_cfg), tok, "cls", True, QLEN) for _ in range(2)]
    for e in encs:
        e.model.pooler.requires_grad_(False)  # the lead freezes the pooler; the towers train in eval mode (no dropout)
        e.eval()
    gen.model.train()
    opt = torch.optim.AdamW([p for m in (gen, *encs) for p in m.parameters() if p.requires_grad], lr=1e-4)

    def step(k=n):
        q = [e([words]) for e in encs]
        ll = gen.loglik(ctx[:k], psg[-k:], tgt[:k])
        assert ll.tokens.shape[1] == case["lt"]
        (-ll.seq.mean() - (q[0] * q[1]).sum()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(2)  # warm-up: AdamW's state, code pages, lazily built kernels
    return _peak_of(step)


# -- the parent: plan and compare ----------------------------------------------------------------
def _configs(case: dict):
    from transformers import BertConfig, MistralConfig

    from jsarag.evaluate import tiny_kb

    vocab = tiny_kb.tokenizer().vocab_size
    return (MistralConfig(**case["gen"], vocab_size=vocab, tie_word_embeddings=False) if "gen" in case else None,
            BertConfig(**ENC, vocab_size=vocab))


def planned(case: dict) -> int:
    """The plan's fp32 figure for what the child measures (the step's transient bytes)."""
    from jsarag import plan_shapes as ps

    gen_cfg, enc_cfg = _configs(case)
    if case["mode"] == "encode":
        return ps.bert_inference(ps.bert(enc_cfg), case["batch"], case["len"], 4)
    L, T = case["lin"] + case["lt"], case["lt"]
    if case["mode"] == "score":
        dec = ps.decoder(gen_cfg)
        return max(ps.decoder_inference(dec, case["n"], L, 4), ps.logits_inference(dec, case["n"], T, 4))
    parts = ps.train_parts(gen_cfg, enc_cfg, world=1, n_passages=0, dim=64, n_seq=case["n"], seq_len=L, target_len=T, lora=LORA,
                           posterior=True, compute_dtype="float32", gradient_checkpointing=case["gc"], search_buffer_bytes=0,
                           queries=1, query_len=QLEN)
    return max(ps.train_phases(parts).values())


_MEASURED: dict = {}


def measured() -> dict:
    if not _MEASURED:
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "2",
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
        out = subprocess.run([sys.executable, __file__, json.dumps(CASES)], env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-4000:]
        _MEASURED.update(json.loads(out.stdout.strip().splitlines()[-1]))
    return _MEASURED


if __name__ == "__main__":
    import torch

    torch.set_num_threads(2)
    result = {}
    for name, case in json.loads(sys.argv[1]).items():
        t0 = time.time()
        result[name] = _measure(case)
        print(f"{name}: {result[name] / 1e6:.1f} MB in {time.time() - t0:.1f} s", file=sys.stderr)
    print(json.dumps(result))


# -- the tests -----------------------------------------------------------------------------------
import pytest  # noqa: E402

from jsarag import InputError  # noqa: E402
from jsarag import plan as plan_mod  # noqa: E402
from jsarag import plan_shapes as ps  # noqa: E402
from jsarag.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(CASES))
def test_plan_matches_the_peak_measured_on_the_cpu(name):
    """The plan's fp32 figure for a step (or a no-grad pass) is within 15% of the measured peak."""
    got, want = measured()[name], planned(CASES[name])
    assert got >= 100e6, f"{name}: the measured part is {got / 1e6:.0f} MB, too small to beat the noise"
    assert abs(want / got - 1) <= 0.15, f"{name}: plan {want / 1e6:.1f} MB, measured {got / 1e6:.1f} MB"


def test_lora_count_is_peft_s_own():
    """r x (in + out) per targeted linear, with a layer subset and a module subset, equals the
    trainable parameters peft creates on the same model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, MistralConfig

    cfg = MistralConfig(vocab_size=100, **_gen(3))
    for lora in ({**LORA, "r": 4}, {"r": 2, "target_modules": ["q_proj", "down_proj"], "layers": [0, 2]}):
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_config(cfg), LoraConfig(
            r=lora["r"], target_modules=lora["target_modules"], layers_to_transform=lora.get("layers")))
        want = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert ps.lora_params(ps.decoder(cfg), lora)[0] == want


def test_bundled_paper_models_count_what_the_hub_publishes():
    """Mistral-7B from the bundled config.json, on the meta device, is the published bf16 size of
    its safetensors; bge-large's two configs are the same BERT-large."""
    bundled = plan_mod.bundled_configs()
    gen, _ = plan_mod.model_config("mistralai/Mistral-7B-Instruct-v0.2", "generator")
    assert ps.decoder(gen).params * 2 == bundled["mistralai/Mistral-7B-Instruct-v0.2"]["safetensors_total_size"]
    encs = [ps.bert(plan_mod.model_config(s, "retriever")[0]) for s in ("BAAI/bge-large-en-v1.5", "BAAI/bge-large-en")]
    assert encs[0] == encs[1] and encs[0].frozen == 1024 * 1024 + 1024  # the pooler, not trained
    lora = dict(load_config(ROOT / "configs/paper.yaml")["train"]["common"]["lora"])
    per_layer = 8 * (2 * (4096 + 4096) + 2 * (4096 + 1024) + 3 * (4096 + 14336))  # q o, k v, gate up down
    assert ps.lora_params(ps.decoder(gen), lora)[0] == 32 * per_layer


def test_paper_plan_has_every_gpu_job():
    cfg = load_config(ROOT / "configs/paper.yaml")
    entries = plan_mod.plan_config(cfg)
    gpu_rules = {r for r in plan_mod.GPU_RULES if cfg["resources"].get(r, {}).get("gpu", 0) > 0}
    assert {e["rule"] for e in entries} == gpu_rules
    train = [e for e in entries if e["rule"] == "train" and e["corpus"] == "wiki"]
    assert {e["method"] for e in train} == set(cfg["methods"])
    rows = cfg["corpora"]["wiki"]["expect_passages"]
    for e in train:  # the index sharded over the 4 ranks; both retrievers only where a posterior exists
        assert e["parts"]["index.shard"] == -(-rows // 4) * 1024 * 2
        assert ("posterior.adamw" in e["parts"]) == (e["method"] != "rag")
        top, phase = ps.peak(e["parts"], e["phases"])
        assert e["peak_phase"] == phase and e["total"] == top + int(top * plan_mod.ALLOCATOR_SLACK) + plan_mod.CUDA_CONTEXT
    full = [e for e in entries if e["rule"] == "evaluate" and e["corpus"] == "wiki"]
    assert all(e["parts"]["index.full"] == rows * 1024 * 2 for e in full)
    unknown = [e for e in entries if e["corpus"] == "doqa" and e["rule"] != "dense_shard"]  # the one corpus with no pinned count
    assert unknown and all(e["total"] is None and e["fits"] == {"80 GB": None, "141 GB": None} for e in unknown)
    given = plan_mod.plan_config(cfg, {"doqa": 4_000})
    assert all(e["total"] is not None for e in given if e["corpus"] == "doqa")


def _cli(*args, env=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "jsarag.plan", *args], env=env, capture_output=True, text=True, timeout=300)


def test_cli_prints_each_job_with_its_verdicts():
    out = _cli(str(ROOT / "configs/paper.yaml"), "--passages", "doqa=4000")
    assert out.returncode == 0, out.stderr
    for rule in plan_mod.GPU_RULES:
        assert f"== {rule}: resources.{rule}.gpu = " in out.stdout
    assert "[wiki: 21,015,324 passages, 5,253,831 per rank]" in out.stdout and "[msmarco: 8,841,823 passages" in out.stdout
    assert "[doqa: 4,000 passages" in out.stdout and "rows unknown" not in out.stdout
    lines = [line.strip() for line in out.stdout.splitlines()]
    n80, n141 = (sum(line.startswith(f"{card} card ") for line in lines) for card in plan_mod.CARDS)
    known = sum(line.startswith("total per GPU ") and "without" not in line for line in lines)
    assert n80 == n141 == known > 0
    assert "CUDA context" in out.stdout and "(estimate)" in out.stdout


@pytest.mark.parametrize("arg, message", [
    ("msmarco", "expected CORPUS=N"), ("msmarco=-3", "expected CORPUS=N"), ("nowhere=5", "no corpus 'nowhere'"),
    ("wiki=5", "expect_passages pins 21015324"),
])
def test_bad_passage_counts_are_refused(arg, message, capsys):
    with pytest.raises(InputError, match=message):
        plan_mod.main([str(ROOT / "configs/paper.yaml"), "--passages", arg])
    assert not capsys.readouterr().out


def test_cli_exits_2_on_bad_input():
    out = _cli(str(ROOT / "configs/paper.yaml"), "--passages", "wiki=5")
    assert out.returncode == 2 and out.stderr.startswith("error: --passages wiki=5:") and not out.stdout


def test_no_gpu_jobs(tmp_path):
    out = _cli(str(ROOT / "config.yaml"))
    assert out.returncode == 0 and out.stdout == "no GPU jobs: no rule has resources.<rule>.gpu > 0\n"


def test_an_unbundled_hub_id_offline_names_the_source(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match=r"models.generator.source: 'someone/unknown-7b' is not a local model directory.*bundles only"):
        plan_mod.model_config("someone/unknown-7b", "models.generator.source")


def test_local_model_directories_are_read(tiny_causal_dir, tiny_encoder_dir):
    """A config whose models are local directories: their config.json, counted exactly."""
    from transformers import AutoModel, AutoModelForCausalLM

    cfg = load_config(ROOT / "config.yaml")
    cfg["models"]["generator"]["source"], cfg["models"]["retriever"]["source"] = tiny_causal_dir, tiny_encoder_dir
    cfg["resources"] = {"train": {"gpu": 2}, "evaluate": {"gpu": 1}}
    cfg["train"]["common"]["lora"]["layers"] = None  # the embedded default adapts layers 28-29 of SmolLM2; the tiny model has 2
    cfg["corpora"] = {name: {**c, "expect_passages": 1000} for name, c in cfg["corpora"].items()}
    entries = plan_mod.plan_config(cfg)
    assert {e["rule"] for e in entries} == {"train", "evaluate"}
    gen = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_causal_dir).parameters())
    enc = sum(p.numel() for p in AutoModel.from_pretrained(tiny_encoder_dir).parameters())
    for e in entries:
        assert e["parts"]["generator.weights"] == gen * 2 and e["parts"]["prior.weights"] == enc * 4


def test_saved_tensors_match_the_layer_formula():
    """Exact, without a memory measurement: the tensors autograd keeps in a forward without
    checkpointing (every storage the saved-tensor hooks see, parameters aside) are the plan's
    per-layer formula plus the kept log-softmax, within 2% (at these shapes the padding mask,
    the repeated k / v and the RMSNorm inputs are each more than that)."""
    import torch
    from transformers import AutoModelForCausalLM, MistralConfig

    from jsarag.evaluate import tiny_kb
    from jsarag.model.generator import Generator

    case = {"gen": {**_gen(3, inter=112), "hidden_size": 64}, "lin": 120, "lt": 8, "n": 4}
    tok = tiny_kb.tokenizer(eos=True)
    cfg = MistralConfig(**case["gen"], vocab_size=tok.vocab_size, tie_word_embeddings=False)
    torch.manual_seed(0)
    gen = Generator(AutoModelForCausalLM.from_config(cfg), tok, max_input_tokens=case["lin"], max_target_tokens=case["lt"])
    gen.add_lora(**LORA)
    gen.model.train()
    words = " ".join(f"w{i}" for i in range(120))
    n = case["n"]
    params = {p.untyped_storage().data_ptr() for p in gen.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ll = gen.loglik(["a question"] * n, [{"title": "t", "contents": words}] * (n - 1) + [{"title": "t", "contents": "x"}],
                        [words] * n)
    L, T = case["lin"] + case["lt"], ll.tokens.shape[1]
    assert T == case["lt"]
    dec = ps.decoder(cfg)
    acts = ps.generator_activations(dec, LORA, n, L, T, 4, checkpointing=False)
    want = acts["activations.layers"] + n * T * dec.vocab * 4
    assert abs(want / sum(seen.values()) - 1) < 0.02, (want, sum(seen.values()))
