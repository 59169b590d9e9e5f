"""Pattern–structure pairs of one split of an xrdcore peak cache, for CPCP and the generator.

A split keeps every structure that has peaks (``PeakCache.indices``) and at most ``max_atoms``
atoms in its cell; the others are dropped and counted, never truncated or swapped for other
structures (the published code's batch clipping kept the largest structures instead). Disordered
structures (partial occupancies) cannot be encoded and are dropped and counted too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from xrd_xtalnet.crystals import CrystalBatch, crystal_arrays

if TYPE_CHECKING:
    from pymatgen.core import Structure
    from xrdcore.data.cache import PeakCache
    from xrdcore.diffraction.pxrd import PeakList


@dataclass
class SplitPairs:
    """The kept pairs of one split: ``indices`` are positions in the cache; row ``r`` of the split
    is cache entry ``indices[r]``."""

    cache: PeakCache
    split: str
    indices: np.ndarray
    crystals: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    dropped: dict[str, int] = field(default_factory=dict)
    max_atoms: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def counts(self) -> dict[str, Any]:
        """What was kept and dropped, and why (for results files)."""
        return {"kept": len(self), **{f"dropped_{k}": v for k, v in self.dropped.items()},
                "max_atoms": self.max_atoms}

    def peak_lists(self, rows: Sequence[int]) -> list[PeakList]:
        return [self.cache.peaks(int(self.indices[r])) for r in rows]

    def patterns(self, rows: Sequence[int], device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
        """The ``peaks`` model input of the given rows, built as the core builds it."""
        return pattern_inputs(self.peak_lists(rows), device)

    def crystal_batch(self, rows: Sequence[int], device: str | torch.device | None = None,
                      dtype: torch.dtype = torch.float32) -> CrystalBatch:
        return CrystalBatch.from_arrays([self.crystals[int(r)] for r in rows], device, dtype)

    def structure(self, row: int) -> Structure:
        return self.cache.structure(int(self.indices[row]))


def pattern_inputs(peak_lists: Sequence[Any], device: str | torch.device | None = None,
                   two_theta_range: tuple[float, float] | None = None) -> dict[str, torch.Tensor]:
    """Peak lists → the ``peaks`` input kind: ``two_theta`` (degrees), ``intensity`` (relative to a
    maximum of 1) and ``mask``, padded to the longest list — what the core's
    ``InputSpec(kind="peaks")`` makes of a cache's peak lists (a test checks they agree). Any
    object with ``two_theta`` and ``intensity`` (relative, strongest 100) arrays will do: the
    cache's ``PeakList`` or the ``FoundPeaks`` of a measured profile (no hkl or lattice needed).

    ``two_theta_range``: keep only peaks inside ``[low, high]`` degrees and rescale each list so its
    strongest kept peak is 100 again, as a cache's peak lists (simulated for that range) are.
    """
    rows = []
    for peaks in peak_lists:
        two_theta = np.asarray(peaks.two_theta, dtype=np.float64).reshape(-1)
        intensity = np.asarray(peaks.intensity, dtype=np.float64).reshape(-1)
        if two_theta.shape != intensity.shape:
            raise ValueError(f"a peak list needs as many intensities as positions, got {len(intensity)} and "
                             f"{len(two_theta)}")
        if two_theta_range is not None:
            inside = (two_theta >= two_theta_range[0]) & (two_theta <= two_theta_range[1])
            two_theta, intensity = two_theta[inside], intensity[inside]
            if len(intensity) and intensity.max() > 0:
                intensity = intensity * (100.0 / intensity.max())
        rows.append((two_theta, intensity))
    if not rows:
        raise ValueError("no peak lists")
    size = max(1, max(len(t) for t, _ in rows))
    two_theta = np.zeros((len(rows), size), dtype=np.float32)
    intensity = np.zeros((len(rows), size), dtype=np.float32)
    mask = np.zeros((len(rows), size), dtype=bool)
    for i, (t, y) in enumerate(rows):
        two_theta[i, :len(t)], intensity[i, :len(t)], mask[i, :len(t)] = t, y, True
    as_tensor = lambda a: torch.as_tensor(a, device=device)
    return {"two_theta": as_tensor(two_theta), "intensity": as_tensor(intensity) / 100.0, "mask": as_tensor(mask)}


def split_pairs(cache: PeakCache, split: str, max_atoms: int | None = None) -> SplitPairs:
    """The pairs of ``split`` with at most ``max_atoms`` atoms (None: no limit); see the module
    docstring for what is dropped."""
    if max_atoms is not None and max_atoms < 1:
        raise ValueError(f"max_atoms must be positive or None, got {max_atoms!r}")
    kept, crystals = [], []
    dropped = {"too_many_atoms": 0, "disordered": 0}
    for index in cache.indices(split):
        structure = cache.structure(int(index))
        if max_atoms is not None and len(structure) > max_atoms:
            dropped["too_many_atoms"] += 1
            continue
        if not structure.is_ordered:
            dropped["disordered"] += 1
            continue
        kept.append(int(index))
        crystals.append(crystal_arrays(structure))
    return SplitPairs(cache, split, np.array(kept, dtype=np.int64), crystals, dropped, max_atoms)
