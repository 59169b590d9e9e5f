"""Scores for space-group classifiers: accuracy, F1, per-level accuracy and the honest baselines.

Everything takes numpy arrays (torch tensors are converted with ``.detach().cpu()``) and returns
plain Python floats, ints, lists and dicts, so results go straight into ``results.json``.
Space groups are numbers 1-230; score matrices are (N, 230) with column j for space group j + 1.
A metric that is undefined for the data given (no wrong predictions, no class big enough for the
balanced subset) is ``None``, never NaN, so JSON stays valid and a mean over seeds cannot be
silently poisoned.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xrdcore.crystal.levels import level, level_names
from xrdcore.crystal.spacegroups import N_SPACE_GROUPS

#: the sub-properties reported by :func:`sub_property_confusion` (XRDecoupler's I4/I-4/P4/P-4 case)
SUB_PROPERTIES: tuple[str, ...] = ("crystal_system", "centring", "point_group")
#: both extinction levels: absences in the standard setting, and merged over every setting
EXTINCTION_LEVELS: tuple[str, ...] = ("extinction_class", "extinction_class_any_setting")
TOP_KS: tuple[int, ...] = (1, 2, 5)

__all__ = [
    "EXTINCTION_LEVELS", "SUB_PROPERTIES", "balanced_accuracy_subset", "balanced_score",
    "confusion_matrix", "evaluate", "extinction_ceiling", "extinction_ceiling_predictions",
    "level_accuracy", "macro_f1", "sub_property_confusion", "top_k_accuracy",
]


# --------------------------------------------------------------------------------------------
# input checks


def _as_numpy(x: Any, what: str) -> np.ndarray:
    """numpy view of an array-like or a torch tensor (any device, bf16 included)."""
    torch = sys.modules.get("torch")  # a tensor can only exist if torch is already imported
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()  # numpy has no bfloat16
        return x.numpy()
    try:
        return np.asarray(x)
    except ValueError as error:  # ragged lists and the like
        raise TypeError(f"{what}: cannot be read as an array ({error})") from None


def _integers(x: Any, what: str) -> np.ndarray:
    """A non-empty 1-D int64 array; integral floats are accepted, bools and fractions are not."""
    array = _as_numpy(x, what)
    if array.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{what}: empty input, nothing to score")
    if array.dtype.kind not in "iu":
        integral = (array.dtype.kind == "f" and bool(np.all(np.isfinite(array)))
                    and bool(np.all(array == np.round(array))))
        if not integral:
            raise TypeError(f"{what}: expected integers, got {array.dtype} values")
    return array.astype(np.int64)


def _space_groups(x: Any, what: str) -> np.ndarray:
    numbers = _integers(x, what)
    low, high = int(numbers.min()), int(numbers.max())
    if low < 1 or high > N_SPACE_GROUPS:
        bad = low if low < 1 else high
        raise ValueError(f"{what}: space-group numbers must be 1-{N_SPACE_GROUPS}, got {bad}")
    return numbers


def _class_indices(x: Any, n_classes: int, what: str) -> np.ndarray:
    indices = _integers(x, what)
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or high >= n_classes:
        bad = low if low < 0 else high
        raise ValueError(f"{what}: class indices must be 0-{n_classes - 1}, got {bad}")
    return indices


def _pair(pred: Any, true: Any) -> tuple[np.ndarray, np.ndarray]:
    pred = _space_groups(pred, "predicted space groups")
    true = _space_groups(true, "true space groups")
    if pred.shape != true.shape:
        raise ValueError(f"predictions and truth differ in length: {pred.shape[0]} vs {true.shape[0]}")
    return pred, true


def _scores(scores: Any, n: int | None = None) -> np.ndarray:
    array = _as_numpy(scores, "scores")
    if array.ndim != 2 or array.shape[1] != N_SPACE_GROUPS:
        raise ValueError(f"scores: expected shape (N, {N_SPACE_GROUPS}) with column j for space group "
                         f"j + 1, got {array.shape}")
    if array.shape[0] == 0:
        raise ValueError("scores: empty input, nothing to score")
    if array.dtype.kind not in "iuf":
        raise TypeError(f"scores: expected real numbers, got {array.dtype}")
    if np.isnan(array).any():
        raise ValueError("scores: contain NaN (a diverged model?); refusing to rank them")
    if n is not None and array.shape[0] != n:
        raise ValueError(f"scores have {array.shape[0]} rows but there are {n} true labels")
    return array


# --------------------------------------------------------------------------------------------
# metrics


def top_k_accuracy(scores: Any, true_sg: Any, k: int) -> float:
    """Share of items whose true space group is among the k highest-scoring ones.

    Scores may be logits or probabilities (only their order matters). Ties are broken towards
    the lower space-group number, as ``argmax`` does, so top-1 equals the accuracy of
    ``argmax + 1`` and a constant score row is not counted as correct for every class.
    """
    true = _space_groups(true_sg, "true space groups")
    array = _scores(scores, true.shape[0])
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer, got {k!r}")
    if not 1 <= k <= N_SPACE_GROUPS:
        raise ValueError(f"k must be 1-{N_SPACE_GROUPS}, got {k}")
    rows = np.arange(true.shape[0])
    true_score = array[rows, true - 1][:, None]
    columns = np.arange(N_SPACE_GROUPS)[None, :]
    # rank of the true class = classes strictly ahead + tied classes with a lower number
    ahead = (array > true_score) | ((array == true_score) & (columns < (true - 1)[:, None]))
    return float(np.mean(ahead.sum(axis=1) < k))


def macro_f1(pred_sg: Any, true_sg: Any) -> float:
    """Unweighted mean of per-class F1 over the classes present in the truth OR the predictions.

    Why macro: CCDC/CoRE MOF labels are dominated by a few space groups, so accuracy rewards
    learning the prior; macro-F1 weights every space group equally. Convention: a class that
    occurs only in the truth has recall 0, one that occurs only in the predictions has
    precision 0, and both count with F1 = 0 (scikit-learn's ``labels=union``,
    ``zero_division=0``). Classes absent from both are left out rather than counted as
    perfect or as zero, since the test set says nothing about them.
    """
    pred, true = _pair(pred_sg, true_sg)
    classes = np.union1d(pred, true)
    tp = np.array([np.sum((pred == c) & (true == c)) for c in classes], dtype=float)
    predicted = np.array([np.sum(pred == c) for c in classes], dtype=float)
    actual = np.array([np.sum(true == c) for c in classes], dtype=float)
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (predicted + actual); the denominator is > 0 for the union
    return float(np.mean(2 * tp / (predicted + actual)))


def level_accuracy(pred_sg: Any, true_sg: Any, level_name: str) -> float:
    """Accuracy after mapping predicted and true space groups up to ``level_name``.

    Shows how wrong the wrong answers are: a model at 60 % space-group accuracy that is at
    95 % on crystal system confuses neighbours, not distant classes.
    """
    pred, true = _pair(pred_sg, true_sg)
    lv = level(level_name)
    return float(np.mean(lv.index(pred) == lv.index(true)))


def balanced_accuracy_subset(true_sg: Any, seed: int, per_class: int = 10,
                             min_count: int = 10) -> np.ndarray:
    """Indices (sorted) of the balanced evaluation subset: ``per_class`` random test items from
    every space group that has at least ``min_count`` test items.

    This is the "MOF-Balanced" protocol of XRDMamba/XRDecoupler (10 per class), which removes
    the class prior from the score. Sampling is without replacement, with
    ``numpy.random.default_rng(seed)``, visiting classes in ascending space-group number, so the
    subset depends only on the labels and the seed. With ``min_count < per_class`` a class
    contributes all its items when it has fewer than ``per_class``. May be empty.
    """
    true = _space_groups(true_sg, "true space groups")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (the subset must be reproducible), "
                         f"got {seed!r}")
    for name, value in (("per_class", per_class), ("min_count", min_count)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for cls in np.unique(true):  # ascending
        members = np.flatnonzero(true == cls)
        if members.size >= min_count:
            chosen.append(rng.choice(members, size=min(per_class, members.size), replace=False))
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def balanced_score(pred_sg: Any, true_sg: Any, seed: int, per_class: int = 10,
                   min_count: int = 10) -> float | None:
    """Space-group accuracy on :func:`balanced_accuracy_subset`; ``None`` if the subset is empty
    (no space group has ``min_count`` test items), since a score over nothing is not 0."""
    pred, true = _pair(pred_sg, true_sg)
    subset = balanced_accuracy_subset(true, seed, per_class=per_class, min_count=min_count)
    if subset.size == 0:
        return None
    return float(np.mean(pred[subset] == true[subset]))


def sub_property_confusion(pred_sg: Any, true_sg: Any) -> dict[str, Any]:
    """Among WRONG space-group predictions, the share that agree with the truth on crystal
    system, centring and point group, plus ``n_wrong`` (their count).

    XRDecoupler's observation: errors concentrate on groups that share superclasses
    (I4 / I-4 / P4 / P-4). A high share here means the model gets the superclass right and
    the final choice wrong, which superclass heads are meant to fix. With no wrong
    predictions the shares are undefined and are ``None`` (not NaN, not 0 or 1).
    """
    pred, true = _pair(pred_sg, true_sg)
    wrong = pred != true
    result: dict[str, Any] = {"n_wrong": int(wrong.sum())}
    for name in SUB_PROPERTIES:
        lv = level(name)
        result[name] = (float(np.mean(lv.index(pred[wrong]) == lv.index(true[wrong])))
                        if wrong.any() else None)
    return result


def extinction_ceiling_predictions(train_sg: Any, test_sg: Any,
                                   level_name: str = "extinction_class_any_setting") -> np.ndarray:
    """For each test item, the most frequent training space group of its true class at
    ``level_name`` (ties: smallest number); 0 where that class never occurs in training."""
    train = _space_groups(train_sg, "training space groups")
    test = _space_groups(test_sg, "test space groups")
    lv = level(level_name)
    counts = np.bincount(train, minlength=N_SPACE_GROUPS + 1)[1:]  # counts[n - 1] for group n
    best = np.zeros(len(lv), dtype=np.int64)  # per class; 0 = unseen
    for cls in range(len(lv)):
        members = np.flatnonzero(lv.table == cls)  # ascending, so argmax breaks ties low
        member_counts = counts[members]
        if member_counts.max() > 0:
            best[cls] = members[int(np.argmax(member_counts))] + 1
    return best[lv.index(test)]


def extinction_ceiling(train_sg: Any, test_sg: Any,
                       level_name: str = "extinction_class_any_setting") -> float:
    """Accuracy of predicting, for each test item, the most frequent TRAINING space group
    within its true extinction class (ties: smallest number; a class never seen in training
    counts as wrong).

    Why it bounds peak-position methods: space groups in one extinction class have the same
    systematic absences, so for any cell their allowed reflections sit at the same angles.
    A method whose input is only which peaks are present (indexing + absence analysis) cannot
    tell them apart; the best it can do is pick the most likely member, and the training
    frequencies are its estimate of that. Use ``extinction_class_any_setting`` (the default)
    for unindexed powder data, where the axes and hence the setting are unknown;
    ``extinction_class`` assumes the standard setting is known. Caveats: intensities carry
    the information that separates members (so intensity-using models may exceed this),
    the lattice metric can correlate weakly with the group, and the training prior is only
    an estimate of the test one.
    """
    test = _space_groups(test_sg, "test space groups")
    predictions = extinction_ceiling_predictions(train_sg, test, level_name)
    return float(np.mean(predictions == test))


def confusion_matrix(pred_idx: Any, true_idx: Any, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts: row = true class, column = predicted class.

    Takes 0-based class indices (for space groups pass number - 1, or use ``level(...).index``)
    so one function serves every level.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    pred = _class_indices(pred_idx, n_classes, "predicted class indices")
    true = _class_indices(true_idx, n_classes, "true class indices")
    if pred.shape != true.shape:
        raise ValueError(f"predictions and truth differ in length: {pred.shape[0]} vs {true.shape[0]}")
    flat = np.bincount(true * n_classes + pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def _head_predictions(name: str, value: Any, n: int) -> np.ndarray:
    """A head's own predictions as class indices of its level: 1-D indices or (N, C) scores."""
    if name not in level_names():
        level(name)  # raises UnknownLevelError with did-you-mean
    n_classes = len(level(name))
    array = _as_numpy(value, f"level_predictions[{name!r}]")
    if array.ndim == 2:
        if array.shape[1] != n_classes:
            raise ValueError(f"level_predictions[{name!r}]: scores must have {n_classes} columns, "
                             f"got shape {array.shape}")
        if array.dtype.kind not in "iuf" or np.isnan(array).any():
            raise ValueError(f"level_predictions[{name!r}]: scores must be real numbers without NaN")
        array = np.argmax(array, axis=1)
    indices = _class_indices(array, n_classes, f"level_predictions[{name!r}]")
    if indices.shape[0] != n:
        raise ValueError(f"level_predictions[{name!r}] has {indices.shape[0]} items, expected {n}")
    return indices


