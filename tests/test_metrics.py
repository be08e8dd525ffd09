"""jsarag.metrics against known values: sacrebleu's README example, hand-computed SQuAD EM/F1,
a hand-computed ROUGE-L LCS, and R@k / MRR on hand-made hit lists; the authors' BLEU and ROUGE-L
(NLTK, rouge) and DPR's hit rule against hand-computed values; document-level gold ids
(tests/fixtures/data/docgold)."""
import numpy as np
import pytest

from jsarag import InputError
from jsarag.evaluate import authors_metrics as A
from jsarag.evaluate import metrics as M

# sacrebleu README: BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)
SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REF_STREAMS = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
               ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
REFS = [list(r) for r in zip(*REF_STREAMS)]  # per example


def test_corpus_bleu_readme_example():
    assert M.corpus_bleu(SYS, REFS) == pytest.approx(48.53, abs=0.005)


def test_bleu_stats_sum_to_corpus_bleu():
    st = M.bleu_stats(SYS, REFS, 4)
    assert st.shape == (3, 10)
    assert st[:, :4].sum(0).tolist() == [14, 7, 5, 3]       # README's matches
    assert st[:, 4:8].sum(0).tolist() == [17, 14, 11, 8]    # and totals
    assert st[:, 8].sum() == 17 and st[:, 9].sum() == 18    # hyp_len, ref_len
    assert M.bleu_from_stats(st) == pytest.approx(M.corpus_bleu(SYS, REFS))
    st1 = M.bleu_stats(SYS, REFS, 1)
    # BLEU-1 = BP * unigram precision = exp(1 - 18/17) * 14/17
    assert M.bleu_from_stats(st1, 1) == pytest.approx(100 * np.exp(1 - 18 / 17) * 14 / 17)
    assert M.corpus_bleu(SYS, REFS, 1) == pytest.approx(100 * np.exp(1 - 18 / 17) * 14 / 17)


def test_sentence_bleu_identity_and_disjoint():
    assert M.sentence_bleu("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(100.0)
    assert M.sentence_bleu("xyz", "the cat") == pytest.approx(0.0)


@pytest.mark.parametrize("pred,answers,em,f1", [
    ("The Eiffel Tower!", ["eiffel tower"], 1.0, 1.0),          # case, article, punctuation
    ("Paris", ["London", "paris"], 1.0, 1.0),                   # max over gold answers
    ("in Paris France", ["Paris"], 0.0, 2 * (1 / 3) * 1 / (1 / 3 + 1)),  # P=1/3 R=1 -> F1=0.5
    ("Barack Obama", ["Obama"], 0.0, 2 / 3),                    # P=1/2 R=1
    ("Berlin", ["Paris"], 0.0, 0.0),
])
def test_squad_em_f1(pred, answers, em, f1):
    assert M.exact_match(pred, answers) == em
    assert M.f1(pred, answers) == pytest.approx(f1)


def test_f1_counts_repeated_tokens_once_per_match():
    # pred tokens: new new york (3), gold: new york (2); overlap = min counts: new 1 + york 1 = 2
    assert M.f1("new new york", ["New York"]) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))


def test_empty_gold_list_is_an_input_error():
    with pytest.raises(InputError):
        M.exact_match("x", [])


def test_rouge_l_hand_lcs():
    # ref "the cat sat on the mat" (6), pred "the cat lay on a mat" (6); LCS = the cat on mat = 4
    assert M.rouge_l("the cat lay on a mat", "the cat sat on the mat") == pytest.approx(4 / 6)
    # P = 3/3, R = 3/6 -> F = 2/3
    assert M.rouge_l("cat sat mat", "the cat sat on the mat") == pytest.approx(2 * 1 * 0.5 / 1.5)


def test_token_f1_dialog():
    assert M.token_f1("you can reset it in settings", "Reset it in the settings menu") == pytest.approx(
        2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5))


HITS = [[False, True, False], [True, False, False], [False, False, False], [False, False, True]]


