"""End-to-end check of `python -m jsarag.report` and `python -m jsarag.claims` on a tiny run tree.

SYNTHETIC TEST INPUTS: every file under tmp_path/runs is written by `make_runs` below, in the formats
of the contracts doc, with numbers chosen by this test (they are not results of any experiment). The
test then checks that the tables report exactly the values those files imply."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jsarag.evaluate import metrics as M
from jsarag.io import write_json, write_jsonl
from jsarag.report.__main__ import main as report_main

CONFIG = {  # the report's params (jsarag.config.report_params)
    "seeds": [0, 1],
    "methods": ["rag", "vrag", "jsa"],
    "datasets": {"nq": "qa", "doqa": "dialog"},
    "evaluate": {"k_values": [1, 5, 10], "bootstrap": 200},
    "mis_proposals": 10, "mis_k": 3,
}
N = 40
# share of correct answers / of hits at rank 1 per method and seed (synthetic)
EM_RATE = {"rag": (0.50, 0.50), "vrag": (0.55, 0.60), "jsa": (0.80, 0.70)}
HIT1_RATE = {"rag": (0.30, 0.30), "vrag": (0.40, 0.40), "jsa": (0.60, 0.50)}
SEC_PER_100 = {"rag": (10.0, 12.0), "vrag": (11.0, 11.0), "jsa": (30.0, 34.0)}
TARGETS = ["you can reset the password in the settings menu", "the warranty covers two years of repairs",
           "press the power button for ten seconds", "the battery lasts about eight hours"]


def _qa_rows(method: str, seed: int) -> list[dict]:
    n_ok, n_hit = int(EM_RATE[method][seed] * N), int(HIT1_RATE[method][seed] * N)
    rows = []
    for i in range(N):
        hits = [False] * 10
        if i < n_hit:
            hits[0] = True
        elif i % 3 == 0:
            hits[4] = True  # rank 5
        rows.append({"id": f"nq{i}", "question": f"synthetic question {i}", "answers": [f"answer {i}", f"alt {i}"],
                     "prediction": f"answer {i}" if i < n_ok else f"wrong {i}",
                     "retrieved": [f"p{j}" for j in range(10)], "hits": hits,
                     "hits_dpr": [h and not (r == 0 and i % 4 == 0) for r, h in enumerate(hits)],  # stricter: a quarter of rank-1 hits lost
                     "posterior_retrieved": [f"p{j}" for j in range(10)], "posterior_hits": [True] + [False] * 9})
    if method == "rag":
        for r in rows:
            del r["posterior_retrieved"], r["posterior_hits"]
    return rows


def _dialog_rows(method: str, seed: int) -> list[dict]:
    good = {"rag": 10, "vrag": 15, "jsa": 30}[method] + seed
    rows = []
    for i in range(N):
        t = TARGETS[i % 4]
        pred = t if i < good else " ".join(t.split()[:3])
        rows.append({"id": f"dq{i}", "history": ["hi"], "question": f"q{i}", "target": t, "prediction": pred,
                     "retrieved": ["d0", "d1"], "hits": [i % 2 == 0, False]})
    return rows


def _train_log(method: str, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for step in range(1, 61):
        r = {"step": step, "epoch": step // 30, "lr": 1e-4, "loss": 2.0 / step ** 0.3, "grad_norm/prior": 1.0,
             "grad_norm/generator": 2.0, "step_time": SEC_PER_100[method][seed] / 100, "tokens_per_s": 50.0}
        if method == "vrag":
            r["grad_norm/posterior"] = 40.0 if step % 20 == 0 else 1.0 + 0.1 * rng.random()
        if method == "jsa":
            r["grad_norm/posterior"] = 1.0 + 0.1 * rng.random()
            r.update({"mis/acceptance_rate": 0.25 + 0.25 * seed, "mis/distinct": 2.0, "mis/cache_survived": 0.5})
        if step % 30 == 0:  # validation rows (train.valid_every = 30)
            r.update({"valid/r@5": 20.0 + step / 6, "valid/loss": 3.0 - step / 60})
        rows.append(r)
    return [{"step": 0, "valid/r@5": 20.0, "valid/loss": 3.0}, *rows]


def make_runs(root: Path) -> None:
    """Write the synthetic run tree (see module doc)."""
    for d, task in (("nq", "qa"), ("doqa", "dialog")):
        for m in CONFIG["methods"]:
            for s in CONFIG["seeds"]:
                run = root / d / m / f"seed{s}"
                rows = _qa_rows(m, s) if task == "qa" else _dialog_rows(m, s)
                write_jsonl(run / "eval" / "predictions.jsonl", rows)
                mets = M.generation_metrics(rows, task)
                mets.update(M.retrieval_metrics([r["hits"] for r in rows], [1, 5, 10]))
                write_json(run / "eval" / "metrics.json", mets)
                write_jsonl(run / "metrics.jsonl", _train_log(m, s))
                write_json(run / "train_summary.json", {
                    "method": m, "dataset": d, "seed": s, "steps": 60, "seconds": 0.6 * SEC_PER_100[m][s],
                    "seconds_per_100_steps": SEC_PER_100[m][s], "peak_rss_mb": 1000.0 + 100 * s, "tokens_per_s": 50.0})
                if m == "jsa":
                    write_jsonl(run / "mis_sweep.jsonl", [
                        {"proposals": p, "k": k, "acceptance_rate": 0.5 / p ** 0.5, "distinct": min(p, k), "n": 8}
                        for p in (2, 5, 10) for k in (2, 3)])
    # the methods' steps timed interleaved, doqa only (jsa 3x rag's step time, vrag 1.1x, per-round load 1-2x)
    load = [1.0 + 0.1 * r for r in range(10)]
    write_json(root / "doqa" / "step_cost.json", {"dataset": "doqa", "step_s": {
        "rag": [x * (1 + 0.01 * (r % 3)) for r, x in enumerate(load)], "vrag": [1.1 * x for x in load], "jsa": [3.0 * x for x in load]}})
    # baselines only for nq: the report must skip doqa's with a note
    base = [{"id": f"nq{i}", "retrieved": ["p0", "p1"], "hits": [i < 10, i >= 30]} for i in range(N)]
    write_jsonl(root / "nq" / "baselines" / "bm25.jsonl", base)
    write_jsonl(root / "nq" / "baselines" / "dense.jsonl", base)
    # zero-shot rows, nq only: EM 20, R@1 25 (the dense baseline's hits); the posterior R@1 50
    zs = [{**b, "question": f"synthetic question {i}", "answers": [f"answer {i}"],
           "prediction": f"answer {i}" if i < 8 else f"wrong {i}"} for i, b in enumerate(base)]
    write_jsonl(root / "nq" / "zero_shot" / "dense.jsonl", zs)
    write_jsonl(root / "nq" / "zero_shot" / "bm25.jsonl", zs)
    write_jsonl(root / "nq" / "zero_shot" / "posterior.jsonl",
                [{"id": f"nq{i}", "posterior_retrieved": ["p0", "p1"], "posterior_hits": [i < 20, False]} for i in range(N)])
    est = {  # (rel_bias, rel_bias_se, bias_p, rel_variance, rel_variance_se, n_draws) per estimator
        "rag_K=N": (1e-7, 0.0, 1.0, 0.0, 0.0, 1), "rag_K=3": (0.4, 0.0, 0.0, 0.0, 0.0, 1),
        "vrag_sampled": (0.05, 0.02, 0.3, 10.0, 1.0, 100), "jsa": (0.03, 0.01, 0.6, 1.0, 0.5, 100)}
    write_jsonl(root / "verify" / "estimators.jsonl", [
        {"estimator": e, "component": c, "cosine": 0.9, "rel_bias": b, "rel_bias_se": bse, "rel_bias_noise": bse, "bias_p": p,
         "variance": v, "variance_se": vse, "rel_variance": v, "rel_variance_se": vse, "n_draws": n, "posterior_mass_outside_topk": 0.6}
        for e, (b, bse, p, v, vse, n) in est.items() for c in ("generator", "prior", "posterior")])


def build_report(root: Path) -> Path:
    """The synthetic run tree under root/runs, then the tables, figures and claims check: root/results."""
    make_runs(root / "runs")
    for what in ("tables", "figures"):
        report_main([what, "--root", str(root), "--params", json.dumps(CONFIG)])
    report_main(["claims", "--root", str(root)])
    return root / "results"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return build_report(tmp_path_factory.mktemp("report"))


def test_all_outputs_exist(report):
    from jsarag.layout import FIGURES, TABLES

    for t in TABLES:
        for ext in ("csv", "md", "tex"):
            assert (report / "tables" / f"{t}.{ext}").stat().st_size > 0, (t, ext)
    for f in FIGURES:
        assert (report / "figures" / f"{f}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _cell(report, table, dataset, method, metric):
    t = pd.read_csv(report / "tables" / f"{table}.csv")
    r = t[(t.dataset == dataset) & (t.method == method) & (t.metric == metric)]
    assert len(r) == 1, (table, dataset, method, metric)
    return r.iloc[0]


def test_table_values_equal_what_was_written(report):
    em = _cell(report, "generation", "nq", "jsa", "em")
    assert em.value == pytest.approx(100 * np.mean(EM_RATE["jsa"]))            # 80 and 70 -> 75
    assert em.sd == pytest.approx(100 * np.std(EM_RATE["jsa"], ddof=1))
    assert em.lo <= em.value <= em.hi and em.n_seeds == 2 and em.n == N
    assert _cell(report, "retrieval_prior", "nq", "rag", "r@1").value == pytest.approx(30.0)
    assert _cell(report, "retrieval_prior", "nq", "bm25", "r@1").value == pytest.approx(25.0)
    assert _cell(report, "retrieval_posterior", "nq", "jsa", "r@1").value == pytest.approx(100.0)
    cost = _cell(report, "cost", "nq", "jsa", "seconds_per_100_steps")
    assert cost.value == pytest.approx(32.0) and cost.sd == pytest.approx(np.std([30, 34], ddof=1))
    assert cost.lo < 32.0 < cost.hi and cost.n == 2 * (60 - 10)  # per-step times after 10 warm-up steps per seed
    assert _cell(report, "grad_norm", "nq", "vrag", "posterior/max").value == pytest.approx(40.0)
    rows = [json.loads(x) for x in (report.parent / "runs/doqa/jsa/seed0/eval/predictions.jsonl").read_text().splitlines()]
    bleu0 = M.generation_metrics(rows, "dialog")["bleu4"]
    rows1 = [json.loads(x) for x in (report.parent / "runs/doqa/jsa/seed1/eval/predictions.jsonl").read_text().splitlines()]
    bleu1 = M.generation_metrics(rows1, "dialog")["bleu4"]
    assert _cell(report, "generation", "doqa", "jsa", "bleu4").value == pytest.approx((bleu0 + bleu1) / 2)
    md = (report / "tables" / "generation.md").read_text()
    assert f"{em.value:.2f} ± {em.sd:.2f} [{em.lo:.2f}, {em.hi:.2f}]" in md
    assert r"$\pm$" in (report / "tables" / "generation.tex").read_text()


@pytest.fixture(scope="module")
def authors_report(tmp_path_factory):
    """The same run tree, reported with the authors' metrics and DPR's hit rule beside the suite's."""
    tmp = tmp_path_factory.mktemp("authors")
    make_runs(tmp / "runs")
    cfg = {**CONFIG, "evaluate": {**CONFIG["evaluate"], "metrics": "authors", "hits": "dpr"}}
    report_main(["tables", "--root", str(tmp), "--params", json.dumps(cfg)])
    report_main(["claims", "--root", str(tmp)])
    return tmp / "results"


