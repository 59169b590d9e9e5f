"""Built-in label hierarchies: ``flat`` and ``multilevel`` (any choice of the core's levels)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from xrdcore.crystal.hierarchy import LabelHierarchy
from xrdcore.crystal.levels import level_names


def flat() -> LabelHierarchy:
    """Space group only (230 classes): single-task training."""
    return LabelHierarchy(("space_group",), name="flat")


def multilevel(levels: Sequence[str] = level_names(), weights: Mapping[str, float] | None = None,
               beta: float = 1.0) -> LabelHierarchy:
    """Space group plus any superclass levels, each with its own head; β weights the superclasses."""
    levels = (levels,) if isinstance(levels, str) else tuple(levels)
    superclass_weights = {name: beta for name in levels if name != "space_group"}
    return LabelHierarchy(levels, weights={**superclass_weights, **(weights or {})}, name="multilevel")