def test_recall_and_mrr_hand_cases():
    assert M.recall_at_k(HITS, 1) == pytest.approx(1 / 4)
    assert M.recall_at_k(HITS, 2) == pytest.approx(2 / 4)
    assert M.recall_at_k(HITS, 3) == pytest.approx(3 / 4)
    assert M.mrr_at_k(HITS, 3) == pytest.approx((1 / 2 + 1 + 0 + 1 / 3) / 4)
    assert M.mrr_at_k(HITS, 2) == pytest.approx((1 / 2 + 1) / 4)
    r = M.retrieval_metrics(HITS, ks=(1, 3), mrr_k=10)
    assert r == pytest.approx({"r@1": 25.0, "r@3": 75.0, "mrr@10": 100 * (1 / 2 + 1 + 1 / 3) / 4})
    assert set(M.retrieval_metrics(HITS, (1,), prefix="posterior/")) == {"posterior/r@1", "posterior/mrr@10"}


def test_generation_metrics_qa_and_dialog():
    qa = [{"id": "a", "prediction": "Paris", "answers": ["paris"]},
          {"id": "b", "prediction": "in Paris France", "answers": ["Paris"]}]
    assert M.generation_metrics(qa, "qa") == pytest.approx({"em": 50.0, "f1": 75.0})
    dlg = [{"id": str(i), "prediction": h, "target": r[0]} for i, (h, r) in enumerate(zip(SYS, REFS))]
    g = M.generation_metrics(dlg, "dialog")
    assert set(g) == {"bleu1", "bleu4", "rouge_l", "f1"}
    assert g["bleu4"] == pytest.approx(M.corpus_bleu(SYS, [r[0] for r in REFS]))
    with pytest.raises(InputError):
        M.generation_metrics([{"id": "x", "prediction": "a"}], "dialog")


# -- the authors' definitions (Caohy23/JSA-RAG src/metrics.py) and DPR's hit rule -------------


def test_authors_bleu_is_nltk_sentence_bleu_on_normalized_tokens():
    # normalized: hyp "cat sat on red mat" (5), ref "cat sat on red mat here" (6): every n-gram matches, BP = exp(1 - 6/5)
    assert A.nltk_bleu("The cat sat on a red mat!", ["A cat sat on the red mat here."], 4) == pytest.approx(np.exp(-0.2))
    assert M.sentence_bleu("The cat sat on a red mat!", "A cat sat on the red mat here.") < 50  # sacrebleu: raw 13a tokens
    # all references at once (clipped by the max count over references), not the max over references of one-reference BLEU
    refs = ["red green blue white", "yellow green blue black"]
    assert A.nltk_bleu("red green blue black", refs, 1) == pytest.approx(1.0)
    assert max(A.nltk_bleu("red green blue black", [r], 1) for r in refs) == pytest.approx(0.75)
    # no smoothing: a missing 4-gram match gives (about) 0, an empty prediction 0
    assert A.nltk_bleu("red green blue black", refs, 4) < 1e-50
    assert A.nltk_bleu("", ["anything"], 4) == 0.0


def test_authors_rouge_l_is_the_rouge_package():
    # rouge 1.0.1 counts distinct words (its Ngrams are sets): ref "the cat sat on the mat" has 5, LCS {cat, sat, mat} = 3,
    # R = 3/5, P = 3/3 -> F = 0.75, where rouge-score (the suite's) gives LCS 3 of 6 words: R = 1/2 -> F = 2/3
    assert A.rouge_l_authors("cat sat mat", ["the cat sat on the mat"]) == pytest.approx(0.75, abs=1e-6)
    assert M.rouge_l("cat sat mat", "the cat sat on the mat") == pytest.approx(2 / 3)
    # case kept (LCS {sat, mat}: R = 2/5, P = 2/3 -> F = 0.5), max over references, an empty reference skipped
    assert A.rouge_l_authors("Cat sat mat", ["the cat sat on the mat", "", "xyz"]) == pytest.approx(0.5, abs=1e-6)
    assert A.rouge_l_authors("", ["the cat"]) == 0.0 and A.rouge_l_authors("the cat", [""]) == 0.0
    assert A.rouge_l_authors("...", ["the cat"]) == 0.0  # the package raises (no sentence): the authors score 0