def test_authors_definitions_beside_the_suites(report, authors_report):
    rows = [[json.loads(x) for x in (authors_report.parent / f"runs/doqa/jsa/seed{s}/eval/predictions.jsonl").read_text().splitlines()]
            for s in (0, 1)]
    want = {k: np.mean([M.generation_metrics(r, "dialog", authors=True)[k] for r in rows]) for k in ("bleu4", "bleu4_authors")}
    assert _cell(authors_report, "generation", "doqa", "jsa", "bleu4_authors").value == pytest.approx(want["bleu4_authors"])
    assert _cell(authors_report, "generation", "doqa", "jsa", "bleu4").value == pytest.approx(want["bleu4"])  # the suite's kept
    assert want["bleu4_authors"] != pytest.approx(want["bleu4"], abs=1.0)
    assert _cell(authors_report, "retrieval_prior", "nq", "rag", "r@1").value == pytest.approx(30.0)
    assert _cell(authors_report, "retrieval_prior", "nq", "rag", "r@1_dpr").value == pytest.approx(22.5)  # 12 hits - 3 (i % 4 == 0)
    gen_md, ret_md = ((authors_report / "tables" / f"{t}.md").read_text() for t in ("generation", "retrieval_prior"))
    assert "BLEU-4 (authors)" in gen_md and "NLTK sentence_bleu" in gen_md and "sacrebleu corpus BLEU" in gen_md
    assert "R@1 (DPR)" in ret_md and "has_answers" in ret_md and "answer containment" in ret_md
    sig = pd.read_csv(authors_report / "tables" / "significance.csv")
    assert {"bleu4_authors", "rouge_l_authors", "r@1_dpr"} <= set(sig.metric)
    # without the options, the tables are the suite's alone
    gen = pd.read_csv(report / "tables" / "generation.csv")
    assert not gen.metric.str.endswith("_authors").any()
    assert not pd.read_csv(report / "tables" / "retrieval_prior.csv").metric.str.endswith("_dpr").any()


