"""Bootstrap intervals and paired tests of a leaderboard against exact results."""

import numpy as np
import pytest
from scipy.stats import binomtest

from xrdcore.bench.significance import bootstrap_interval, correctness, mcnemar, paired_bootstrap


def test_correctness_is_the_share_of_seeds_right_per_structure():
    true = [1, 2, 3]
    assert correctness(true, [[1, 2, 4], [1, 5, 3]]).tolist() == [1.0, 0.5, 0.5]
    with pytest.raises(ValueError, match="predictions must be"):
        correctness(true, [[1, 2]])


def test_the_bootstrap_interval_of_accuracy_matches_the_binomial_one():
    rng = np.random.default_rng(0)
    correct = rng.random(900) < 0.42
    low, high = bootstrap_interval(correct)
    exact = binomtest(int(correct.sum()), len(correct)).proportion_ci(0.95)
    assert low < correct.mean() < high
    assert abs(low - exact.low) < 0.01 and abs(high - exact.high) < 0.01


def test_paired_tests_see_a_real_difference_and_not_a_made_up_one():
    rng = np.random.default_rng(1)
    a = (rng.random(900) < 0.5).astype(float)
    same = a.copy()
    assert paired_bootstrap(a, same) == 1.0 and mcnemar(a, same) == 1.0
    better = a.copy()
    better[np.flatnonzero(a == 0)[:60]] = 1  # 60 more structures right, none lost
    assert paired_bootstrap(better, a) < 0.001 and mcnemar(better, a) < 0.001
    noise = (rng.random(900) < 0.5).astype(float)  # another model of the same accuracy
    assert paired_bootstrap(noise, a) > 0.05


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_pairs():
    a = np.array([1] * 30 + [0] * 12 + [1] * 50 + [0] * 8)
    b = np.array([0] * 30 + [1] * 12 + [1] * 50 + [0] * 8)
    assert mcnemar(a, b) == pytest.approx(binomtest(12, 42).pvalue)
