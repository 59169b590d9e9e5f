"""Frozen train/val/test splits: whole de-duplicated units per split, seeded, hashed.

A unit (see :mod:`xrdcore.data.dedup`) is every kept structure of one (reduced formula, space
group) group plus any StructureMatcher-equivalent structures labelled otherwise; a unit never
straddles two splits, so a test score is never inflated by a near-copy in training.

The file is JSON: the ids of each split, sorted, the settings that produced them, and a SHA-256
hash over the sorted ids of each split. Results record that hash; loading verifies it, so an
edited or truncated split file is refused instead of silently changing what "test" means.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xrdcore.data.dedup import Deduplication
from xrdcore.storage import atomic_write_text

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
FORMAT = "xrdcore-split/1"


class SplitFileError(ValueError):
    """A split file that is not one, or whose ids do not match its hash."""


def split_hash(ids: Mapping[str, Sequence[str]]) -> str:
    """``sha256:<hex>`` over the sorted ids of each split, in a canonical JSON form."""
    canonical = json.dumps({name: sorted(ids.get(name, ())) for name in SPLITS},
                           separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def check_fractions(fractions: Sequence[float] | Mapping[str, float]) -> dict[str, float]:
    """Fractions of train/val/test as a dict; non-negative, summing to 1."""
    if isinstance(fractions, Mapping):
        unknown = set(fractions) - set(SPLITS)
        if unknown:
            raise ValueError(f"fractions name unknown splits {sorted(unknown)}; use {', '.join(SPLITS)}")
        values = [float(fractions.get(name, 0.0)) for name in SPLITS]
    else:
        values = [float(f) for f in fractions]
        if len(values) != len(SPLITS):
            raise ValueError(f"fractions must be three numbers (train, val, test), got {list(fractions)!r}")
    if any(not math.isfinite(v) or v < 0 for v in values) or not math.isclose(sum(values), 1.0, abs_tol=1e-9):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {values}")
    return dict(zip(SPLITS, values))


@dataclass(frozen=True)
class Split:
    """The ids of each split and the metadata that says how they were made."""

    ids: dict[str, tuple[str, ...]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return split_hash(self.ids)

    @property
    def counts(self) -> dict[str, int]:
        return {name: len(self.ids[name]) for name in SPLITS}

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **self.meta, "counts": self.counts, "hash": self.hash,
                "ids": {name: list(self.ids[name]) for name in SPLITS}}

    def save(self, path: str | Path) -> Path:
        # default=str: options such as paths are stored as their text
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, default=str) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read a split file, refusing it if its ids do not match its stored hash."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SplitFileError(f"split file {str(path)!r} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SplitFileError(f"{path}: not a readable JSON split file ({exc})") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Split:
        """A split from its JSON form, refused (naming ``where``) if its ids do not match its hash."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise SplitFileError(f"{where}: not an xrdcore split file (expected \"format\": \"{FORMAT}\")")
        ids = data.get("ids")
        if not isinstance(ids, dict) or set(ids) != set(SPLITS) or not all(
                isinstance(v, list) and all(isinstance(i, str) for i in v) for v in ids.values()):
            raise SplitFileError(f"{where}: 'ids' must map each of {', '.join(SPLITS)} to a list of "
                                 "id strings")
        stored, computed = data.get("hash"), split_hash(ids)
        if stored != computed:
            raise SplitFileError(f"{where}: the ids do not match the stored hash (stored {stored}, computed "
                                 f"{computed}): the file was edited or corrupted; regenerate the split")
        counts = data.get("counts", {})
        if any(counts.get(name) != len(ids[name]) for name in SPLITS):
            raise SplitFileError(f"{where}: 'counts' {counts} disagree with the ids listed")
        seen: dict[str, str] = {}
        for name in SPLITS:
            for ident in ids[name]:
                if ident in seen:
                    raise SplitFileError(f"{where}: id {ident!r} is in both {seen[ident]} and {name}")
                seen[ident] = name
        meta = {k: v for k, v in data.items() if k not in ("format", "counts", "hash", "ids")}
        return cls({name: tuple(ids[name]) for name in SPLITS}, meta)


def make_split(dedup: Deduplication, *, dataset: str, symprec: float,
               fractions: Sequence[float] | Mapping[str, float] = DEFAULT_FRACTIONS, seed: int = 0,
               options: Mapping[str, Any] | None = None) -> Split:
    """Assign whole units to train/val/test, seeded.

    Units are shuffled (numpy, ``seed``) and each goes to the split furthest below its target
    share of structures, so the counts follow ``fractions`` as closely as whole units allow.
    ``dataset``, ``options`` (the data set's arguments), ``symprec`` and the de-duplication
    counts are stored with the ids.
    """
    shares = check_fractions(fractions)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    units = sorted(dedup.units)
    order = np.random.default_rng(seed).permutation(len(units))
    total = sum(len(u) for u in units)
    assigned: dict[str, list[str]] = {name: [] for name in SPLITS}
    groups = dict.fromkeys(SPLITS, 0)
    for k in order:
        unit = units[int(k)]
        name = max(SPLITS, key=lambda n: (shares[n] * total - len(assigned[n]), shares[n]))
        assigned[name].extend(unit)
        groups[name] += 1
    meta = {"dataset": dataset, "options": dict(options or {}), "seed": seed, "fractions": shares,
            "symprec": symprec, "group_by": "reduced formula + spglib space group; StructureMatcher "
                                            "(default tolerances) duplicates merged and linked",
            "units": groups, "duplicates_removed": dedup.removed}
    return Split({name: tuple(sorted(assigned[name])) for name in SPLITS}, meta)