def test_claims_are_judged_on_the_papers_definition_or_say_they_are_not(report, authors_report):
    line = lambda res, cid: next(ln for ln in (res / "claims_check.txt").read_text().splitlines() if f" {cid} " in ln)  # noqa: E731
    assert "significance[doqa, bleu4_authors, jsa - rag]" in line(authors_report, "doqa_bleu4_jsa_over_rag")
    assert "significance[nq, r@1_dpr, jsa - rag]" in line(authors_report, "nq_r1_jsa_over_rag")
    assert "judged on" not in line(authors_report, "doqa_bleu4_jsa_over_rag")
    suite = line(report, "doqa_bleu4_jsa_over_rag")
    assert "significance[doqa, bleu4, jsa - rag]" in suite and "judged on bleu4, the suite's definition" in suite


def test_rag_has_no_posterior_row_and_doqa_no_baseline(report):
    post = pd.read_csv(report / "tables" / "retrieval_posterior.csv")
    assert "rag" not in set(post.method)
    prior = pd.read_csv(report / "tables" / "retrieval_prior.csv")
    assert not ((prior.dataset == "doqa") & prior.method.isin(["bm25", "dense"])).any()


def test_mis_and_significance(report):
    mis = pd.read_csv(report / "tables" / "mis.csv")
    train = mis[(mis.dataset == "nq") & (mis.source == "training")].iloc[0]
    assert train.acceptance_rate == pytest.approx(0.375) and train.proposals == 10 and train.k == 3
    assert len(mis[(mis.dataset == "nq") & (mis.source == "sweep")]) == 6
    sig = pd.read_csv(report / "tables" / "significance.csv")
    r = sig[(sig.dataset == "nq") & (sig.metric == "em") & (sig.a == "jsa") & (sig.b == "rag")].iloc[0]
    assert r.delta == pytest.approx(25.0) and r.p_permutation < 0.05 and r.lo > 0


