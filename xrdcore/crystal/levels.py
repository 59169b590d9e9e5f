"""Hierarchy levels: each maps the 230 space-group types onto the classes of one superclass."""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from functools import cache

import numpy as np

from xrdcore.crystal.spacegroups import N_SPACE_GROUPS, space_groups

#: level name → what its classes are; the order is the order levels are listed in
LEVEL_DESCRIPTIONS: dict[str, str] = {
    "space_group": "space-group type (230), short Hermann-Mauguin symbol",
    "crystal_system": "crystal system (7)",
    "lattice_system": "lattice system (7): trigonal split into rhombohedral and hexagonal",
    "centring": "centring letter of the conventional cell in the standard setting",
    "bravais": "Bravais lattice (14), Pearson-symbol letters (mC/oC for side-centred)",
    "point_group": "geometric crystal class / point group (32)",
    "laue_class": "Laue class (11): the point group with inversion added",
    "arithmetic_class": "arithmetic crystal class (73): point group + lattice, oriented",
    "extinction_class": "lattice system + identical systematic absences of the general position",
    "extinction_class_any_setting": "extinction classes merged when absences agree in any setting "
                                    "(axes unknown, as in an unindexed powder pattern)",
}


@dataclass(frozen=True, eq=False)
class Level:
    """One level: its class names and the class index of every space-group type."""

    name: str
    classes: tuple[str, ...]
    table: np.ndarray  # (230,) int64, class index of type n at position n - 1
    description: str

    def __len__(self) -> int:
        return len(self.classes)

    def index(self, space_groups):
        """Class indices for space-group numbers (1-230), as numpy or a torch tensor on its device."""
        return _lookup(self.table, space_groups, self.name)

    def members(self, cls: int | str) -> list[int]:
        """Space-group numbers that fall into class ``cls`` (index or name)."""
        if isinstance(cls, str):
            if cls not in self.classes:
                close = difflib.get_close_matches(cls, self.classes, n=3)
                hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
                raise ValueError(f"{self.name} has no class {cls!r}.{hint}")
            position = self.classes.index(cls)
        else:
            position = int(cls)
            if not 0 <= position < len(self.classes):
                raise ValueError(f"{self.name} class index must be 0-{len(self.classes) - 1}, got {position}")
        return [int(n) + 1 for n in np.flatnonzero(self.table == position)]


@cache
def level(name: str) -> Level:
    """The level called ``name``; classes are ordered by their lowest space-group number."""
    if not isinstance(name, str):
        raise TypeError(f"a level name must be a string, got {name!r}")
    if name not in LEVEL_DESCRIPTIONS:
        raise UnknownLevelError(name)
    values = [getattr(sg, "symbol" if name == "space_group" else name) for sg in space_groups()]
    classes = tuple(dict.fromkeys(values))
    table = np.array([classes.index(v) for v in values], dtype=np.int64)
    table.setflags(write=False)
    return Level(name, classes, table, LEVEL_DESCRIPTIONS[name])


def level_names() -> tuple[str, ...]:
    return tuple(LEVEL_DESCRIPTIONS)


class UnknownLevelError(ValueError):
    """A level name that does not exist; the message lists the close ones and all known."""

    def __init__(self, name: str):
        close = difflib.get_close_matches(name, LEVEL_DESCRIPTIONS, n=3)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        super().__init__(f"Unknown level {name!r}.{hint} Known levels: {', '.join(LEVEL_DESCRIPTIONS)}")


def _lookup(table: np.ndarray, space_groups, what: str):
    """table[space_groups - 1] for numpy arrays, sequences and torch tensors, with range checks."""
    torch = sys.modules.get("torch")  # a tensor can only exist if torch is already imported
    if torch is not None and isinstance(space_groups, torch.Tensor):
        if space_groups.is_floating_point() or space_groups.is_complex() or space_groups.dtype == torch.bool:
            raise TypeError(f"{what}: space-group numbers must be integers, got {space_groups.dtype}")
        _check_range(space_groups.min().item() if space_groups.numel() else 1,
                     space_groups.max().item() if space_groups.numel() else 1, what)
        return torch.tensor(table, device=space_groups.device)[space_groups.long() - 1]
    numbers = np.asarray(space_groups)
    if numbers.dtype.kind not in "iu":  # bool ("b") is rejected too
        if numbers.dtype.kind == "f" and np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)):
            numbers = numbers.astype(np.int64)
        else:
            raise TypeError(f"{what}: space-group numbers must be integers, got {numbers.dtype} values")
    if numbers.size:
        _check_range(int(numbers.min()), int(numbers.max()), what)
    return table[numbers.astype(np.int64) - 1]


def _check_range(low: int, high: int, what: str) -> None:
    if low < 1 or high > N_SPACE_GROUPS:
        bad = low if low < 1 else high
        raise ValueError(f"{what}: space-group numbers must be 1-230, got {bad}")
