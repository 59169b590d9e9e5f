"""xrdcore.metrics: every expected value here is derived in the test from the metric's definition
(hand-worked small cases, brute-force re-implementations, SpaceGroup fields), not from the code."""

import json
import math

import numpy as np
import pytest
import torch

from xrdcore import metrics
from xrdcore.crystal import UnknownLevelError, level, space_group, space_groups
from xrdcore.metrics import (
    balanced_accuracy_subset,
    balanced_score,
    confusion_matrix,
    evaluate,
    extinction_ceiling,
    level_accuracy,
    macro_f1,
    sub_property_confusion,
    top_k_accuracy,
)


def one_hot_scores(pred_sg):
    scores = np.zeros((len(pred_sg), 230))
    scores[np.arange(len(pred_sg)), np.asarray(pred_sg) - 1] = 1.0
    return scores


# ---------------------------------------------------------------- top-k

def test_top_k_hand_case():
    scores = np.zeros((3, 230))
    scores[0, [4, 9, 19]] = [3.0, 2.0, 1.0]  # ranking: SG 5, 10, 20, then the rest
    scores[1, [4, 9, 19]] = [3.0, 2.0, 1.0]
    scores[2, [4, 9, 19]] = [3.0, 2.0, 1.0]
    true = [5, 10, 20]  # ranks 1, 2, 3
    assert top_k_accuracy(scores, true, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(scores, true, 2) == pytest.approx(2 / 3)
    assert top_k_accuracy(scores, true, 3) == 1.0
    assert top_k_accuracy(scores, true, 230) == 1.0


def test_top_k_ties_go_to_the_lower_number_like_argmax():
    scores = np.zeros((2, 230))  # all tied: rank = position in space-group order
    assert top_k_accuracy(scores, [1, 2], 1) == 0.5
    assert top_k_accuracy(scores, [1, 2], 2) == 1.0
    assert top_k_accuracy(scores, [230, 230], 229) == 0.0
    assert top_k_accuracy(scores, [230, 230], 230) == 1.0


def test_top_k_matches_brute_force_on_random_tied_scores():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(1, 12))
        scores = rng.integers(0, 4, size=(n, 230)).astype(float)  # many ties
        true = rng.integers(1, 231, size=n)
        for k in (1, 2, 5, 17):
            hits = 0
            for row, t in zip(scores, true):
                order = sorted(range(230), key=lambda j: (-row[j], j))  # stable: ties by number
                hits += (t - 1) in order[:k]
            assert top_k_accuracy(scores, true, k) == pytest.approx(hits / n)
        assert top_k_accuracy(scores, true, 1) == pytest.approx(np.mean(scores.argmax(1) + 1 == true))


def test_top_k_accepts_torch_tensors_including_bf16():
    scores = torch.zeros(2, 230, dtype=torch.bfloat16)
    scores[0, 7] = 1
    scores[1, 3] = 1
    assert top_k_accuracy(scores, torch.tensor([8, 5]), 1) == 0.5


# ---------------------------------------------------------------- macro-F1

def test_macro_f1_two_classes_by_hand():
    # class 1: TP 1, FP 0, FN 1 -> P 1, R 1/2, F1 2/3; class 2: TP 2, FP 1, FN 0 -> P 2/3, R 1, F1 4/5
    assert macro_f1([1, 2, 2, 2], [1, 1, 2, 2]) == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_macro_f1_counts_classes_only_predicted_as_zero_and_ignores_absent_ones():
    # class 1: F1 2/3; class 2 only predicted: F1 0; the other 228 classes do not count
    assert macro_f1([1, 2], [1, 1]) == pytest.approx(1 / 3)
    assert macro_f1([7, 7, 9], [7, 7, 9]) == 1.0


def brute_macro_f1(pred, true):
    f1s = []
    for c in sorted(set(pred) | set(true)):
        tp = sum(p == c and t == c for p, t in zip(pred, true))
        fp = sum(p == c and t != c for p, t in zip(pred, true))
        fn = sum(p != c and t == c for p, t in zip(pred, true))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(f1s) / len(f1s)