def test_zero_shot_rows_and_their_pairs(report):
    assert _cell(report, "generation", "nq", "zero-shot", "em").value == pytest.approx(20.0)
    assert _cell(report, "generation", "nq", "zero-shot bm25", "em").value == pytest.approx(20.0)
    assert _cell(report, "retrieval_posterior", "nq", "zero-shot posterior", "r@1").value == pytest.approx(50.0)
    gen = pd.read_csv(report / "tables" / "generation.csv")
    assert not ((gen.dataset == "doqa") & gen.method.str.startswith("zero-shot")).any()  # no files: skipped
    sig = pd.read_csv(report / "tables" / "significance.csv")
    pair = sig[(sig.dataset == "nq") & (sig.a == "rag") & (sig.b == "zero-shot")].set_index("metric")
    assert pair.loc["em", "delta"] == pytest.approx(30.0) and pair.loc["r@1", "delta"] == pytest.approx(5.0)
    post = sig[(sig.a == "jsa") & (sig.b == "zero-shot posterior") & (sig.metric == "posterior/r@1")].iloc[0]
    assert post.delta == pytest.approx(50.0) and post.lo > 0
    assert not ((sig.a == "rag") & (sig.b == "zero-shot posterior")).any()  # RAG has no posterior


def test_claims_check_lines(report):
    lines = (report / "claims_check.txt").read_text().splitlines()
    by_id = {ln.split()[1]: ln.split()[0] for ln in lines if not ln.startswith("#")}
    assert by_id["nq_main_jsa_over_rag"] == "CONFIRMED"
    assert by_id["nq_r1_jsa_over_rag"] == "REFUTED"       # +25 points measured vs claimed 8.5 ± 6
    assert by_id["tqa_em_jsa_over_rag"] == "SKIP"         # no tqa in this run
    assert by_id["doqa_bleu4_jsa_over_rag"] in ("CONFIRMED", "REFUTED", "INCONCLUSIVE")
    assert by_id["posterior_grad_spikes_vrag_vs_jsa[nq]"] == "CONFIRMED"  # 2 seeds: t-interval over seeds
    # cost: the interleaved step times (doqa: jsa 3x rag); nq has only training logs (jsa 30/34 s, rag 10/12 s), not judged
    assert by_id["cost_jsa_over_rag[doqa]"] == "CONFIRMED" and by_id["cost_jsa_over_vrag[doqa]"] == "CONFIRMED"
    assert by_id["cost_jsa_over_rag[nq]"] == "SKIP"
    assert "measured +25.00" in next(ln for ln in lines if " nq_r1_jsa_over_rag " in ln)
    assert by_id["sanity_jsa_main[nq]"] == "CONFIRMED"          # +55 over zero-shot
    assert by_id["sanity_rag_prior_r20[nq]"] == "SKIP"        # R@20 is not among this run's k_values
    assert by_id["sanity_rag_main[doqa]"] == "SKIP"             # doqa has no zero-shot rows
    # mechanism rows from runs/verify/estimators.jsonl, each with its measured figure and threshold
    assert by_id["rag_topk_gradient_biased"] == "CONFIRMED"
    assert by_id["rag_gradient_exact_at_K_equals_N[prior]"] == "CONFIRMED"
    assert by_id["vrag_posterior_variance_exceeds_jsa"] == "CONFIRMED"
    assert by_id["jsa_cached_gradient_consistent[generator]"] == "CONFIRMED"
    row = next(ln for ln in lines if " vrag_posterior_variance_exceeds_jsa " in ln)
    assert "= 10" in row and "threshold > 1" in row and "95% CI" in row
    header = lines[0]
    assert all(f" {s}" in header for s in ("CONFIRMED", "REFUTED", "INCONCLUSIVE", "SKIP"))


