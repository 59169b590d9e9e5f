"""MGDA-UB, the multiple-gradient descent algorithm on the shared representation (Sener & Koltun,
"Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018), as a loss scheduler.

Each step, every level's loss is differentiated with respect to the shared embedding ``z``
(the encoder output, ``(B, E)``), not the encoder's weights: that is the "upper bound" (UB) of
the paper, T cheap backward passes through the heads only. The min-norm point of the convex hull
of those T gradients, ``α = argmin_{α ∈ simplex} ||Σ α_i g_i||²``, gives the weights: a step
against ``Σ α_i g_i`` decreases every level's loss to first order (when the minimum is 0, the
point is Pareto-stationary and no such step exists). The weighted loss ``Σ α_i L_i`` is then back-propagated once through the
whole model.

The solver works on the T × T Gram matrix ``G_ij = g_i · g_j`` in float64 on the CPU: for two
vectors it is the closed form, for more Wolfe's min-norm-point algorithm (an active-set form of
Frank-Wolfe), bounded by ``max_iter`` and stopped when the Frank-Wolfe duality gap falls below
``tol``. Written from the mathematics, not from any published implementation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from xrdcore.crystal.hierarchy import LabelHierarchy
from xrdcore.interfaces import LossScheduler
from xrdcore.validate import positive_int

__all__ = ["NORMALISATIONS", "MGDAScheduler", "MGDAStep", "MinNormSolution", "min_norm_point",
           "min_norm_weights"]

Normalisation = Literal["none", "l2", "loss", "loss+"]
NORMALISATIONS: tuple[str, ...] = ("none", "l2", "loss", "loss+")
#: vectors whose difference has a squared norm below this fraction of the largest squared norm are
#: treated as identical and share one weight (Gram entries carry round-off of that order)
_SAME = 1e-12


@dataclass(frozen=True)
class MinNormSolution:
    """The min-norm point of a convex hull, ``Σ weights_i g_i``, and how the solver got there.

    ``gap`` is the Frank-Wolfe duality gap ``2 (wᵀGw - min_i (Gw)_i)`` at ``weights``, an upper
    bound on ``norm_sq`` minus the true minimum; ``converged`` is ``gap <= tol × max_i G_ii``.
    """

    weights: np.ndarray
    norm_sq: float
    iterations: int
    converged: bool
    gap: float


def _gap(gram: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray, float]:
    gw = gram @ w
    f = float(w @ gw)
    return f, gw, 2.0 * (f - float(gw.min()))


def _solution(gram: np.ndarray, w: np.ndarray, iterations: int, tol_abs: float) -> MinNormSolution:
    w = np.clip(w, 0.0, None)
    w = w / w.sum()
    f, _, gap = _gap(gram, w)
    return MinNormSolution(w, max(f, 0.0), iterations, gap <= tol_abs, max(gap, 0.0))


def _tolerance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < 1):
        raise ValueError(f"tol must be a float in (0, 1), got {value!r}")
    return float(value)


def _groups(gram: np.ndarray, scale: float) -> list[list[int]]:
    """Indices of identical vectors (``||g_i - g_j||² <= _SAME × scale``), in first-seen order."""
    groups: list[list[int]] = []
    for i in range(gram.shape[0]):
        for group in groups:
            j = group[0]
            if gram[i, i] + gram[j, j] - 2 * gram[i, j] <= _SAME * scale:
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def _affine_minimiser(gram: np.ndarray) -> np.ndarray:
    """Coefficients ``v`` (sum 1) of the point of least norm in the affine hull of the vectors:
    the KKT system ``G v = μ 1, 1ᵀ v = 1``, least squares if the vectors are affinely dependent."""
    k = gram.shape[0]
    kkt = np.zeros((k + 1, k + 1))
    kkt[:k, :k], kkt[:k, k], kkt[k, :k] = gram, -1.0, 1.0
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    v = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:k]
    return v / v.sum()


def _wolfe(gram: np.ndarray, max_iter: int, tol_abs: float) -> tuple[np.ndarray, int]:
    """Wolfe's min-norm-point algorithm (Math. Programming 11, 1976) on the Gram matrix: start at
    the shortest vector; each major cycle adds the Frank-Wolfe vertex ``argmin_i (Gw)_i`` to the
    corral unless the duality gap is at most ``tol_abs``; each minor cycle (one iteration) moves to
    the affine minimiser of the corral, or as far towards it as the simplex allows, dropping the
    vertices whose weight reaches 0. Returns the weights and the number of minor cycles."""
    k = gram.shape[0]
    w = np.zeros(k)
    first = int(np.argmin(np.diag(gram)))
    w[first], corral, iterations = 1.0, [first], 0
    while iterations < max_iter:
        gw = gram @ w
        f, j = float(w @ gw), int(np.argmin(gw))
        if 2.0 * (f - gw[j]) <= tol_abs or j in corral:  # optimal, or no vertex left to add
            break
        corral.append(j)
        while iterations < max_iter:
            iterations += 1
            v = _affine_minimiser(gram[np.ix_(corral, corral)])
            current = w[corral]
            blocked = (v <= 0) & (current > v)
            if not blocked.any():  # v >= 0: the affine minimiser lies in the simplex
                w[:] = 0.0
                w[corral] = np.clip(v, 0.0, None)
                break
            theta = float(np.min(current[blocked] / (current[blocked] - v[blocked])))
            current = (1 - theta) * current + theta * v
            keep = current > 1e-15
            keep[np.argmin(np.where(blocked, current, np.inf))] = False  # the vertex that hit zero
            if not keep[-1] and theta == 0.0:  # the new vertex cannot enter: numerically optimal
                w[j] = 0.0
                return w / w.sum(), iterations
            w[:] = 0.0
            w[[c for c, kept in zip(corral, keep) if kept]] = current[keep]
            w /= w.sum()
            corral = [c for c, kept in zip(corral, keep) if kept]
    return w, iterations


def min_norm_weights(gram: Any, *, max_iter: int = 100, tol: float = 1e-8) -> MinNormSolution:
    """The weights ``w`` on the simplex minimising ``||Σ w_i g_i||² = wᵀ G w``, from the Gram
    matrix ``G`` (T × T, symmetric positive semi-definite; numpy, torch or nested lists).

    * one vector: ``w = (1,)``;
    * two vectors: the closed form ``w_1 = clip((G_22 - G_12) / (G_11 + G_22 - 2 G_12), 0, 1)``;
    * more: Wolfe's min-norm-point algorithm, an active-set form of Frank-Wolfe that is exact
      after finitely many steps (Frank-Wolfe itself converges slowly when the minimum lies inside
      a face), at most ``max_iter`` minor cycles, stopping once the Frank-Wolfe duality gap
      ``2 (wᵀGw - min_i (Gw)_i)`` is at most ``tol × max_i G_ii`` (relative to the largest squared
      norm, so independent of the losses' scale). Past ``max_iter`` it returns its current point,
      a valid but not optimal convex combination, with ``converged=False``.

    Identical vectors (within round-off) share their weight equally, so where the weights are not
    unique the answer is the symmetric one, and degenerate inputs give the mathematical answer,
    never NaN: all vectors zero or all identical → uniform weights; one zero vector among others
    → all weight on it (norm 0); two opposite vectors → ``(½, ½)`` (norm 0).
    """
    max_iter = positive_int("max_iter", max_iter)
    tol = _tolerance(tol)
    if isinstance(gram, torch.Tensor):
        gram = gram.detach().cpu().numpy()
    g = np.asarray(gram, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] < 1:
        raise ValueError(f"the Gram matrix must be square T × T with T >= 1, got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("the Gram matrix has non-finite entries (NaN or inf gradients)")
    g = (g + g.T) / 2
    t = g.shape[0]
    scale = float(np.max(np.diag(g)))
    if scale <= 0.0:  # a PSD matrix with a zero diagonal is zero: every vector vanishes
        return MinNormSolution(np.full(t, 1.0 / t), 0.0, 0, True, 0.0)
    tol_abs = tol * scale
    groups = _groups(g, scale)
    heads = [group[0] for group in groups]
    reduced = g[np.ix_(heads, heads)] / scale  # unit scale: the KKT system mixes G with ones
    iterations = 0
    if len(groups) == 1:
        w_reduced = np.ones(1)
    elif len(groups) == 2:
        a, b, c = reduced[0, 0], reduced[1, 1], reduced[0, 1]
        w1 = float(np.clip((b - c) / (a + b - 2 * c), 0.0, 1.0))  # a + b - 2c = ||g_1 - g_2||² > 0
        w_reduced = np.array([w1, 1.0 - w1])
    else:
        w_reduced, iterations = _wolfe(reduced, max_iter, tol)
    w = np.zeros(t)
    for group, share in zip(groups, w_reduced):
        w[group] = share / len(group)
    return _solution(g, w, iterations, tol_abs)


def min_norm_point(vectors: Any, *, max_iter: int = 100, tol: float = 1e-8) -> MinNormSolution:
    """:func:`min_norm_weights` for T vectors given as rows of a ``(T, D)`` array or tensor."""
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().cpu().numpy()
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"vectors must be a (T, D) array, got shape {v.shape}")
    return min_norm_weights(v @ v.T, max_iter=max_iter, tol=tol)


@dataclass(frozen=True)
class MGDAStep:
    """What one :meth:`MGDAScheduler.combine` call did, for logging beside the returned weights.

    ``alpha``: the solver's convex weights per level (sum 1); ``weights``: the multipliers of the
    returned loss, ``alpha × hierarchy weight``; ``grad_norms``: ``||∂L_i/∂z||``; ``source``:
    ``"solver"``, ``"single"`` (one level, nothing to solve), ``"no_grad"`` (called under
    ``torch.no_grad()``: the previous step's ``alpha``, or uniform) or ``"non_finite"`` (a gradient
    was NaN/inf: uniform ``alpha``, the returned loss is non-finite anyway).
    """

    alpha: dict[str, float]
    weights: dict[str, float]
    grad_norms: dict[str, float] = field(default_factory=dict)
    norm_sq: float = math.nan
    iterations: int = 0
    converged: bool = True
    source: str = "solver"


class MGDAScheduler(LossScheduler):
    """MGDA-UB: per-level gradients w.r.t. the shared embedding, min-norm convex combination.

    ``normalisation`` scales each level's gradient ``g_i = ∂L_i/∂z`` to ``g_i / n_i`` before the
    solver sees it (Sener & Koltun's options):

    * ``"none"``: ``n_i = 1``, the plain min-norm point (levels with small gradients dominate);
    * ``"l2"``: ``n_i = ||g_i||``, unit vectors: only the directions count;
    * ``"loss"``: ``n_i = L_i``, the gradient of ``log L_i``: relative rather than absolute progress;
    * ``"loss+"`` (default): ``n_i = L_i ||g_i||``, unit directions shrunk by the loss, so a level
      far from solved (large ``L_i``) gets more weight; the choice of Sener & Koltun's experiments,
      and it makes the weights independent of each level's gradient scale (230 space-group classes
      against 7 crystal systems).

    A level whose normaliser is 0 (zero gradient, or zero loss for ``loss``/``loss+``) enters as
    the zero vector, so the min-norm point is 0 with all weight on it: the step is then Pareto-
    stationary and the other levels' heads do not move; ``loss``/``loss+`` reject negative losses.

    The solver's ``α`` (at most ``max_iter`` minor cycles, gap tolerance ``tol``, see
    :func:`min_norm_weights`) is computed without gradient. The loss returned is
    ``Σ α_i h_i L_i`` with ``h_i`` the hierarchy's per-level weight (β for XRDecoupler's superclass
    levels, 1 for the space group) when ``use_hierarchy_weights`` (default), else ``Σ α_i L_i``:
    β never enters the solver, it scales each level's share of the step, as in the paper's
    ``L_sg + β Σ L_sc`` (with β ≠ 1 the step is no longer exactly the min-norm direction; pass
    ``use_hierarchy_weights=False`` or β = 1 for pure MGDA). The weights returned for logging are
    the multipliers ``α_i h_i``, so ``loss == Σ weights[i] · losses[i]`` always; ``last_step``
    holds ``α``, gradient norms and solver diagnostics of the latest call.

    Needs ``shared`` (``needs_shared = True``); under ``torch.no_grad()`` (evaluation) no gradient
    exists, and the previous step's ``α`` (uniform before the first) is used instead.
    """

    needs_shared = True

    def __init__(self, normalisation: Normalisation = "loss+", max_iter: int = 100, tol: float = 1e-8,
                 use_hierarchy_weights: bool = True):
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {', '.join(map(repr, NORMALISATIONS))}, "
                             f"got {normalisation!r}")
        if not isinstance(use_hierarchy_weights, bool):
            raise TypeError(f"use_hierarchy_weights must be True or False, got {use_hierarchy_weights!r}")
        self.normalisation = normalisation
        self.max_iter = positive_int("max_iter", max_iter)
        self.tol = _tolerance(tol)
        self.use_hierarchy_weights = use_hierarchy_weights
        self.last_step: MGDAStep | None = None

    def __repr__(self) -> str:
        return (f"MGDAScheduler(normalisation={self.normalisation!r}, max_iter={self.max_iter}, "
                f"tol={self.tol}, use_hierarchy_weights={self.use_hierarchy_weights})")

    def same_as_sum(self, hierarchy: LabelHierarchy) -> bool:
        """With one level there is nothing to balance: ``α = 1`` and the loss is that level's (times
        its hierarchy weight, which must then be 1 to equal the plain sum)."""
        if len(hierarchy.level_names) != 1:
            return False
        return not self.use_hierarchy_weights or hierarchy.weights[hierarchy.level_names[0]] == 1.0

    def combine(self, losses: Mapping[str, torch.Tensor], shared: torch.Tensor | None = None,
                hierarchy: LabelHierarchy | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        if not losses:
            raise ValueError("no losses to combine")
        if shared is None:
            raise ValueError("mgda needs shared, the embedding the heads read (part of the autograd graph): "
                             "call combine(losses, shared=embedding, hierarchy=...)")
        if not isinstance(shared, torch.Tensor):
            raise TypeError(f"shared must be the embedding tensor, got {type(shared).__name__}")
        names = list(losses)
        for name in names:
            loss = losses[name]
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise ValueError(f"loss of level {name!r} must be a scalar tensor, got "
                                 f"{getattr(loss, 'shape', type(loss).__name__)}")
        h = {n: 1.0 for n in names}
        if hierarchy is not None and self.use_hierarchy_weights:
            h = {n: float(hierarchy.weights.get(n, 1.0)) for n in names}

        if len(names) == 1:
            step = MGDAStep({names[0]: 1.0}, {}, source="single")
        elif not torch.is_grad_enabled():
            previous = self.last_step
            if previous is not None and list(previous.alpha) == names:
                alpha = dict(previous.alpha)
            else:
                alpha = {n: 1.0 / len(names) for n in names}
            step = MGDAStep(alpha, {}, source="no_grad")
        else:
            step = self._solve(names, losses, shared)
        weights = {n: step.alpha[n] * h[n] for n in names}
        self.last_step = MGDAStep(step.alpha, weights, step.grad_norms, step.norm_sq, step.iterations,
                                  step.converged, step.source)
        total = sum(weights[n] * losses[n].reshape(()) for n in names)
        return total, weights

    def _gradients(self, names: Sequence[str], losses: Mapping[str, torch.Tensor],
                   shared: torch.Tensor) -> torch.Tensor:
        """``(T, B·E)`` per-level gradients of the losses w.r.t. ``shared``, the heads' graphs kept."""
        if not shared.requires_grad:
            raise ValueError("mgda needs gradients w.r.t. shared, but shared does not require grad "
                             "(a frozen or detached encoder): use a scheduler that does not need them, "
                             "e.g. 'sum' or 'weighted'")
        rows = []
        for name in names:
            grad = None
            if losses[name].requires_grad:
                (grad,) = torch.autograd.grad(losses[name], shared, retain_graph=True, allow_unused=True)
            rows.append(grad)
        if all(r is None for r in rows):
            raise ValueError("mgda: no loss depends on shared; pass the very tensor the heads read, not a "
                             "copy made after them (e.g. shared.float() of a bf16 embedding under autocast)")
        # a level whose loss does not reach shared (its head only) has the zero gradient
        return torch.stack([(torch.zeros_like(shared) if r is None else r).reshape(-1) for r in rows])

    def _solve(self, names: Sequence[str], losses: Mapping[str, torch.Tensor],
               shared: torch.Tensor) -> MGDAStep:
        grads = self._gradients(names, losses, shared).detach().double()
        values = torch.stack([losses[n].detach().reshape(()).double() for n in names])
        # one transfer to the CPU for the Gram matrix and the loss values
        packed = torch.cat([(grads @ grads.T).reshape(-1), values]).cpu().numpy()
        t = len(names)
        gram, loss_values = packed[: t * t].reshape(t, t), packed[t * t:]
        if not (np.all(np.isfinite(gram)) and np.all(np.isfinite(loss_values))):
            return MGDAStep({n: 1.0 / t for n in names}, {}, source="non_finite")
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        if self.normalisation in ("loss", "loss+"):
            negative = [f"{n}={v:.4g}" for n, v in zip(names, loss_values) if v < 0]
            if negative:
                raise ValueError(f"normalisation {self.normalisation!r} divides by the loss and needs losses "
                                 f">= 0, got {', '.join(negative)}; use 'l2' or 'none'")
        scale = {"none": np.ones(t), "l2": norms, "loss": loss_values,
                 "loss+": loss_values * norms}[self.normalisation]
        inverse = np.divide(1.0, scale, out=np.zeros(t), where=scale > 0)  # n_i = 0: the zero vector
        solution = min_norm_weights(gram * np.outer(inverse, inverse), max_iter=self.max_iter, tol=self.tol)
        return MGDAStep({n: float(a) for n, a in zip(names, solution.weights)}, {},
                        {n: float(v) for n, v in zip(names, norms)}, solution.norm_sq,
                        solution.iterations, solution.converged, "solver")
