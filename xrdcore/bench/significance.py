"""How sure a leaderboard is: bootstrap intervals of accuracy over test structures, and paired
tests between two rows scored on the same test structures.

A row trained with several seeds is scored per structure by the fraction of its seeds that got it
right; resampling structures then gives intervals and tests that include the spread over test
structures (the larger part with a few hundred of them), not only the spread over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: bootstrap resamples: the 2.5% / 97.5% quantiles move by < 0.1 point between reruns
RESAMPLES = 10_000


def correctness(true: Sequence[int], predictions: Sequence[Sequence[int]]) -> np.ndarray:
    """Per test structure, the fraction of runs (seeds) whose top-1 prediction is right."""
    true = np.asarray(true)
    runs = np.asarray(predictions)
    if runs.ndim != 2 or runs.shape[1] != len(true):
        raise ValueError(f"predictions must be (runs, {len(true)}), got shape {runs.shape}")
    return (runs == true[None]).mean(axis=0)


def bootstrap_interval(correct: np.ndarray, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``correct`` over resampled test structures."""
    correct = np.asarray(correct, dtype=float)
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), (RESAMPLES, len(correct)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def paired_bootstrap(a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
    """Two-sided p-value of "a and b are equally accurate" from resampling test structures in pairs:
    twice the share of resamples in which the observed sign of mean(a) - mean(b) does not hold
    (at least 1 / RESAMPLES: the test cannot resolve smaller)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired rows need the same test structures, got {a.shape} and {b.shape}")
    difference = a - b
    observed = difference.mean()
    if not np.any(difference):
        return 1.0
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, len(difference), (RESAMPLES, len(difference)))].mean(axis=1)
    opposite = np.mean(means <= 0) if observed > 0 else np.mean(means >= 0)
    return float(min(1.0, max(2 * opposite, 1 / RESAMPLES)))


def mcnemar(a: np.ndarray, b: np.ndarray) -> float:
    """Exact two-sided McNemar p-value for two single runs (0/1 correctness on the same structures)."""
    a, b = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return float(min(1.0, 2 * tail))
