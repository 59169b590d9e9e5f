"""LabelHierarchy: the levels a model is trained to predict, from one space-group label."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from xrdcore.crystal.levels import Level, level


class LabelHierarchy:
    """Named levels with class counts and a vectorised map from space-group numbers to indices.

    Every structure carries one label, its space-group number; a hierarchy turns it into one
    target per level, so any superclass head (crystal system, point group, ...) needs no
    extra annotation. ``weights`` are per-level loss weights that a scheduler may use
    (e.g. β for every superclass level); levels without a weight default to 1.
    """

    def __init__(self, levels: Sequence[str] = ("space_group",), *,
                 weights: Mapping[str, float] | None = None, name: str | None = None):
        if isinstance(levels, str):
            levels = (levels,)
        names = tuple(levels)
        if not all(isinstance(n, str) for n in names):
            raise TypeError(f"levels must be level names (strings), got {list(names)!r}")
        if not names:
            raise ValueError("a label hierarchy needs at least one level")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"levels listed twice: {', '.join(duplicates)}")
        self.levels: tuple[Level, ...] = tuple(level(n) for n in names)
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ValueError(f"weights given for levels not in the hierarchy: {', '.join(unknown)}")
        self.weights: dict[str, float] = {n: float(weights.get(n, 1.0)) for n in names}
        bad = [f"{n}={w}" for n, w in self.weights.items() if not (w >= 0 and math.isfinite(w))]
        if bad:
            raise ValueError(f"loss weights must be finite and >= 0, got {', '.join(bad)}")
        self.name = name or "+".join(names)

    @property
    def level_names(self) -> tuple[str, ...]:
        return tuple(lv.name for lv in self.levels)

    @property
    def num_classes(self) -> dict[str, int]:
        """Number of classes per level, in level order."""
        return {lv.name: len(lv) for lv in self.levels}

    def __getitem__(self, name: str) -> Level:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise KeyError(f"level {name!r} is not in hierarchy {self.name!r} ({', '.join(self.level_names)})")

    def __contains__(self, name: object) -> bool:
        return name in self.level_names

    def targets(self, space_groups) -> dict[str, Any]:
        """Class index per level for an array (numpy or torch, any shape) of space-group numbers."""
        return {lv.name: lv.index(space_groups) for lv in self.levels}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description, stored with checkpoints and results."""
        return {"name": self.name, "levels": list(self.level_names), "weights": self.weights,
                "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelHierarchy:
        return cls(data["levels"], weights=data.get("weights"), name=data.get("name"))

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.num_classes.items())
        return f"LabelHierarchy({self.name!r}: {counts})"