def test_macro_f1_matches_brute_force_on_random_labels():
    rng = np.random.default_rng(2)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        pool = rng.choice(np.arange(1, 231), size=int(rng.integers(1, 6)), replace=False)
        pred, true = rng.choice(pool, n), rng.choice(pool, n)
        assert macro_f1(pred, true) == pytest.approx(brute_macro_f1(pred.tolist(), true.tolist()))


# ---------------------------------------------------------------- levels

def test_level_accuracy_agrees_with_space_group_fields():
    rng = np.random.default_rng(3)
    pred, true = rng.integers(1, 231, 200), rng.integers(1, 231, 200)
    for name in ("crystal_system", "centring", "point_group", "bravais", "extinction_class_any_setting"):
        expected = np.mean([getattr(space_group(int(p)), name) == getattr(space_group(int(t)), name)
                            for p, t in zip(pred, true)])
        assert level_accuracy(pred, true, name) == pytest.approx(expected)
    assert level_accuracy(pred, true, "space_group") == pytest.approx(np.mean(pred == true))


def test_level_accuracy_unknown_level():
    with pytest.raises(UnknownLevelError, match="crystal_system"):
        level_accuracy([1], [1], "crystal_sytem")


# ---------------------------------------------------------------- sub-property confusion

def test_sub_property_confusion_on_i4_p4_family():
    i4, i_4, p4, p_4 = (space_group(n) for n in (79, 82, 75, 81))
    # the construction: I4/I-4 share system and centring but not point group; I4/P4 share the
    # point group but not the centring (checked from the tables, not assumed)
    assert i4.crystal_system == i_4.crystal_system and i4.centring == i_4.centring
    assert i4.point_group != i_4.point_group
    assert i4.point_group == p4.point_group and i4.centring != p4.centring
    assert p4.centring == p_4.centring and p4.point_group != p_4.point_group

    true = [79, 79, 82, 75, 81, 75, 1]
    pred = [82, 75, 79, 81, 79, 75, 1]  # five wrong, two right
    result = sub_property_confusion(pred, true)
    wrong = [(p, t) for p, t in zip(pred, true) if p != t]
    assert result["n_wrong"] == len(wrong) == 5
    for name in ("crystal_system", "centring", "point_group"):
        expected = np.mean([getattr(space_group(p), name) == getattr(space_group(t), name)
                            for p, t in wrong])
        assert result[name] == pytest.approx(expected)
    # worked out: all tetragonal; centring agrees for (82,79), (79,82), (81,75); point group
    # agrees for (75,79) only
    assert result == {"n_wrong": 5, "crystal_system": 1.0, "centring": pytest.approx(3 / 5),
                      "point_group": pytest.approx(1 / 5)}


def test_sub_property_confusion_without_errors_is_none_not_nan():
    result = sub_property_confusion([5, 6], [5, 6])
    assert result == {"n_wrong": 0, "crystal_system": None, "centring": None, "point_group": None}


# ---------------------------------------------------------------- balanced subset

def balanced_labels():
    # SG 1: 15 items, SG 2: 10, SG 3: 9 (too few), SG 4: 30; shuffled
    labels = np.array([1] * 15 + [2] * 10 + [3] * 9 + [4] * 30)
    return np.random.default_rng(4).permutation(labels)


def test_balanced_subset_takes_ten_per_class_from_classes_with_ten_or_more():
    true = balanced_labels()
    subset = balanced_accuracy_subset(true, seed=0)
    counts = {int(c): int(n) for c, n in zip(*np.unique(true[subset], return_counts=True))}
    assert counts == {1: 10, 2: 10, 4: 10}
    assert len(set(subset.tolist())) == len(subset)  # no item twice
    assert set(subset.tolist()) >= set(np.flatnonzero(true == 2).tolist())  # all 10 of SG 2


def test_balanced_subset_is_deterministic_per_seed_and_varies_with_it():
    true = balanced_labels()
    a = balanced_accuracy_subset(true, seed=7)
    assert np.array_equal(a, balanced_accuracy_subset(true.copy(), seed=7))
    assert any(not np.array_equal(a, balanced_accuracy_subset(true, seed=s)) for s in range(5))