def test_authors_keys_beside_the_suites():
    dlg = [{"id": str(i), "prediction": h, "target": r[0]} for i, (h, r) in enumerate(zip(SYS, REFS))]
    suite, both = M.generation_metrics(dlg, "dialog"), M.generation_metrics(dlg, "dialog", authors=True)
    assert set(both) == set(suite) | set(A.AUTHORS_METRICS) and all(both[k] == suite[k] for k in suite)
    assert both["bleu4_authors"] == pytest.approx(100 * np.mean([A.nltk_bleu(h, [r[0]], 4) for h, r in zip(SYS, REFS)]))
    assert both["bleu4_authors"] != pytest.approx(both["bleu4"], abs=1.0)
    # QA rows are scored against every answer, as the authors' evaluate.py passes batch["answers"]
    qa = [{"id": "a", "prediction": "Lennon", "answers": ["Paul McCartney", "John Lennon"]}]
    assert M.generation_metrics(qa, "qa", authors=True)["bleu1_authors"] == pytest.approx(100 * np.exp(1 - 2))
    with pytest.raises(InputError, match="row 1"):
        A.authors_scores([{"id": "x", "prediction": "a", "answers": []}])


def test_dpr_has_answers_beside_containment():
    from jsarag.text import has_answer

    for rule in (has_answer, A.dpr_has_answer):
        assert rule("The Beatles were an English rock band.", ["The Beatles"])
    # containment drops articles on both sides, so it finds 'The Beatles' in 'Beatles were ...'; DPR's token match does not
    assert has_answer("Beatles were an English rock band.", ["The Beatles"])
    assert not A.dpr_has_answer("Beatles were an English rock band.", ["The Beatles"])
    ex, ps = {"id": "q", "answers": ["The Beatles"]}, [{"id": "p0", "contents": "Beatles were a band."},
                                                       {"id": "p1", "contents": "The Beatles played."}]
    assert M.passage_hits(ex, ps) == [True, True] and M.dpr_hits(ex, ps) == [False, True]
    row = M.prediction_row(ex, ["p0", "p1"], M.passage_hits(ex, ps), M.dpr_hits(ex, ps))
    assert M.row_retrieval_metrics([row], [1], dpr=True) == {"r@1": 100.0, "mrr@10": 100.0, "r@1_dpr": 0.0, "mrr@10_dpr": 50.0}
    assert M.dpr_hits({"id": "g", "answers": ["x"], "gold_passages": ["p0"]}, ps) == [True, False]  # gold ids rule both


def test_evaluate_section_metrics_and_hits_options():
    from jsarag.config import EvaluateConfig

    ev = EvaluateConfig.from_dict({"metrics": "authors", "hits": "dpr"}, "evaluate")
    assert (ev.metrics, ev.hits) == ("authors", "dpr")
    assert (EvaluateConfig().metrics, EvaluateConfig().hits) == ("suite", "containment")
    with pytest.raises(InputError, match="evaluate.hits"):
        EvaluateConfig.from_dict({"hits": "contains"}, "evaluate")


