"""The signal diagnostic (`python -m jsarag.evaluate signal`) on the tiny knowledge base, checked
against a brute-force computation: every passage scored one at a time, the distributions written
out by hand."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from statistics import median

import numpy as np
import pytest
import torch

from jsarag.data.examples import context_text, posterior_text, target_text
from jsarag.evaluate.__main__ import main as evaluate_main
from jsarag.evaluate.tiny_kb import EXAMPLES, TOPICS
from jsarag.fingerprint import fingerprint, stamp_split
from jsarag.io import read_json, write_jsonl
from jsarag.text import has_answer

LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def _params(enc, causal, k=2, tau=1.0, **evaluate):
    return {"method": "jsa", "task": "qa", "dataset": "tiny", "retriever": {"source": enc}, "generator": {"source": causal},
            "train": {"k": k, "tau": tau, "threads": 1, "lora": LORA}, "evaluate": {"batch_size": 8, **evaluate}}


def _run(kb, enc, causal, out, params, *extra, examples=None):
    evaluate_main(["signal", "--params", json.dumps(params), "--examples", str(examples or kb / "train.jsonl"),
                   "--passages", str(kb / "passages.jsonl"), "--index", str(kb / "dense"), "--retriever", enc,
                   "--generator", causal, "--out", str(out), "--no-progress", *extra])
    return read_json(out)


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def _entropy(ps):
    return -sum(p * math.log(p) for p in ps if p > 0)


def test_signal_matches_brute_force_over_the_whole_knowledge_base(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tmp_path):
    """k = the KB's size: the candidate set is every passage, and each number is recomputed from
    scratch (the index file read by FAISS, the encoder called per text, the generator per passage)."""
    import faiss

    from jsarag.model.encoders import Encoder
    from jsarag.model.generator import Generator

    n_kb = len(TOPICS)
    r = _run(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tmp_path / "s.json", _params(tiny_encoder_dir, tiny_causal_dir, tau=0.5),
             "--k", str(n_kb))
    assert r["k"] == n_kb and r["n"] == len(EXAMPLES) and r["candidates"] == n_kb
    vecs = faiss.read_index(str(tiny_kb / "dense" / "index")).reconstruct_n(0, n_kb).astype(np.float64)
    ids = (tiny_kb / "dense" / "docid").read_text().split()
    psg = {p["id"]: p for p in map(json.loads, (tiny_kb / "passages.jsonl").read_text().splitlines())}
    enc, gen = Encoder.from_source(tiny_encoder_dir), Generator.from_source(tiny_causal_dir)
    qs = []
    for ex, row in zip(EXAMPLES, r["questions"]):
        assert row["id"] == ex["id"] and sorted(row["candidates"]) == sorted(ids)
        order = [ids.index(c) for c in row["candidates"]]
        prior = (vecs[order] @ enc.encode([context_text(ex)])[0].astype(np.float64) / 0.5).tolist()
        post_q = (vecs[order] @ enc.encode([posterior_text(ex)])[0].astype(np.float64) / 0.5).tolist()
        with torch.inference_mode():
            ll = [float(gen.loglik([context_text(ex)], [psg[c]], [target_text(ex)]).seq[0]) for c in row["candidates"]]
        hits = [has_answer(psg[c]["contents"], ex["answers"]) for c in row["candidates"]]
        T = len(gen._target_ids([target_text(ex)])[0])
        assert np.allclose(row["prior_logits"], prior, atol=2e-3) and np.allclose(row["posterior_logits"], post_q, atol=2e-3)
        assert np.allclose(row["loglik"], ll, atol=2e-3) and row["hits"] == hits and row["n_tokens"] == T
        p = _softmax(prior)
        joint = [pi * math.exp(li) for pi, li in zip(p, ll)]
        pt = [j / sum(joint) for j in joint]
        best = max(li for li, h in zip(ll, hits) if h)
        want = {"range": max(ll) - min(ll), "std": float(np.std(ll)), "entropy_prior": _entropy(p), "entropy_posterior": _entropy(pt),
                "posterior_mass_on_hits": sum(x for x, h in zip(pt, hits) if h), "prior_mass_on_hits": sum(x for x, h in zip(p, hits) if h),
                "gold_rank": 1 + sum(li > best for li in ll), "gold_rank_chance": (n_kb + 1) / (sum(hits) + 1),
                "prior_top1_hit": hits[prior.index(max(prior))], "posterior_retriever_top1_hit": hits[post_q.index(max(post_q))],
                "exact_posterior_top1_hit": hits[pt.index(max(pt))], "n_hits": sum(hits)}
        for key, v in want.items():
            assert row[key] == pytest.approx(v, abs=5e-3), (ex["id"], key)
        assert row["range_per_token"] == pytest.approx(want["range"] / T, abs=5e-3)
        qs.append({**want, "T": T})
    assert r["holds_hit"] == 1.0  # every answer is in some passage of the tiny KB
    assert r["loglik_spread"]["range"] == pytest.approx(median(q["range"] for q in qs), abs=5e-3)
    assert r["loglik_spread"]["std_per_token"] == pytest.approx(median(q["std"] / q["T"] for q in qs), abs=5e-3)
    assert r["entropy"]["posterior"] == pytest.approx(np.mean([q["entropy_posterior"] for q in qs]), abs=5e-3)
    assert r["entropy"]["prior"] == pytest.approx(np.mean([q["entropy_prior"] for q in qs]), abs=5e-3)
    assert r["entropy"]["log_candidates"] == pytest.approx(math.log(n_kb))
    assert r["posterior_mass_on_hits"] == pytest.approx(np.mean([q["posterior_mass_on_hits"] for q in qs]), abs=5e-3)
    assert r["gold_rank"]["median"] == median(q["gold_rank"] for q in qs)
    assert r["gold_rank"]["share_rank1"] == pytest.approx(np.mean([q["gold_rank"] == 1 for q in qs]))
    for key in ("prior_top1_hit", "posterior_retriever_top1_hit", "exact_posterior_top1_hit"):
        assert r[key] == pytest.approx(np.mean([q[key] for q in qs])), key
    # the exact posterior differs from the prior here: the test sees a wrong posterior
    assert max(abs(q["entropy_posterior"] - q["entropy_prior"]) for q in qs) > 0.05


def test_candidates_are_both_retrievers_top_k_and_the_report_records_its_inputs(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tmp_path,
                                                                                 capsys):
    import faiss

    from jsarag.model.encoders import Encoder

    r = _run(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tmp_path / "s.json",
             _params(tiny_encoder_dir, tiny_causal_dir, k=2, tau=0.1, hits="dpr"), "--n", "4")
    assert "exact posterior top-1 hit" in capsys.readouterr().out  # the printed summary
    assert (r["n"], r["n_requested"], r["split_rows"], r["k"], r["tau"]) == (4, 4, len(EXAMPLES), 2, 0.1)  # k: the config's
    assert (r["dataset"], r["split"], r["method"]) == ("tiny", "train", "jsa")
    assert [q["id"] for q in r["questions"]] == [e["id"] for e in EXAMPLES[:4]]
    index = faiss.read_index(str(tiny_kb / "dense" / "index"))
    ids = (tiny_kb / "dense" / "docid").read_text().split()
    enc = Encoder.from_source(tiny_encoder_dir)
    for ex, row in zip(EXAMPLES, r["questions"]):
        top = {ids[i] for t in (context_text(ex), posterior_text(ex)) for i in index.search(enc.encode([t]), 2)[1][0]}
        assert set(row["candidates"]) == top and len(row["candidates"]) == row["n_candidates"]
    src = r["sources"]
    assert src["examples"] == {"name": "train.jsonl", **fingerprint(tiny_kb / "train.jsonl")}
    assert src["passages"] == {"name": "passages.jsonl", **fingerprint(tiny_kb / "passages.jsonl")}
    assert src["index"]["files"]["index"] == fingerprint(tiny_kb / "dense" / "index")
    assert src["generator"]["files"]["config.json"] == fingerprint(Path(tiny_causal_dir) / "config.json")
    assert src["retriever"]["name"] == Path(tiny_encoder_dir).name
    # DPR's rule beside the evaluation's: its own hits and table, over the same candidates
    d = r["dpr"]
    assert d["holds_hit"] == pytest.approx(np.mean([any(q["dpr"]["hits"]) for q in r["questions"]]))
    assert d["posterior_mass_on_hits"] == pytest.approx(np.mean([q["dpr"]["posterior_mass_on_hits"] for q in r["questions"]]))


def test_n_beyond_the_split_is_clamped_with_a_warning(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="jsarag.signal"):
        r = _run(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tmp_path / "s.json", _params(tiny_encoder_dir, tiny_causal_dir), "--n", "100")
    assert (r["n"], r["n_requested"], r["split_rows"]) == (len(EXAMPLES), 100, len(EXAMPLES))
    assert "--n 100 is more than the 6 examples" in caplog.text


def test_an_empty_split_or_n_below_one_is_refused_without_output(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tmp_path, capsys):
    empty = tmp_path / "train.jsonl"
    write_jsonl(empty, [])
    stamp_split(empty, 0, {"corpus": tiny_kb / "passages.jsonl"})
    out = tmp_path / "s.json"
    params = _params(tiny_encoder_dir, tiny_causal_dir)
    with pytest.raises(SystemExit) as e:
        _run(tiny_kb, tiny_encoder_dir, tiny_causal_dir, out, params, examples=empty)
    assert e.value.code == 2 and f"{empty}: no examples" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit) as e:
        _run(tiny_kb, tiny_encoder_dir, tiny_causal_dir, out, params, "--n", "0")
    assert e.value.code == 2 and "--n and --k must be at least 1" in capsys.readouterr().err and not out.exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["train.jsonl", "train.jsonl.source.json"]  # no temp file left


def test_no_hit_in_any_candidate_set_gives_null_ranks_and_zero_hit_columns(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tmp_path,
                                                                             capsys):
    split = tmp_path / "train.jsonl"
    write_jsonl(split, [{"id": "z0", "question": "where is zanzibar", "answers": ["Zanzibar"]},
                        {"id": "z1", "question": "who painted guernica", "answers": ["Picasso"]}])
    stamp_split(split, 2, {"corpus": tiny_kb / "passages.jsonl"})
    r = _run(tiny_kb, tiny_encoder_dir, tiny_causal_dir, tmp_path / "s.json", _params(tiny_encoder_dir, tiny_causal_dir), examples=split)
    assert r["gold_rank"] == {"n": 0, "median": None, "share_rank1": None, "median_chance": None, "share_rank1_chance": None}
    assert r["holds_hit"] == r["exact_posterior_top1_hit"] == r["posterior_mass_on_hits"] == r["prior_mass_on_hits"] == 0.0
    assert "no candidate set holds a hit" in capsys.readouterr().out
    assert "NaN" not in (tmp_path / "s.json").read_text()  # strict JSON