def test_balanced_subset_never_exceeds_per_class_on_random_labels():
    rng = np.random.default_rng(5)
    for seed in range(10):
        true = rng.integers(1, 8, size=int(rng.integers(1, 120)))
        subset = balanced_accuracy_subset(true, seed)
        _, all_counts = np.unique(true, return_counts=True)
        assert len(subset) == 10 * int(np.sum(all_counts >= 10))
        if len(subset):
            assert np.unique(true[subset], return_counts=True)[1].max() <= 10
    small = balanced_accuracy_subset([1] * 3 + [2] * 12, seed=0, per_class=5, min_count=2)
    assert sorted(np.unique(np.array([1] * 3 + [2] * 12)[small], return_counts=True)[1]) == [3, 5]


def test_balanced_score_by_hand_and_none_when_no_class_qualifies():
    true = balanced_labels()
    pred = np.where(true == 1, 1, 100)  # right exactly on SG 1
    for seed in range(3):  # 10 right out of 30 whatever the draw
        assert balanced_score(pred, true, seed) == pytest.approx(1 / 3)
    assert balanced_score([1, 2], [1, 2], seed=0) is None


# ---------------------------------------------------------------- extinction ceiling

def test_extinction_ceiling_by_hand():
    p_class = space_group(75).extinction_class_any_setting
    i_class = space_group(79).extinction_class_any_setting
    assert space_group(81).extinction_class_any_setting == p_class
    assert space_group(82).extinction_class_any_setting == i_class and i_class != p_class
    assert space_group(1).extinction_class_any_setting not in (p_class, i_class)

    train = [75, 75, 81, 81, 81, 79, 82]  # P class -> 81 (3 vs 2); I class tie 1-1 -> 79
    test = [75, 81, 81, 79, 82, 1]  # SG 1's class never seen in training -> wrong
    assert metrics.extinction_ceiling_predictions(train, test).tolist() == [81, 81, 81, 79, 79, 0]
    assert extinction_ceiling(train, test) == pytest.approx(3 / 6)


def test_extinction_ceiling_depends_on_the_level():
    # two groups with the same absences in some setting, but not in the standard one
    a, b = next((x.number, y.number) for x in space_groups() for y in space_groups()
                if x.number < y.number
                and x.extinction_class_any_setting == y.extinction_class_any_setting
                and x.extinction_class != y.extinction_class)
    train, test = [a, a, b], [b]
    assert extinction_ceiling(train, test, "extinction_class_any_setting") == 0.0  # predicts a
    assert extinction_ceiling(train, test, "extinction_class") == 1.0  # b alone in its class


# ---------------------------------------------------------------- confusion matrix

def test_confusion_matrix_by_hand():
    cm = confusion_matrix([0, 1, 1, 2, 0], [0, 1, 2, 2, 2], 3)
    assert cm.tolist() == [[1, 0, 0],
                           [0, 1, 0],
                           [1, 1, 1]]  # row = truth, column = prediction
    assert cm.dtype == np.int64


# ---------------------------------------------------------------- evaluate

def test_evaluate_gathers_everything_consistently_and_is_json_safe():
    rng = np.random.default_rng(6)
    true = np.array([79] * 12 + [82] * 11 + [75] * 4 + [225] * 3)
    pred = true.copy()
    pred[:4] = 82  # four I4 mistaken for I-4
    pred[12] = 75  # one I-4 mistaken for P4
    scores = one_hot_scores(pred) + rng.uniform(0, 0.1, (len(true), 230))
    train = np.array([82, 82, 79, 75, 81, 81, 81, 225])
    cs = level("crystal_system")
    head_cs = cs.index(true).copy()
    head_cs[-1] = 0  # crystal-system head wrong once
    out = evaluate(scores, true, train_sg=train, seed=3,
                   level_predictions={"crystal_system": head_cs,
                                      "centring": np.eye(len(level("centring")))[level("centring").index(true)]})
    json.dumps(out, allow_nan=False)

    n = len(true)
    assert out["n"] == n
    assert out["top1"] == pytest.approx(np.mean(pred == true)) == pytest.approx(25 / 30)
    assert out["top2"] >= out["top1"] and out["top5"] >= out["top2"]
    assert out["macro_f1"] == pytest.approx(brute_macro_f1(pred.tolist(), true.tolist()))
    assert out["level_accuracy"]["crystal_system"] == 1.0  # all mistakes stay tetragonal
    assert out["level_accuracy"]["space_group"] == out["top1"]
    assert out["head_accuracy"] == {"crystal_system": pytest.approx(29 / 30), "centring": 1.0}
    assert out["balanced"]["score"] == pytest.approx(balanced_score(pred, true, seed=3))
    assert out["balanced"]["n_items"] == 20 and out["balanced"]["n_classes"] == 2
    assert out["sub_property_confusion"] == sub_property_confusion(pred, true)
    assert out["sub_property_confusion"]["n_wrong"] == 5
    for name in metrics.EXTINCTION_LEVELS:
        assert out["extinction_accuracy"][name] == pytest.approx(level_accuracy(pred, true, name))
        assert out["extinction_ceiling"][name] == pytest.approx(extinction_ceiling(train, true, name))
    # ceiling by hand: I class -> 82 (2 vs 1): right on the 11 I-4; P class -> 81: wrong on P4;
    # cubic 225 seen -> right on its 3
    assert out["extinction_ceiling"]["extinction_class_any_setting"] == pytest.approx(14 / 30)
    matrix = np.array(out["confusion"]["crystal_system"]["matrix"])
    assert matrix.sum() == n and matrix[3, 3] == 27 and matrix[6, 6] == 3


