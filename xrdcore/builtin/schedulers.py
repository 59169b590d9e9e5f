"""Built-in loss schedulers: ``sum`` and ``weighted`` (fixed per-level weights)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from xrdcore.crystal.hierarchy import LabelHierarchy
from xrdcore.interfaces import LossScheduler


class SumScheduler(LossScheduler):
    """Plain sum of the per-level losses."""

    def combine(self, losses: Mapping[str, torch.Tensor], shared: torch.Tensor | None = None,
                hierarchy: LabelHierarchy | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        if not losses:
            raise ValueError("no losses to combine")
        return torch.stack(list(losses.values())).sum(), {name: 1.0 for name in losses}


class WeightedScheduler(LossScheduler):
    """Fixed per-level weights: ``weights`` if given, else the hierarchy's own, else 1.

    ``L = L_space_group + β Σ L_superclass`` is ``create_hierarchy("multilevel", beta=β)``
    trained with this scheduler.
    """

    def __init__(self, weights: Mapping[str, float] | None = None):
        self.weights = dict(weights or {})
        negative = [k for k, w in self.weights.items() if w < 0]
        if negative:
            raise ValueError(f"loss weights must be >= 0, got negative for {', '.join(negative)}")

    def combine(self, losses: Mapping[str, torch.Tensor], shared: torch.Tensor | None = None,
                hierarchy: LabelHierarchy | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        if not losses:
            raise ValueError("no losses to combine")
        unknown = sorted(set(self.weights) - set(losses))
        if unknown:
            raise ValueError(f"weights name levels that have no loss: {', '.join(unknown)}")
        defaults = hierarchy.weights if hierarchy is not None else {}
        used = {name: float(self.weights.get(name, defaults.get(name, 1.0))) for name in losses}
        total = sum(used[name] * loss for name, loss in losses.items())
        return total, used

    def same_as_sum(self, hierarchy: LabelHierarchy) -> bool:
        return all(self.weights.get(name, hierarchy.weights.get(name, 1.0)) == 1.0 for name in hierarchy.level_names)
