"""Evaluation of a trained tiny model end to end: predictions and metrics files."""
import json
from pathlib import Path

from jsarag.evaluate.__main__ import main as evaluate_main
from jsarag.io import read_json
from jsarag.layout import RunFiles
from jsarag.train.__main__ import main as train_main

EVAL = {"k_values": [1, 5, 10], "decoding": ["top1", "topk"], "topk_decode": 3, "max_new_tokens": 4, "batch_size": 4,
        "bootstrap": 100, "mis_sweep": {"proposals": [2, 5], "k": [2, 3], "n_examples": 4}}


def test_train_then_evaluate_cli(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tmp_path):
    train = {"epochs": 1, "batch_size": 2, "k": 2, "tau": 1.0, "threads": 1, "warmup_steps": 1,
             "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}}
    params = {"method": "jsa", "task": "qa", "dataset": "tiny", "train": train, "retriever": {"source": tiny_encoder_dir},
              "generator": {"source": tiny_causal_dir}, "evaluate": EVAL}
    common = ["--params", json.dumps(params), "--passages", str(tiny_kb / "passages.jsonl"), "--index", str(tiny_kb / "dense"),
              "--retriever", tiny_encoder_dir, "--generator", tiny_causal_dir]
    train_main([*common, "--train", str(tiny_kb / "train.jsonl"), "--out", str(tmp_path / "run"), "--no-progress"])
    assert read_json(tmp_path / "run" / "train_summary.json")["steps"] == 3
    assert not (tmp_path / "run" / "checkpoint").exists()  # a finished run drops its checkpoint
    run = RunFiles(str(tmp_path / "run"))
    common += ["--run", run.dir, "--examples", str(tiny_kb / "train.jsonl")]
    evaluate_main(["run", *common])
    m = read_json(run.eval_metrics)
    preds = [json.loads(line) for line in Path(run.predictions).read_text().splitlines()]
    assert m["n"] == len(preds) == 6
    assert all(len(p["retrieved"]) == 10 and len(p["posterior_hits"]) == 10 and "prediction_topk" in p for p in preds)
    r5 = 100 * sum(any(p["hits"][:5]) for p in preds) / 6
    assert abs(m["r@5"] - r5) < 1e-9 and 0 <= m["em"] <= 100 and "posterior/r@1" in m and "topk/em" in m
    evaluate_main(["mis-sweep", *common])
    sweep = [json.loads(line) for line in Path(run.mis_sweep).read_text().splitlines()]
    assert {(r["proposals"], r["k"]) for r in sweep} == {(2, 2), (2, 3), (5, 2), (5, 3)}
    assert all(0 <= r["acceptance_rate"] <= 1 and 1 <= r["distinct"] <= r["proposals"] for r in sweep)