def test_evaluate_balanced_is_none_on_tiny_test_sets():
    out = evaluate(one_hot_scores([1, 2]), [1, 3], train_sg=[1])
    assert out["balanced"]["score"] is None and out["balanced"]["n_items"] == 0
    assert out["sub_property_confusion"]["n_wrong"] == 1
    assert not any(isinstance(v, float) and math.isnan(v) for v in out.values())


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("call, error, message", [
    (lambda: top_k_accuracy(np.zeros((2, 229)), [1, 2], 1), ValueError, r"\(N, 230\)"),
    (lambda: top_k_accuracy(np.zeros(230), [1], 1), ValueError, r"\(N, 230\)"),
    (lambda: top_k_accuracy(np.zeros((2, 230)), [1], 1), ValueError, "2 rows but there are 1"),
    (lambda: top_k_accuracy(np.zeros((1, 230)), [1], 0), ValueError, "k must be 1-230"),
    (lambda: top_k_accuracy(np.zeros((1, 230)), [1], 231), ValueError, "k must be 1-230"),
    (lambda: top_k_accuracy(np.zeros((1, 230)), [1], 1.5), TypeError, "k must be an integer"),
    (lambda: top_k_accuracy(np.full((1, 230), np.nan), [1], 1), ValueError, "NaN"),
    (lambda: top_k_accuracy(np.zeros((0, 230)), [], 1), ValueError, "empty"),
    (lambda: macro_f1([0, 1], [1, 1]), ValueError, "1-230, got 0"),
    (lambda: macro_f1([1, 231], [1, 1]), ValueError, "1-230, got 231"),
    (lambda: macro_f1([1, 2, 3], [1, 2]), ValueError, "differ in length"),
    (lambda: macro_f1([], []), ValueError, "empty"),
    (lambda: macro_f1([1.5], [1]), TypeError, "integers"),
    (lambda: macro_f1([[1]], [[1]]), ValueError, "1-D"),
    (lambda: level_accuracy([True], [1], "crystal_system"), TypeError, "integers"),
    (lambda: balanced_accuracy_subset([1], seed=None), ValueError, "seed"),
    (lambda: balanced_accuracy_subset([1], seed=0, per_class=0), ValueError, "per_class"),
    (lambda: extinction_ceiling([], [1]), ValueError, "training space groups: empty"),
    (lambda: extinction_ceiling([1], [1], "nope"), UnknownLevelError, "Unknown level"),
    (lambda: confusion_matrix([0, 3], [0, 1], 3), ValueError, "0-2, got 3"),
    (lambda: confusion_matrix([0], [0], 0), ValueError, "n_classes"),
    (lambda: evaluate(one_hot_scores([1]), [1], train_sg=[1],
                      level_predictions={"point_group": np.zeros((1, 7))}), ValueError, "32 columns"),
    (lambda: evaluate(one_hot_scores([1]), [1], train_sg=[1],
                      level_predictions={"crystal_system": [0, 0]}), ValueError, "expected 1"),
    (lambda: evaluate(one_hot_scores([1]), [1], train_sg=[1],
                      level_predictions={"crystal_sytem": [0]}), UnknownLevelError, "crystal_system"),
])
def test_bad_input_gives_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