def test_not_below_verdicts():
    from jsarag.report.claims import _judge

    claim = {"a": "rag", "b": "zero-shot", "direction": ">=", "margin": 2.0}
    assert _judge(claim, -3.0, (-5.0, -1.0))[0] == "REFUTED"       # significantly worse
    assert _judge(claim, 0.5, (-1.5, 2.5)) == ("CONFIRMED", "")    # CI within the margin
    assert _judge(claim, 0.5, (-6.0, 7.0))[0] == "INCONCLUSIVE"    # the test set cannot tell
    assert _judge({**claim, "margin": 0.0}, 0.5, (-1.5, 2.5))[0] == "INCONCLUSIVE"


def test_mechanism_row_straddling_its_threshold_is_inconclusive():
    from jsarag.report.mechanisms import check_estimator

    c = {"id": "v", "text": "t", "estimator": "a", "vs": "b", "component": "posterior", "statistic": "rel_variance",
         "direction": ">", "threshold": 1.0}
    row = lambda e, v, se: {"estimator": e, "component": "posterior", "rel_variance": v, "rel_variance_se": se, "n_draws": 50}  # noqa: E731
    assert check_estimator(c, [row("a", 1.2, 0.5), row("b", 1.0, 0.5)], "f")[0].status == "INCONCLUSIVE"
    assert check_estimator(c, [row("a", 5.0, 0.5), row("b", 1.0, 0.1)], "f")[0].status == "CONFIRMED"
    assert check_estimator(c, [row("a", 0.2, 0.01), row("b", 1.0, 0.1)], "f")[0].status == "REFUTED"
    assert check_estimator(c, None, "f")[0].status == "SKIP"
    assert check_estimator({**c, "requires": {"mass": 0.1}}, [row("a", 5, 0.5), row("b", 1, 0.1)], "f")[0].status == "SKIP"