# -- document-level gold ids ------------------------------------------------------------------
def test_gold_id_naming_a_split_document_matches_each_of_its_passages(tmp_path):
    from pathlib import Path

    from jsarag.data.corpora import prepare_corpus
    from jsarag.data.datasets import prepare_dataset
    from jsarag.data.download import fetch
    from jsarag.io import read_jsonl
    from jsarag.layout import Layout

    z, corpus = tmp_path / "docs.zip", tmp_path / "passages.jsonl"
    fetch("docs", {"path": str(Path(__file__).parent / "fixtures" / "data" / "docgold")}, z)
    assert prepare_corpus({"format": "jsonl", "download": "docs", "member": "corpus.jsonl", "passage_words": 12}, z, corpus) == 8
    lay = Layout(str(tmp_path / "o"))
    cfg = {"task": "qa", "corpus": "c", "format": "jsonl", "download": "docs", "members": {"test": "qa.jsonl"}, "n_test": 3,
           "n_valid": 0, "n_train": 0}
    stats = prepare_dataset("d", cfg, {"docs": str(z)}, str(corpus), lay)
    assert stats["gold_passages_checked"] == 4
    ex = {e["id"]: e for e in read_jsonl(lay.split("d", "test"))}
    assert ex["doc1"]["gold_passages"] == ["beatles#0", "beatles#1", "beatles#2"] and ex["doc1"]["gold_documents"] == ["beatles"]
    assert ex["doc2"]["gold_passages"] == ["liverpool#0"] and "gold_documents" not in ex["doc2"]  # a passage id stays as it is
    assert ex["doc3"]["gold_passages"] == ["mersey#0", "mersey#1", "liverpool#0", "liverpool#1", "liverpool#2"]
    # R@k and MRR: any passage of the named document is a hit
    store = {p["id"]: p for p in read_jsonl(corpus)}
    ranking = [store[i] for i in ("liverpool#1", "beatles#2", "mersey#1")]
    hits = [M.passage_hits(ex[q], ranking) for q in ("doc1", "doc2", "doc3")]
    assert hits == [[False, True, False], [False, False, False], [True, False, True]]
    assert M.retrieval_metrics(hits, (1, 2), 10) == pytest.approx({"r@1": 100 / 3, "r@2": 200 / 3, "mrr@10": 100 * 1.5 / 3})
    # an id that is neither a passage nor a split document is still refused, by name
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "qa.jsonl").write_text('{"id": "x", "question": "q", "answers": ["a"], "gold_passages": ["beatles#7"]}\n')
    fetch("bad", {"path": str(tmp_path / "bad")}, tmp_path / "bad.zip")
    with pytest.raises(InputError, match="gold passage 'beatles#7' is not in the corpus"):
        prepare_dataset("b", {**cfg, "download": "bad", "n_test": 1}, {"bad": str(tmp_path / "bad.zip")}, str(corpus), lay)


# docs/method.md ("Metrics") quotes the two definitions side by side on these 10 toy responses (made up for the test)
TOY_DIALOG = [
    ("You can freeze the dough for up to three months.", "Yes, the dough freezes well for about three months."),
    ("Add a pinch of salt to the water.", "Add salt to the boiling water before the pasta."),
    ("It is best to rest the meat for ten minutes.", "Let the meat rest for ten minutes before cutting."),
    ("No, you should not wash mushrooms.", "Don't soak them; just brush the mushrooms clean."),
    ("Use baking soda instead.", "You can use baking soda with an acid instead."),
    ("The oven should be at 180 degrees.", "Bake it at 180 degrees for 25 minutes."),
    ("Yes.", "Yes, you can."),
    ("I don't know.", "CANNOTANSWER"),
    ("Keep the bread in a paper bag at room temperature.", "Keep the bread in a paper bag at room temperature, not in the fridge."),
    ("Whisk the egg whites until they form stiff peaks.", "Whisk the egg whites until stiff peaks form."),
]


def test_toy_dialog_two_definitions_side_by_side():
    rows = [{"id": str(i), "prediction": p, "target": t} for i, (p, t) in enumerate(TOY_DIALOG)]
    g = M.generation_metrics(rows, "dialog", authors=True)
    assert {k: round(g[k], 2) for k in ("bleu4", "bleu4_authors", "bleu1", "bleu1_authors", "rouge_l", "rouge_l_authors")} == {
        "bleu4": 27.90, "bleu4_authors": 11.15, "bleu1": 55.46, "bleu1_authors": 41.29, "rouge_l": 49.46, "rouge_l_authors": 43.24}
    # unsmoothed: every response without a 4-gram match after normalization scores 0, sacrebleu's sentence BLEU does not
    zero = [A.nltk_bleu(p, [t], 4) < 1e-6 for p, t in TOY_DIALOG]
    assert sum(zero) == 8 and all(M.sentence_bleu(p, t) > 0 for (p, t), z in zip(TOY_DIALOG, zero) if z and t != "CANNOTANSWER")
