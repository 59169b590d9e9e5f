"""The min-norm solver against brute force (a dense grid over the simplex, and exact enumeration
of the simplex's faces), on degenerate inputs, and with its iteration bound."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from xrd_decoupler.mgda import min_norm_point, min_norm_weights


def grid_minimum(vectors: np.ndarray, n: int) -> float:
    """min ||Σ w_i v_i||² over the simplex points with coordinates in steps of 1/n (2 or 3 vectors)."""
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = i + j <= n if len(vectors) == 3 else j == n - i
    w = np.stack([i[keep], j[keep], n - i[keep] - j[keep]][: len(vectors)], axis=1) / n
    points = w @ vectors
    return float((points ** 2).sum(axis=1).min())


def exact_minimum(vectors: np.ndarray) -> float:
    """min over the simplex by enumerating every face: the affine minimiser of each subset (KKT
    system), kept if its weights are >= 0; independent of the solver's algorithm."""
    gram = vectors @ vectors.T
    best = np.inf
    for k in range(1, len(vectors) + 1):
        for subset in itertools.combinations(range(len(vectors)), k):
            g = gram[np.ix_(subset, subset)]
            kkt = np.block([[2 * g, np.ones((k, 1))], [np.ones((1, k)), np.zeros((1, 1))]])
            w = np.linalg.lstsq(kkt, np.r_[np.zeros(k), 1.0], rcond=None)[0][:k]
            if np.all(w >= -1e-12):
                best = min(best, float(w @ g @ w))
    return best


def check_valid(solution, t):
    assert solution.weights.shape == (t,)
    assert np.all(np.isfinite(solution.weights)) and np.all(solution.weights >= 0)
    assert solution.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.isfinite(solution.norm_sq) and solution.norm_sq >= 0


