"""The interleaved step-cost measurement (jsarag/evaluate/step_cost.py) and the cost claims judged
on it (jsarag/report/cost.py). The step times are injected through the `clock` argument, so no
test here depends on how fast the machine is.

SYNTHETIC TEST INPUTS: the step times and every step_cost.json below are chosen by the tests."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from jsarag import InputError
from jsarag.config import RunParams
from jsarag.evaluate import step_cost as SC
from jsarag.io import write_json, write_jsonl
from jsarag.train.loop import Trainer

METHODS = ["rag", "vrag", "jsa"]
TRAIN = dict(epochs=1, batch_size=2, grad_accum=2, lr_generator=1e-3, lr_retriever=1e-3, warmup_steps=1, k=2, tau=1.0, threads=1,
             lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, max_input_tokens=128)
EXTRA = {"rag": {}, "vrag": {"estimator": "exact"}, "jsa": {"proposals": 3}}


def tiny_params(enc, causal, rounds=4, warmup=2) -> dict:
    return {m: RunParams.from_dict({"method": m, "dataset": "tiny", "task": "qa", "train": {**TRAIN, **EXTRA[m]},
                                    "retriever": {"source": enc}, "generator": {"source": causal, "kind": "causal"},
                                    "evaluate": {"step_cost": {"rounds": rounds, "warmup": warmup}}}) for m in METHODS}


class FakeClock:
    """Read before and after each step; the step "takes" dur(method, k) for the k-th step of the
    method that just ran (the last Trainer.update recorded in `calls`)."""

    def __init__(self, calls, dur):
        self.calls, self.dur, self.t, self.started = calls, dur, 0.0, False

    def __call__(self):
        if self.started:
            m = self.calls[-1][0]
            self.t += self.dur(m, sum(c[0] == m for c in self.calls) - 1)
        self.started = not self.started
        return self.t


def test_steps_interleave_rotated_on_the_same_batches_and_warmup_is_left_out(tiny_encoder_dir, tiny_causal_dir, tiny_kb, monkeypatch):
    from jsarag.data.examples import load_examples

    calls, backward = [], []
    upd, bwd = Trainer.update, Trainer.backward

    def update(self, comps=None):
        calls.append((self.method, list(backward)))
        backward.clear()
        return upd(self, comps)

    def back(self, batch, scale, sync=True):
        backward.append([ex["id"] for ex in batch])
        return bwd(self, batch, scale, sync)

    monkeypatch.setattr(Trainer, "update", update)
    monkeypatch.setattr(Trainer, "backward", back)
    offset = {"rag": 1.0, "vrag": 2.0, "jsa": 3.0}
    dur = lambda m, k: 100.0 if k < 2 else offset[m] + 0.1 * k  # noqa: E731 (warm-up rounds: 100 s, left out)
    params = tiny_params(tiny_encoder_dir, tiny_causal_dir)
    rec = SC.measure(params, load_examples(tiny_kb / "train.jsonl"), str(tiny_kb / "passages.jsonl"), str(tiny_kb / "dense"),
                     tiny_encoder_dir, tiny_causal_dir, rounds=4, warmup=2, clock=FakeClock(calls, dur), progress=False)
    want = ["rag", "vrag", "jsa", "vrag", "jsa", "rag", "jsa", "rag", "vrag", "rag", "vrag", "jsa", "vrag", "jsa", "rag",
            "jsa", "rag", "vrag"]
    assert [m for m, _ in calls] == want and [m for r in rec["order"] for m in r] == want
    for k in range(6):  # every method's k-th step: the same micro-batches (grad_accum 2 of batch size 2)
        seen = [b for m, b in calls if m == "rag"][k]
        assert len(seen) == 2 and all(len(b) == 2 for b in seen)
        assert all([b for m2, b in calls if m2 == m][k] == seen for m in METHODS)
    assert rec["batches"][0] == [i for b in [b for m, b in calls if m == "rag"][0] for i in b]
    for m in METHODS:
        assert rec["warmup_s"][m] == [100.0, 100.0]
        assert rec["step_s"][m] == pytest.approx([offset[m] + 0.1 * k for k in range(2, 6)])
        assert rec["per_method"][m]["seconds_per_100_steps"] == pytest.approx(100 * (offset[m] + 0.35))
    assert rec["shapes"]["jsa"]["proposals"] == 3 and rec["shapes"]["rag"]["grad_accum"] == 2
    assert set(rec["memory"]["rss_mb_after_build"]) == set(METHODS)


def test_ratio_ci_is_the_t_interval_of_the_paired_log_ratios():
    rng = np.random.default_rng(0)
    load = np.exp(rng.normal(0, 0.6, 12))                  # the machine's load, shared by the steps of a round
    times = {"rag": 1.0 * load * np.exp(rng.normal(0, 0.05, 12)), "vrag": 1.3 * load * np.exp(rng.normal(0, 0.05, 12)),
             "jsa": 2.0 * load * np.exp(rng.normal(0, 0.05, 12))}
    s = SC.summarize({m: list(t) for m, t in times.items()})
    q = stats.t.ppf(0.975, 11)
    for r in s["ratios"]:
        lr = np.log(times[r["a"]]) - np.log(times[r["b"]])
        half = q * lr.std(ddof=1) / np.sqrt(12)
        assert (r["ratio"], r["lo"], r["hi"]) == pytest.approx((np.exp(lr.mean()), np.exp(lr.mean() - half), np.exp(lr.mean() + half)))
        assert r["ratio_of_means"] == pytest.approx(times[r["a"]].mean() / times[r["b"]].mean()) and r["n"] == 12
    assert [(r["a"], r["b"]) for r in s["ratios"]] == [("jsa", "rag"), ("jsa", "vrag"), ("vrag", "rag")]
    jr = s["ratios"][0]
    assert 1.8 < jr["lo"] < jr["hi"] < 2.2 and jr["hi"] / jr["lo"] < 1.1   # the round's load cancels in the paired ratio
    rag = s["per_method"]["rag"]
    half = q * times["rag"].std(ddof=1) / np.sqrt(12)
    assert (rag["seconds_per_100_steps"], rag["lo"], rag["hi"]) == pytest.approx(
        (100 * times["rag"].mean(), 100 * (times["rag"].mean() - half), 100 * (times["rag"].mean() + half)))
    assert rag["hi"] / rag["lo"] > 1.5                   # unpaired, the same load leaves each method's own CI wide
    with pytest.raises(InputError, match="different numbers of rounds"):
        SC.summarize({"rag": [1.0, 2.0], "jsa": [1.0, 2.0, 3.0]})


def _cost_record(dataset: str, jsa_over_rag: float, spread: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    load = np.exp(rng.normal(0, 0.3, 10))
    rag = load * np.exp(rng.normal(0, 0.02, 10))
    return {"dataset": dataset, "methods": METHODS, "step_s": {
        "rag": rag.tolist(), "vrag": (jsa_over_rag * load * np.exp(rng.normal(0, spread, 10))).tolist(),
        "jsa": (jsa_over_rag * load * np.exp(rng.normal(0, spread, 10))).tolist()}}


def test_cost_claims_are_judged_on_the_interleaved_ratio(tmp_path):
    from jsarag.report.__main__ import main as report_main

    names = {"faster": (0.5, 0.02), "slower": (2.0, 0.02), "unclear": (1.0, 0.5)}
    cfg = {"seeds": [0], "methods": METHODS, "datasets": {**{d: "qa" for d in names}, "nolog": "qa"}, "evaluate": {"bootstrap": 50}}
    for i, (d, (ratio, spread)) in enumerate(names.items()):
        write_json(tmp_path / "runs" / d / "step_cost.json", _cost_record(d, ratio, spread, i))
    for m, sec in (("rag", 1.0), ("vrag", 1.0), ("jsa", 9.0)):  # training logs alone: jsa 9x slower, judged by nothing
        write_jsonl(tmp_path / "runs" / "nolog" / m / "seed0" / "metrics.jsonl",
                    [{"step": s, "step_time": sec * (1 + 0.01 * (s % 3))} for s in range(1, 31)])
        write_json(tmp_path / "runs" / "nolog" / m / "seed0" / "train_summary.json",
                   {"steps": 30, "seconds_per_100_steps": 100 * sec, "peak_rss_mb": 1000.0, "tokens_per_s": 50.0})
    report_main(["tables", "--root", str(tmp_path), "--params", json.dumps(cfg)])
    report_main(["claims", "--root", str(tmp_path)])
    lines = (tmp_path / "results" / "claims_check.txt").read_text().splitlines()
    got = {ln.split()[1]: ln.split()[0] for ln in lines if ln.startswith(("CONFIRMED", "REFUTED", "INCONCLUSIVE", "SKIP"))}
    assert got["cost_jsa_over_rag[slower]"] == "CONFIRMED"
    assert got["cost_jsa_over_rag[faster]"] == "REFUTED"
    assert got["cost_jsa_over_rag[unclear]"] == "INCONCLUSIVE"
    assert got["cost_jsa_over_rag[nolog]"] == "SKIP"
    assert got["cost_jsa_over_vrag[unclear]"] == "INCONCLUSIVE"
    line = next(ln for ln in lines if " cost_jsa_over_rag[slower] " in ln)
    rec = SC.summarize(_cost_record("slower", 2.0, 0.02, 1)["step_s"])["ratios"][0]
    assert f"x{rec['ratio']:.3f} [95% CI {rec['lo']:.3f}, {rec['hi']:.3f}] over 10 interleaved rounds" in line
    md = (tmp_path / "results" / "tables" / "cost.md").read_text()
    assert "step-time ratio (interleaved)" in md and "training log: description only" in md and "jsa/rag" in md
    write_json(tmp_path / "runs" / "faster" / "step_cost.json", _cost_record("slower", 2.0, 0.02, 0))  # another dataset's record
    with pytest.raises(SystemExit):
        report_main(["tables", "--root", str(tmp_path), "--params", json.dumps(cfg)])


def test_cli_writes_the_record_with_its_sources(tiny_encoder_dir, tiny_causal_dir, tiny_kb, tmp_path):
    from jsarag.evaluate.__main__ import main

    params = {m: p.to_dict() for m, p in tiny_params(tiny_encoder_dir, tiny_causal_dir, rounds=2, warmup=0).items()}
    out = tmp_path / "tiny" / "step_cost.json"
    main(["step-cost", "--params", json.dumps(params), "--dataset", "tiny", "--examples", str(tiny_kb / "train.jsonl"),
          "--passages", str(tiny_kb / "passages.jsonl"), "--index", str(tiny_kb / "dense"), "--retriever", tiny_encoder_dir,
          "--generator", tiny_causal_dir, "--out", str(out), "--no-progress"])
    rec = json.loads(out.read_text())
    assert [len(rec["step_s"][m]) for m in METHODS] == [2, 2, 2] and rec["rounds"] == 2
    assert rec["sources"]["examples"]["name"] == "train.jsonl" and "sha256_sampled" in rec["sources"]["passages"]
    assert rec["params"]["jsa"]["train"]["proposals"] == 3
    assert sorted(p.name for p in out.parent.iterdir()) == ["step_cost.json"]  # no temp file, no scratch folder left
    with pytest.raises(SystemExit) as e:
        main(["step-cost", "--params", json.dumps({"rag": params["rag"]}), "--dataset", "tiny", "--examples", str(tiny_kb / "train.jsonl"),
              "--passages", str(tiny_kb / "passages.jsonl"), "--index", str(tiny_kb / "dense"), "--retriever", tiny_encoder_dir,
              "--generator", tiny_causal_dir, "--out", str(tmp_path / "one.json")])
    assert e.value.code == 2 and not (tmp_path / "one.json").exists()
