"""The ``superclass`` label hierarchy: the space group plus superclass levels, β on the superclasses.

XRDecoupler's remedy for sub-property confusion (space groups sharing superclasses, e.g.
I4 / I-4 / P4 / P-4, are confused) is one head per superclass level trained beside the
space-group head, with the loss ``L_space_group + β Σ L_superclass``. Every superclass target is
derived from the space-group label by the core's tables, so no extra annotation is needed.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence

from xrdcore.crystal.hierarchy import LabelHierarchy

__all__ = ["CODE_LEVELS", "PAPER_LEVELS", "PRESETS", "superclass"]

#: the superclass heads of the paper: crystal system (7), Bravais lattice (14), point group (32),
#: lattice system (7), arithmetic crystal class (73)
PAPER_LEVELS: tuple[str, ...] = ("crystal_system", "bravais", "point_group", "lattice_system",
                                 "arithmetic_class")
#: the published code's tasks besides the space group: crystal system, lattice centring, point group
CODE_LEVELS: tuple[str, ...] = ("crystal_system", "centring", "point_group")
PRESETS: dict[str, tuple[str, ...]] = {"paper": PAPER_LEVELS, "code": CODE_LEVELS}


def superclass(levels: Sequence[str] | None = None, preset: str | None = None, beta: float = 1.0,
               weights: Mapping[str, float] | None = None) -> LabelHierarchy:
    """Space group first, then superclass levels; β weights every superclass level.

    ``levels``: the superclass levels, any of the core's (``xrdcore levels``); ``None`` means the
    paper's five, :data:`PAPER_LEVELS`. ``preset``: ``"paper"`` (the same five) or ``"code"`` (the
    published code's crystal system, centring and point group), instead of ``levels``.
    ``space_group`` is always the first level, with weight 1; listing it in ``levels`` is allowed
    and changes nothing. ``beta`` (>= 0, finite) is the weight of every superclass level;
    ``weights`` overrides single levels (the space group's included). Unknown level names raise the
    core's ``UnknownLevelError``, which suggests close names.
    """
    if preset is not None:
        if levels is not None:
            raise ValueError(f"give levels or preset, not both (got levels={levels!r}, preset={preset!r})")
        if preset not in PRESETS:
            close = difflib.get_close_matches(str(preset), PRESETS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown preset {preset!r}.{hint} Presets: "
                             + "; ".join(f"{k} ({', '.join(v)})" for k, v in PRESETS.items()))
        levels = PRESETS[preset]
    elif levels is None:
        levels = PAPER_LEVELS
    elif isinstance(levels, str):
        levels = (levels,)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    names = ("space_group", *(name for name in levels if name != "space_group"))
    level_weights = {name: float(beta) for name in names[1:]}
    return LabelHierarchy(names, weights={**level_weights, **(weights or {})}, name="superclass")
