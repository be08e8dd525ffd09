"""jsarag.metrics against known values: sacrebleu's README example, hand-computed SQuAD EM/F1,
a hand-computed ROUGE-L LCS, and R@k / MRR on hand-made hit lists."""
import numpy as np
import pytest

from jsarag import InputError
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