@pytest.mark.parametrize("t", [2, 3])
@pytest.mark.parametrize("seed", range(12))
def test_matches_a_dense_grid_search(t, seed):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(t, int(rng.integers(1, 6)))) * rng.lognormal(size=(t, 1))
    solution = min_norm_point(vectors)
    check_valid(solution, t)
    assert solution.converged
    grid = grid_minimum(vectors, 2000 if t == 2 else 300)
    scale = float((vectors ** 2).sum(1).max())
    # the solver is never worse than the grid, and the grid (spacing 1/n) is at most a little worse
    assert solution.norm_sq <= grid + 1e-10 * scale
    assert grid - solution.norm_sq <= 1e-3 * scale
    assert solution.norm_sq == pytest.approx(exact_minimum(vectors), abs=1e-9 * scale)
    w = solution.weights
    assert float(w @ vectors @ vectors.T @ w) == pytest.approx(solution.norm_sq, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("t", [4, 6, 8])
def test_matches_exact_enumeration_for_more_vectors(t):
    rng = np.random.default_rng(t)
    for _ in range(20):
        d = int(rng.integers(1, 2 * t))
        vectors = rng.normal(size=(t, d)) * rng.lognormal(size=(t, 1)) + rng.normal(size=d)
        solution = min_norm_point(vectors)
        check_valid(solution, t)
        assert solution.converged and solution.iterations <= 100
        scale = float((vectors ** 2).sum(1).max())
        assert solution.norm_sq == pytest.approx(exact_minimum(vectors), abs=1e-9 * scale)


def test_two_vectors_closed_form():
    a, b = np.array([2.0, 0.0]), np.array([0.0, 1.0])
    solution = min_norm_point(np.stack([a, b]))
    # w a + (1 - w) b has norm² 4w² + (1 - w)², least at w = 1/5
    np.testing.assert_allclose(solution.weights, [0.2, 0.8])
    assert solution.norm_sq == pytest.approx(0.8)
    assert solution.iterations == 0


@pytest.mark.parametrize("t", [2, 3, 5])
def test_identical_vectors_share_equally(t):
    solution = min_norm_point(np.tile([[1.0, -2.0, 0.5]], (t, 1)))
    check_valid(solution, t)
    np.testing.assert_allclose(solution.weights, np.full(t, 1 / t))
    assert solution.norm_sq == pytest.approx(5.25)


def test_duplicates_split_the_weight_of_their_group():
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    solution = min_norm_point(vectors)
    np.testing.assert_allclose(solution.weights, [0.25, 0.25, 0.5])
    assert solution.norm_sq == pytest.approx(0.5)


@pytest.mark.parametrize("t", [1, 2, 3, 6])
def test_all_zero_vectors_give_uniform_weights(t):
    solution = min_norm_point(np.zeros((t, 4)))
    check_valid(solution, t)
    np.testing.assert_allclose(solution.weights, np.full(t, 1 / t))
    assert solution.norm_sq == 0 and solution.converged


@pytest.mark.parametrize("where", [0, 1, 2])
def test_one_zero_vector_takes_all_the_weight(where):
    vectors = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    vectors[where] = 0.0
    solution = min_norm_point(vectors)
    check_valid(solution, 3)
    assert solution.weights[where] == pytest.approx(1.0)
    assert solution.norm_sq == pytest.approx(0.0, abs=1e-15)
    assert min_norm_point(vectors[[where, (where + 1) % 3]]).weights[0] == pytest.approx(1.0)


def test_opposite_vectors_reach_zero():
    solution = min_norm_point(np.array([[3.0, 1.0], [-3.0, -1.0]]))
    np.testing.assert_allclose(solution.weights, [0.5, 0.5])
    assert solution.norm_sq == pytest.approx(0.0, abs=1e-12)
    # opposite with different lengths: w = 1/3 on the longer one
    solution = min_norm_point(np.array([[2.0, 0.0], [-1.0, 0.0]]))
    np.testing.assert_allclose(solution.weights, [1 / 3, 2 / 3])
    # three vectors whose hull contains the origin
    solution = min_norm_point(np.array([[1.0, 0.0], [-1.0, 1.0], [-1.0, -1.0]]))
    assert solution.norm_sq == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(solution.weights, [0.5, 0.25, 0.25], atol=1e-12)


def test_a_dominant_vector_gets_almost_no_weight():
    vectors = np.array([[1000.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    solution = min_norm_point(vectors)
    check_valid(solution, 3)
    # the min-norm point of e_2, e_3 and a long e_1: weights ∝ 1/||v_i||²
    expected = np.array([1e-6, 1.0, 1.0]) / (2 + 1e-6)
    np.testing.assert_allclose(solution.weights, expected, rtol=1e-9)
    # a long vector in the same direction as a short one: the short one wins outright
    solution = min_norm_point(np.array([[10.0, 0.0], [1.0, 0.0], [2.0, 0.5]]))
    np.testing.assert_allclose(solution.weights, [0.0, 1.0, 0.0], atol=1e-12)


def test_the_iteration_bound_is_honoured():
    # the simplex of the unit vectors: the minimum (weights 1/4) needs three minor cycles
    done = min_norm_point(np.eye(4))
    assert done.converged and done.iterations == 3
    np.testing.assert_allclose(done.weights, np.full(4, 0.25))
    for bound in (1, 2):
        stopped = min_norm_point(np.eye(4), max_iter=bound)
        check_valid(stopped, 4)
        assert stopped.iterations == bound and not stopped.converged
        assert stopped.gap > 1e-3 and stopped.norm_sq > done.norm_sq
    rng = np.random.default_rng(0)
    many = rng.normal(size=(40, 30)) + 0.3
    stopped = min_norm_point(many, max_iter=3)
    assert stopped.iterations == 3 and not stopped.converged
    check_valid(stopped, 40)


def test_tolerance_is_relative_to_the_largest_norm():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(5, 7))
    small, large = min_norm_point(vectors * 1e-8), min_norm_point(vectors * 1e8)
    np.testing.assert_allclose(small.weights, large.weights, atol=1e-9)
    assert small.converged and large.converged


def test_accepts_torch_and_lists_and_rejects_bad_input():
    gram = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float32)
    np.testing.assert_allclose(min_norm_weights(gram).weights, [0.5, 0.5])
    np.testing.assert_allclose(min_norm_weights([[4.0]]).weights, [1.0])
    with pytest.raises(ValueError, match="square"):
        min_norm_weights(np.ones((2, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        min_norm_weights([[1.0, np.nan], [np.nan, 1.0]])
    with pytest.raises(ValueError, match="max_iter"):
        min_norm_weights(np.eye(3), max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        min_norm_weights(np.eye(3), tol=0)
    with pytest.raises(ValueError, match=r"\(T, D\)"):
        min_norm_point(np.ones(3))
