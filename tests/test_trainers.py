"""Every trainer trains on tiny models; checkpoints resume at the exact step, bit for bit."""
import json

import pytest
import torch

from jsarag.data.examples import load_examples
from jsarag.train import TRAINERS

METHOD_OPTS = {
    "rag": [{"variant": "sequence"}, {"variant": "token"}, {"variant": "token", "token_average": True, "double_softmax": True}],
    "vrag": [{"estimator": "exact"}, {"estimator": "sampled", "baseline": "mean"}, {"estimator": "exact", "kl_support": "union_all"},
             {"estimator": "exact", "kl_support": "union_kl_only", "kl_prior": "support", "posterior_tau": 1.0, "token_average": True}],
    "jsa": [{"cache": True}, {"cache": False, "token_average": True, "clip_per_component": False, "schedule": "authors",
                                "retriever_dropout": True}],
}


def make_cfg(method, **kw):
    base = dict(epochs=2, batch_size=2, lr_generator=1e-3, lr_retriever=1e-3, warmup_steps=1, k=3, tau=1.0, threads=1,
                checkpoint_every=2, lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, max_input_tokens=128)
    base.update(kw)
    return TRAINERS[method].config_class.from_dict(base)


@pytest.mark.parametrize("method,opts", [(m, o) for m, os in METHOD_OPTS.items() for o in os])
def test_trainer_trains_and_logs(method, opts, tiny_model_factory, tiny_kb, tmp_path):
    cfg = make_cfg(method, **opts)
    model = tiny_model_factory(method, cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    tr = TRAINERS[method](cfg, model, load_examples(tiny_kb / "train.jsonl"), tmp_path)
    summary = tr.train(progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == tr.total_steps == summary["steps"] == 6
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert rows[0]["grad_norm/generator"] > 0 and rows[0]["grad_norm/prior"] > 0
    if method != "rag":
        assert rows[0]["grad_norm/posterior"] > 0
    if method == "jsa":
        assert 0 <= rows[-1]["mis/acceptance_rate"] <= 1 and rows[-1]["mis/distinct"] >= 1
        assert 0 <= rows[-1]["mis/move_rate"] <= rows[-1]["mis/acceptance_rate"]
        if opts["cache"]:
            assert "mis/cache_survived" in rows[-1] and len(tr.state["cache"]) == 6
            # 6 examples, 3 steps per epoch: epoch 1 never hits the cache, epoch 2 always does
            assert [r["mis/cache_hit_rate"] for r in rows] == [0, 0, 0, 1, 1, 1]
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert any("lora" in n for n in changed) and any(n.startswith("prior.") for n in changed)
    assert (tmp_path / "model" / "trainable.pt").exists()


@pytest.mark.parametrize("method", ["rag", "vrag", "jsa"])
def test_resume_after_kill_is_exact(method, tiny_model_factory, tiny_kb, tmp_path):
    opts = {"vrag": {"estimator": "sampled"}}.get(method, {})
    examples = load_examples(tiny_kb / "train.jsonl")
    cfg = make_cfg(method, **opts)
    straight = TRAINERS[method](cfg, tiny_model_factory(method, cfg), examples, tmp_path / "a")
    straight.train(progress=False)
    # a run killed after step 3: its last checkpoint is step 2, so step 3 is lost and redone
    killed = TRAINERS[method](cfg, tiny_model_factory(method, cfg), examples, tmp_path / "b")
    assert killed.train(progress=False, stop_after=3) is None
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 3
    (tmp_path / "b" / "metrics.jsonl").unlink()  # Snakemake removes a killed job's outputs before rerunning it
    torch.manual_seed(1234)  # a restart does not share the dead process's RNG
    resumed = TRAINERS[method](cfg, tiny_model_factory(method, cfg), examples, tmp_path / "b")
    resumed.train(progress=False)
    a, b = straight.trainable_state(), resumed.trainable_state()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    strip = lambda ls: [{k: v for k, v in json.loads(line).items() if k not in ("step_time", "tokens_per_s")} for line in ls]
    assert strip(la) == strip(lb)


def test_unknown_config_key_is_named():
    from jsarag import InputError

    with pytest.raises(InputError, match=r"train\.jsa\.proposal"):
        TRAINERS["jsa"].config_class.from_dict({"proposal": 3}, where="train.jsa")


def test_checkpoint_of_another_config_is_not_resumed(tiny_model_factory, tiny_kb, tmp_path):
    examples = load_examples(tiny_kb / "train.jsonl")
    cfg = make_cfg("rag")
    TRAINERS["rag"](cfg, tiny_model_factory("rag", cfg), examples, tmp_path).train(progress=False)
    changed = make_cfg("rag", lr_generator=5e-4)
    tr = TRAINERS["rag"](changed, tiny_model_factory("rag", changed), examples, tmp_path)
    assert not tr.load_checkpoint() and tr.step == 0
    tr.train(progress=False)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 6
    same = TRAINERS["rag"](changed, tiny_model_factory("rag", changed), examples, tmp_path)
    assert same.load_checkpoint() and same.step == 6


def test_cache_that_cannot_act_warns(tiny_model_factory, tiny_kb, tmp_path, caplog):
    examples = load_examples(tiny_kb / "train.jsonl")
    for epochs, warns in ((1, True), (2, False)):
        caplog.clear()
        cfg = make_cfg("jsa", epochs=epochs, cache=True, max_steps=4)
        TRAINERS["jsa"](cfg, tiny_model_factory("jsa", cfg), examples, tmp_path / str(epochs)).train(progress=False)
        assert ("no example is visited twice" in caplog.text) == warns


def test_authors_schedule_is_flat_after_half():
    from jsarag.train.loop import lr_lambda

    cos, authors = lr_lambda(10, 100, 0.1, "cosine"), lr_lambda(10, 100, 0.1, "authors")
    assert authors(9) == cos(9) == 1.0
    assert authors(50) == pytest.approx(0.1) and authors(99) == pytest.approx(0.1)
    assert cos(50) > 0.5 and cos(99) == pytest.approx(0.1, abs=1e-3)
    assert authors(30) < cos(30)
