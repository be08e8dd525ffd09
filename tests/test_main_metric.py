"""Each dataset is judged on a metric that fits it: `metric: main` in claims.yaml reads the dataset's
main metric (datasets.NAME.metric; EM for qa, BLEU-4 for dialog by default), marked in significance.csv."""
import pandas as pd
import pytest

from jsarag import InputError
from jsarag.config import ReportConfig, report_params
from jsarag.report.claims import check_all

SIG = ["dataset", "metric", "a", "b", "delta", "lo", "hi", "p_bootstrap", "p_permutation", "n", "main"]


def _tables(tmp_path, rows):
    pd.DataFrame(rows, columns=SIG).to_csv(tmp_path / "significance.csv", index=False)
    return tmp_path


def test_main_metric_per_dataset(tmp_path):
    rows = [("nq", "em", "jsa", "zero-shot", 1.0, -0.5, 2.5, 0.2, 0.2, 200, True),
            ("nq", "f1", "jsa", "zero-shot", -9.0, -12.0, -6.0, 0.01, 0.01, 200, False),
            ("faq", "em", "jsa", "zero-shot", -5.0, -7.0, -3.0, 0.01, 0.01, 64, False),   # EM says nothing on long answers
            ("faq", "bleu4", "jsa", "zero-shot", 4.0, 1.0, 7.0, 0.01, 0.01, 64, True)]
    claim = {"id": "sanity", "text": "t", "kind": "delta", "dataset": "*", "metric": "main", "a": "jsa", "b": "zero-shot",
             "direction": ">=", "margin": 2.0}
    v = {x.claim_id: x for x in check_all([claim], _tables(tmp_path, rows))}
    assert v["sanity[nq]"].status == "CONFIRMED" and "significance[nq, em," in v["sanity[nq]"].where
    assert v["sanity[faq]"].status == "CONFIRMED" and "significance[faq, bleu4," in v["sanity[faq]"].where
    assert "bleu4 is faq's main metric" in v["sanity[faq]"].detail and "MDE=" in v["sanity[faq]"].detail


def test_no_main_row_is_a_skip(tmp_path):
    rows = [("nq", "em", "jsa", "zero-shot", 1.0, -0.5, 2.5, 0.2, 0.2, 200, False)]
    claim = {"id": "s", "text": "t", "kind": "delta", "dataset": "nq", "metric": "main", "a": "jsa", "b": "zero-shot", "direction": ">"}
    assert check_all([claim], _tables(tmp_path, rows))[0].status == "SKIP"


def test_the_config_declares_it_and_the_report_checks_it():
    cfg = {"datasets": {"nq": {"task": "qa"}, "faq": {"task": "dialog", "metric": "rouge_l"}}, "methods": ["rag"], "seeds": [0]}
    rc = ReportConfig.from_dict(report_params(cfg), "report")
    assert (rc.main_metric("nq"), rc.main_metric("faq")) == ("em", "rouge_l")
    with pytest.raises(InputError, match="datasets.faq.metric: em is not a dialog metric"):
        ReportConfig.from_dict({**report_params(cfg), "main_metrics": {"faq": "em"}}, "report")
    with pytest.raises(InputError, match="needs evaluate.metrics: authors"):
        ReportConfig.from_dict({**report_params(cfg), "main_metrics": {"faq": "bleu4_authors"}}, "report")


def test_definitions_side_by_side(tmp_path, capsys):
    """The two BLEU-4 / ROUGE-L definitions on one predictions file: the authors' unsmoothed NLTK BLEU
    gives 0 to a short answer with no 4-gram match, where sacrebleu's smoothed sentence BLEU does not;
    the `rouge` package keeps case where rouge-score lowercases."""
    from jsarag.io import write_jsonl
    from jsarag.report.__main__ import main
    from jsarag.report.definitions import COLUMNS, side_by_side

    rows = [{"id": "a", "answers": ["Paris"], "prediction": "paris"},
            {"id": "b", "answers": ["the river Seine", "Seine"], "prediction": "the river seine flows"},
            {"id": "c", "answers": ["x"], "prediction": None}]  # past generate_n: left out
    got = side_by_side(rows, "p.jsonl")
    assert got["n"] == 2
    assert got[COLUMNS[2]] == pytest.approx(0.0)  # NLTK, no smoothing: no 4-gram in either pair
    assert got[COLUMNS[1]] > 0  # sacrebleu's effective order scores the unigram match
    assert got[COLUMNS[3]] == pytest.approx(100 * (1.0 + 2 * 0.75 * 1.0 / 1.75) / 2)  # rouge-score: 'paris' == 'Paris'
    assert got[COLUMNS[4]] < got[COLUMNS[3]]  # the rouge package keeps case: 'paris' != 'Paris'
    write_jsonl(tmp_path / "p.jsonl", rows)
    main(["definitions", f"run={tmp_path / 'p.jsonl'}"])
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("| predictions | n | bleu4 (sacrebleu corpus)") and "| run | 2 |" in out