def test_a_delta_inside_noise_does_not_reproduce_a_claim():
    from jsarag.report.claims import _judge

    claim = {"a": "jsa", "b": "rag", "direction": ">"}
    status, why = _judge(claim, 0.5, (-1.0, 2.0))        # right sign, CI includes 0 and the claimed effect
    assert status == "INCONCLUSIVE" and "80% power: 2.14" in why   # MDE = 2.80 * SE, SE = 3 / 3.92
    assert _judge(claim, 0.5, (0.1, 0.9)) == ("CONFIRMED", "")
    assert _judge(claim, -0.5, (-0.9, -0.1))[0] == "REFUTED"
    assert _judge({**claim, "direction": "<"}, -0.5, (-0.9, -0.1)) == ("CONFIRMED", "")
    sized = {**claim, "size": 8.5, "tolerance": 6.0}
    assert _judge(sized, 25.0, (20.0, 30.0))[0] == "REFUTED" and _judge(sized, 5.0, (1.0, 9.0)) == ("CONFIRMED", "")
    assert _judge(sized, 0.5, (-0.5, 1.5))[0] == "REFUTED"       # CI includes 0 but excludes 8.5 ± 6
    assert _judge(sized, 1.0, (-1.0, 3.0))[0] == "INCONCLUSIVE"  # includes 0 and 2.5 (the claimed range's edge)
    assert _judge(claim, 0.5)[0] == "INCONCLUSIVE"       # a compare with no CI cannot tell noise from effect


def test_missing_inputs_are_skipped_not_invented(tmp_path):
    cfg = dict(CONFIG, methods=["rag", "jsa"], seeds=[0])
    runs = tmp_path / "runs"
    write_jsonl(runs / "nq" / "rag" / "seed0" / "eval" / "predictions.jsonl", _qa_rows("rag", 0))
    report_main(["tables", "--root", str(tmp_path), "--params", json.dumps(cfg)])
    gen = pd.read_csv(tmp_path / "results" / "tables" / "generation.csv")
    assert set(gen.method) == {"rag"} and set(gen.dataset) == {"nq"}
    assert pd.read_csv(tmp_path / "results" / "tables" / "significance.csv").empty
    assert "No data" in (tmp_path / "results" / "tables" / "cost.md").read_text()


def test_bad_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "runs" / "nq" / "rag" / "seed0" / "eval" / "predictions.jsonl"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"id": "a", "prediction": "x", "answers": ["x"]}\n{not json\n')
    with pytest.raises(SystemExit) as e:
        report_main(["tables", "--root", str(tmp_path), "--params", json.dumps(CONFIG)])
    assert e.value.code == 2
    assert f"{bad}:2" in capsys.readouterr().err