def evaluate(scores: Any, true_sg: Any, *, train_sg: Any,
             level_predictions: Mapping[str, Any] | None = None, seed: int = 0,
             confusion_levels: Sequence[str] = ("crystal_system",)) -> dict[str, Any]:
    """Every metric of one run, JSON-safe.

    ``scores``: (N, 230) space-group scores; ``true_sg``: (N,) numbers; ``train_sg``: the
    training labels (for the extinction ceiling). ``level_predictions`` maps a level name to
    that head's own prediction, as class indices of the level (1-D) or its scores (N, C);
    they are scored as ``head_accuracy`` next to the mapped-up ``level_accuracy``, because a
    superclass head can be right where the space-group head, mapped up, is not.
    ``seed`` picks the balanced subset. Confusion matrices (row = truth) are given for
    ``confusion_levels`` as nested lists.
    """
    true = _space_groups(true_sg, "true space groups")
    array = _scores(scores, true.shape[0])
    pred = np.argmax(array, axis=1).astype(np.int64) + 1
    train = _space_groups(train_sg, "training space groups")

    subset = balanced_accuracy_subset(true, seed)
    result: dict[str, Any] = {
        "n": int(true.shape[0]),
        **{f"top{k}": top_k_accuracy(array, true, k) for k in TOP_KS},
        "macro_f1": macro_f1(pred, true),
        "level_accuracy": {name: level_accuracy(pred, true, name) for name in level_names()},
        "head_accuracy": {},
        "balanced": {
            "score": float(np.mean(pred[subset] == true[subset])) if subset.size else None,
            "n_items": int(subset.size),
            "n_classes": int(np.unique(true[subset]).size),
            "seed": int(seed), "per_class": 10, "min_count": 10,
        },
        "sub_property_confusion": sub_property_confusion(pred, true),
        "extinction_accuracy": {name: level_accuracy(pred, true, name) for name in EXTINCTION_LEVELS},
        "extinction_ceiling": {name: extinction_ceiling(train, true, name) for name in EXTINCTION_LEVELS},
        "confusion": {},
    }
    for name, value in (level_predictions or {}).items():
        own = _head_predictions(name, value, true.shape[0])
        result["head_accuracy"][name] = float(np.mean(own == level(name).index(true)))
    for name in confusion_levels:
        lv = level(name)
        result["confusion"][name] = {
            "classes": list(lv.classes),
            "matrix": confusion_matrix(lv.index(pred), lv.index(true), len(lv)).tolist(),
        }
    return result
