"""jsarag.stats: bootstrap CIs cover known means, paired tests separate clearly different methods and
give p = 1 on identical ones, seeded results are reproducible."""
import numpy as np
import pytest

from jsarag import InputError
from jsarag.evaluate import metrics as M
from jsarag.report import stats as S


def test_bootstrap_ci_covers_known_mean():
    rng = np.random.default_rng(123)
    x = rng.normal(5.0, 1.0, size=400)
    ci = S.bootstrap_ci(x, n_boot=1000, seed=0)
    assert ci.value == pytest.approx(x.mean())
    assert ci.lo < 5.0 < ci.hi
    assert ci.hi - ci.lo == pytest.approx(2 * 1.96 / np.sqrt(400), rel=0.25)  # ~ normal-theory width
    assert S.bootstrap_ci(x, 1000, seed=0) == ci                              # seeded


def test_bootstrap_ci_coverage_is_near_nominal():
    rng = np.random.default_rng(7)
    hits = 0
    for i in range(100):  # 100 samples of Bernoulli(0.3): the 95% CI should cover 0.3 about 95 times
        ci = S.bootstrap_ci(rng.binomial(1, 0.3, 200).astype(float), 300, seed=i)
        hits += ci.lo <= 0.3 <= ci.hi
    assert 85 <= hits <= 100


def test_corpus_bootstrap_recomputes_bleu():
    hyps = ["the cat sat on the mat", "a dog barked", "hello world", "it rained all day"] * 10
    refs = ["the cat sat on a mat", "the dog barked loudly", "hello there world", "it rained the whole day"] * 10
    st = M.bleu_stats(hyps, refs)
    ci = S.bootstrap_corpus_ci(st, M.bleu_from_stats, n_boot=300, seed=0)
    assert ci.value == pytest.approx(M.corpus_bleu(hyps, refs))
    assert ci.lo <= ci.value <= ci.hi and ci.hi > ci.lo


def test_paired_tests_clearly_different_pair():
    rng = np.random.default_rng(0)
    b = rng.binomial(1, 0.3, 300).astype(float)
    a = np.maximum(b, rng.binomial(1, 0.4, 300).astype(float))  # a dominates b
    res = S.paired_bootstrap(a, b, n_boot=1000, seed=0)
    assert res.delta == pytest.approx(a.mean() - b.mean())
    assert res.lo > 0 and res.p < 0.05
    assert S.permutation_test(a, b, n_perm=1000, seed=0) < 0.05


def test_paired_tests_identical_pair_p_is_one():
    x = np.random.default_rng(1).random(50)
    assert S.permutation_test(x, x.copy(), n_perm=500, seed=0) == 1.0
    assert S.paired_bootstrap(x, x.copy(), n_boot=500, seed=0).p == 1.0


def test_corpus_paired_tests():
    hyps_good = ["the cat sat on the mat", "the dog barked loudly"] * 15
    hyps_bad = ["zebra", "quantum"] * 15
    refs = ["the cat sat on the mat", "the dog barked loudly"] * 15
    a, b = M.bleu_stats(hyps_good, refs), M.bleu_stats(hyps_bad, refs)
    res = S.paired_bootstrap(a, b, 300, seed=0, fn=M.bleu_from_stats)
    assert res.delta == pytest.approx(100.0) and res.p < 0.05
    assert S.permutation_test(a, b, 300, seed=0, fn=M.bleu_from_stats) < 0.05
    assert S.permutation_test(a, a.copy(), 100, seed=0, fn=M.bleu_from_stats) == 1.0


def test_misaligned_and_empty_inputs():
    with pytest.raises(InputError):
        S.paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(InputError):
        S.bootstrap_ci([])


def test_mean_sd_over_seeds():
    assert S.mean_sd([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert S.mean_sd([4.0]) == (4.0, 0.0)
