"""Validation during training (jsarag.train.validation) and the zero-shot job
(`python -m jsarag.evaluate zero-shot`) on the tiny knowledge base."""
import json
from pathlib import Path

import faiss
import pytest
import torch

from jsarag import InputError
from jsarag.data.examples import context_text, load_examples
from jsarag.evaluate.__main__ import main as evaluate_main
from jsarag.evaluate.metrics import passage_hits, prediction_row, retrieval_metrics
from jsarag.io import read_json, write_jsonl
from jsarag.model.factory import load_trained
from jsarag.train import TRAINERS
from jsarag.train.__main__ import main as train_main
from jsarag.train.validation import validate

EVAL = {"k_values": [1, 5, 10], "decoding": ["top1"], "max_new_tokens": 4, "batch_size": 4, "bootstrap": 100}
TRAIN = {"epochs": 2, "batch_size": 2, "lr_generator": 1e-3, "lr_retriever": 1e-3, "warmup_steps": 1, "k": 3, "tau": 1.0,
         "threads": 1, "checkpoint_every": 2, "max_input_tokens": 128, "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}}


def _cfg(method, **kw):
    return TRAINERS[method].config_class.from_dict({**TRAIN, **kw})


def test_validation_rows_and_best_step(tiny_model_factory, tiny_kb, tmp_path):
    examples = load_examples(tiny_kb / "train.jsonl")
    cfg = _cfg("rag", valid_every=2, valid_k=[1, 5], keep_best="loss")
    start = validate(tiny_model_factory("rag", cfg), examples, [1, 5])
    tr = TRAINERS["rag"](cfg, tiny_model_factory("rag", cfg), examples, tmp_path, valid_examples=examples)
    summary = tr.train(progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in rows if "valid/loss" in r]
    assert [r["step"] for r in valid] == [0, 2, 4, 6] and summary["steps"] == 6
    assert rows[0] == {"step": 0, **start}  # step 0: the untrained starting point
    assert all(0 <= r["valid/r@5"] <= 100 and r["valid/r@1"] <= r["valid/r@5"] and r["valid/loss"] > 0 for r in valid)
    assert valid[-1]["valid/loss"] != start["valid/loss"]  # training moved the generator
    best = min(valid, key=lambda r: r["valid/loss"])
    assert summary["best_step"] == best["step"] and summary["best_loss"] == pytest.approx(best["valid/loss"])
    # the saved model is the best step's, not the last one's: validating it again gives the best value
    saved = tiny_model_factory("rag", cfg)
    load_trained(saved, str(tmp_path / "model" / "trainable.pt"))
    assert validate(saved, examples, [1, 5])["valid/loss"] == pytest.approx(best["valid/loss"], rel=1e-5)


def test_validation_recall_matches_the_evaluation(tiny_model_factory, tiny_kb):
    examples = load_examples(tiny_kb / "train.jsonl")
    model = tiny_model_factory("rag", _cfg("rag"))
    model.eval()
    q = model.prior.encode([context_text(e) for e in examples])
    _, rows = faiss.read_index(str(tiny_kb / "dense" / "index")).search(q, 5)  # FAISS flat, independent of the model's search
    hits = [passage_hits(e, model.store.get(r)) for e, r in zip(examples, rows)]
    assert validate(model, examples, [1, 5])["valid/r@5"] == pytest.approx(retrieval_metrics(hits, [5])["r@5"])
    model.train()
    model.prior.eval()  # the trainer keeps the retriever towers in eval mode (no dropout)
    validate(model, examples, [1])
    assert model.training and model.generator.training and not model.prior.training  # each module's mode restored


def test_keep_best_needs_validation():
    with pytest.raises(InputError, match="keep_best"):
        _cfg("jsa", keep_best="loss")
    with pytest.raises(InputError, match="keep_best"):
        _cfg("vrag", valid_every=2, keep_best="r@10")  # not among valid_k (1, 5, 20)


def _params(tiny_encoder_dir, tiny_causal_dir, **train):
    return json.dumps({"method": "rag", "task": "qa", "dataset": "tiny", "train": {**TRAIN, **train},
                       "retriever": {"source": tiny_encoder_dir}, "generator": {"source": tiny_causal_dir}, "evaluate": EVAL})


def test_train_cli_reads_the_validation_split(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tmp_path):
    args = ["--params", _params(tiny_encoder_dir, tiny_causal_dir, epochs=1, valid_every=3), "--passages",
            str(tiny_kb / "passages.jsonl"), "--index", str(tiny_kb / "dense"), "--retriever", tiny_encoder_dir,
            "--generator", tiny_causal_dir, "--train", str(tiny_kb / "train.jsonl"), "--out", str(tmp_path / "run"), "--no-progress"]
    train_main([*args, "--valid", str(tiny_kb / "train.jsonl")])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "valid/r@20" in r] == [0, 3]


