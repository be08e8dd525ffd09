"""evaluate.generate_n: retrieval is scored on every test example, generation on the first N.

The rows past N carry "prediction": null; the report scores generation metrics on the generated rows
(per metric, the examples both methods generated) and retrieval on all."""
import json
from pathlib import Path

import numpy as np
import pytest

from jsarag import InputError
from jsarag.evaluate.__main__ import main as evaluate_main
from jsarag.io import read_json, write_jsonl
from jsarag.report.runs import score_file
from jsarag.report.tables import pair_rows

EVAL = {"k_values": [1, 5, 10], "decoding": ["top1", "topk"], "topk_decode": 3, "max_new_tokens": 4, "batch_size": 4,
        "bootstrap": 100, "mis_sweep": {"proposals": [2, 5], "k": [2, 3], "n_examples": 4}}


def _rows(n: int, generated: int, right: int, hit: int) -> list[dict]:
    return [{"id": f"q{i}", "question": f"q {i}", "answers": [f"a{i}"],
             "prediction": (f"a{i}" if i < right else "no") if i < generated else None,
             "retrieved": ["p0", "p1"], "hits": [i < hit, False]} for i in range(n)]


def test_generation_on_the_generated_rows_retrieval_on_all(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", _rows(10, generated=4, right=2, hit=6))
    write_jsonl(tmp_path / "b.jsonl", _rows(10, generated=4, right=1, hit=3))
    a, b = (score_file(tmp_path / f"{x}.jsonl", "qa", [1]) for x in "ab")
    assert a.scores["em"].shape == (10,) and np.isnan(a.scores["em"][4:]).all()
    from jsarag.report.runs import MethodScores, metric_value

    assert metric_value(a, "em") == pytest.approx(50.0)  # 2 right of 4 generated, not 2 of 10
    assert metric_value(a, "r@1") == pytest.approx(60.0)  # 6 hits of all 10
    rows = {r["metric"]: r for r in pair_rows("d", "a", MethodScores([0], [a]), "b", MethodScores([0], [b]), ["em", "r@1"], 200, 0)}
    assert rows["em"]["n"] == 4 and rows["em"]["delta"] == pytest.approx(25.0)
    assert rows["r@1"]["n"] == 10 and rows["r@1"]["delta"] == pytest.approx(30.0)


def test_a_row_without_the_prediction_field_is_still_an_error(tmp_path):
    rows = _rows(3, generated=3, right=1, hit=1)
    del rows[1]["prediction"]
    write_jsonl(tmp_path / "a.jsonl", rows)
    with pytest.raises(InputError, match="missing field 'prediction'"):
        score_file(tmp_path / "a.jsonl", "qa", [1])


def test_evaluate_generates_only_the_first_n(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tmp_path):
    from jsarag.train.__main__ import main as train_main

    train = {"epochs": 1, "batch_size": 2, "k": 2, "tau": 1.0, "threads": 1, "warmup_steps": 1,
             "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}}
    params = {"method": "rag", "task": "qa", "dataset": "tiny", "train": train, "retriever": {"source": tiny_encoder_dir},
              "generator": {"source": tiny_causal_dir}, "evaluate": {**EVAL, "generate_n": 2}}
    common = ["--params", json.dumps(params), "--passages", str(tiny_kb / "passages.jsonl"), "--index", str(tiny_kb / "dense"),
              "--retriever", tiny_encoder_dir, "--generator", tiny_causal_dir]
    train_main([*common, "--train", str(tiny_kb / "train.jsonl"), "--out", str(tmp_path / "run"), "--no-progress"])
    evaluate_main(["run", *common, "--run", str(tmp_path / "run"), "--examples", str(tiny_kb / "train.jsonl")])
    preds = [json.loads(line) for line in Path(tmp_path / "run" / "eval" / "predictions.jsonl").read_text().splitlines()]
    m = read_json(tmp_path / "run" / "eval" / "metrics.json")
    assert (m["n"], m["n_generated"]) == (6, 2)
    assert [p["prediction"] is None for p in preds] == [False, False, True, True, True, True]
    assert [p["prediction_topk"] is None for p in preds] == [False, False, True, True, True, True]
    assert all(len(p["retrieved"]) == 10 for p in preds)  # retrieval on every example