def test_zero_shot_job(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tiny_model_factory, tmp_path):
    examples = load_examples(tiny_kb / "train.jsonl")
    passages = [json.loads(line) for line in (tiny_kb / "passages.jsonl").read_text().splitlines()]
    # two rankings in the retrieval baselines' format: "dense" in passage order, "bm25" reversed
    rankings = {"dense": passages, "bm25": passages[::-1]}
    for name, ps in rankings.items():
        write_jsonl(tmp_path / f"{name}.jsonl", [prediction_row(e, [p["id"] for p in ps], passage_hits(e, ps)) for e in examples])
    outs = {n: tmp_path / "zs" / f"{n}.jsonl" for n in ("dense", "bm25", "posterior")} | {"metrics": tmp_path / "zs" / "m.json"}
    evaluate_main(["zero-shot", "--params", _params(tiny_encoder_dir, tiny_causal_dir), "--examples", str(tiny_kb / "train.jsonl"),
                   "--passages", str(tiny_kb / "passages.jsonl"), "--index", str(tiny_kb / "dense"), "--retriever", tiny_encoder_dir,
                   "--generator", tiny_causal_dir, *[f"--baseline={n}={tmp_path / n}.jsonl" for n in rankings],
                   *[f"--out={k}={v}" for k, v in outs.items()]])
    m = read_json(outs["metrics"])
    model = tiny_model_factory("rag", _cfg("rag"))
    model.eval()
    for name, ps in rankings.items():
        rows = [json.loads(line) for line in Path(outs[name]).read_text().splitlines()]
        assert [r["retrieved"][0] for r in rows] == [ps[0]["id"]] * len(examples)
        # the untrained generator reading the ranking's top-1 passage
        with torch.inference_mode():
            want = model.generator.generate([context_text(e) for e in examples], [ps[0]] * len(examples), max_new_tokens=4, batch_size=4)
        assert [r["prediction"] for r in rows] == want
        assert m[name]["r@1"] == pytest.approx(retrieval_metrics([r["hits"] for r in rows], [1])["r@1"])
    post = [json.loads(line) for line in Path(outs["posterior"]).read_text().splitlines()]
    assert m["n"] == len(post) == len(examples) and all(len(r["posterior_hits"]) == 10 for r in post)
    assert m["posterior"]["r@10"] == pytest.approx(retrieval_metrics([r["posterior_hits"] for r in post], [10])["r@10"])


def test_zero_shot_refuses_a_ranking_without_the_example(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tmp_path):
    write_jsonl(tmp_path / "dense.jsonl", [{"id": "other", "retrieved": ["p0"], "hits": [False]}])
    with pytest.raises(SystemExit) as e:
        evaluate_main(["zero-shot", "--params", _params(tiny_encoder_dir, tiny_causal_dir), "--examples", str(tiny_kb / "train.jsonl"),
                       "--passages", str(tiny_kb / "passages.jsonl"), "--index", str(tiny_kb / "dense"), "--retriever", tiny_encoder_dir,
                       "--generator", tiny_causal_dir, f"--baseline=dense={tmp_path / 'dense.jsonl'}",
                       f"--baseline=bm25={tmp_path / 'dense.jsonl'}",
                       *[f"--out={k}={tmp_path / k}" for k in ("dense", "bm25", "posterior", "metrics")]])
    assert e.value.code == 2 and not (tmp_path / "metrics").exists()
