"""Crystals as batched tensors, to and from pymatgen, and whether a generated one is a crystal.

A batch of G crystals with N atoms in all is a :class:`CrystalBatch`: ``lattice`` (G, 3, 3), rows
a, b, c in Å; ``frac`` (N, 3) fractional coordinates; ``numbers`` (N,) atomic numbers; ``batch``
(N,) the crystal each atom belongs to (non-decreasing). Atoms of one crystal are contiguous.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from pymatgen.core import Composition, Structure

#: closer than this (Å, periodic images included) two atoms make a candidate invalid
MIN_DISTANCE = 0.5
#: less volume per atom than this (Å³) is a degenerate lattice (the densest solids have ≈ 5)
MIN_VOLUME_PER_ATOM = 1.0
#: more volume per atom than this (Å³) is not a solid (porous frameworks have tens to ~100)
MAX_VOLUME_PER_ATOM = 1000.0


@dataclass
class CrystalBatch:
    lattice: torch.Tensor  # (G, 3, 3) rows a, b, c, Å
    frac: torch.Tensor  # (N, 3) fractional
    numbers: torch.Tensor  # (N,) int64 atomic numbers
    batch: torch.Tensor  # (N,) int64 crystal index

    def __len__(self) -> int:
        return self.lattice.shape[0]

    @property
    def counts(self) -> torch.Tensor:
        """Atoms per crystal, ``(G,)``."""
        return torch.bincount(self.batch, minlength=len(self))

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> CrystalBatch:
        return CrystalBatch(self.lattice.to(device, dtype), self.frac.to(device, dtype), self.numbers.to(device),
                            self.batch.to(device))

    @classmethod
    def from_arrays(cls, crystals: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                    device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> CrystalBatch:
        """From ``(lattice (3, 3), frac (n, 3), numbers (n,))`` triples, e.g. :func:`crystal_arrays`."""
        if not crystals:
            raise ValueError("no crystals to batch")
        lattice = np.stack([np.asarray(c[0], dtype=np.float64) for c in crystals])
        frac = np.concatenate([np.asarray(c[1], dtype=np.float64).reshape(-1, 3) for c in crystals])
        numbers = np.concatenate([np.asarray(c[2], dtype=np.int64) for c in crystals])
        batch = np.repeat(np.arange(len(crystals)), [len(c[2]) for c in crystals])
        if np.any(np.bincount(batch, minlength=len(crystals)) == 0):
            raise ValueError("every crystal needs at least one atom")
        return cls(torch.as_tensor(lattice, dtype=dtype, device=device), torch.as_tensor(frac, dtype=dtype, device=device),
                   torch.as_tensor(numbers, device=device), torch.as_tensor(batch, device=device))

    @classmethod
    def from_structures(cls, structures: Sequence[Structure], device: str | torch.device | None = None,
                        dtype: torch.dtype = torch.float32) -> CrystalBatch:
        """From ordered pymatgen structures (one species per site)."""
        return cls.from_arrays([crystal_arrays(s) for s in structures], device, dtype)

    def arrays(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """One ``(lattice, frac, numbers)`` triple per crystal, as float64/int64 numpy arrays."""
        lattice = self.lattice.detach().cpu().double().numpy()
        frac = self.frac.detach().cpu().double().numpy()
        numbers = self.numbers.detach().cpu().numpy()
        ends = np.cumsum(self.counts.cpu().numpy())
        starts = ends - self.counts.cpu().numpy()
        return [(lattice[g], frac[s:e], numbers[s:e]) for g, (s, e) in enumerate(zip(starts, ends))]


def crystal_arrays(structure: Structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lattice (3, 3) Å, frac (n, 3), atomic numbers (n,))`` of an ordered structure."""
    if not structure.is_ordered:
        raise ValueError(f"{structure.composition.reduced_formula}: disordered structures are not supported "
                         f"(one species per site is needed)")
    return (np.array(structure.lattice.matrix, dtype=np.float64), np.array(structure.frac_coords, dtype=np.float64),
            np.array([site.specie.Z for site in structure], dtype=np.int64))


def composition_numbers(composition: Composition | str) -> np.ndarray:
    """The atomic numbers of the cell content ``composition`` (counts are atoms in the cell, so
    ``"Na4Cl4"`` is an 8-atom cell and ``"NaCl"`` a 2-atom one), sorted by element."""
    from pymatgen.core import Composition

    composition = Composition(composition)
    numbers = []
    for element, amount in sorted(composition.items(), key=lambda item: item[0].Z):
        count = round(float(amount))
        if count < 1 or abs(float(amount) - count) > 1e-6:
            raise ValueError(f"composition {composition.formula!r}: counts must be whole numbers of atoms in "
                             f"the cell, got {float(amount)} {element}")
        numbers += [element.Z] * count
    if not numbers:
        raise ValueError("the composition is empty")
    return np.array(numbers, dtype=np.int64)


def reduced_cell(lattice: np.ndarray, frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same crystal in its LLL-reduced cell (short, nearly orthogonal vectors): ``(lattice,
    frac)`` with coordinates wrapped into [0, 1). A generated cell may come in an arbitrarily skewed
    basis, which makes neighbour searches and pymatgen's Niggli reduction (StructureMatcher) slow."""
    from pymatgen.core import Lattice

    lattice = np.asarray(lattice, dtype=np.float64)
    reduced = np.array(Lattice(lattice).get_lll_reduced_lattice().matrix)
    frac = np.asarray(frac, dtype=np.float64).reshape(-1, 3) @ lattice @ np.linalg.inv(reduced)
    return reduced, np.mod(frac, 1.0)


def invalid_reason(lattice: np.ndarray, frac: np.ndarray, min_distance: float = MIN_DISTANCE,
                   volume_per_atom: tuple[float, float] = (MIN_VOLUME_PER_ATOM, MAX_VOLUME_PER_ATOM)) -> str | None:
    """Why a generated cell is not a crystal — non-finite numbers, a degenerate or absurd lattice
    (volume per atom outside ``volume_per_atom`` Å³), or two atoms (periodic images included)
    closer than ``min_distance`` Å — or None if it is one. Distances are checked in the reduced
    cell, so a skewed basis of a good crystal is not rejected."""
    from xrd_xtalnet.periodic_graph import GraphError, radius_graph

    lattice, frac = np.asarray(lattice, dtype=np.float64), np.asarray(frac, dtype=np.float64).reshape(-1, 3)
    if not (np.all(np.isfinite(lattice)) and np.all(np.isfinite(frac))):
        return "non-finite lattice or coordinates"
    volume = abs(float(np.linalg.det(lattice)))
    low, high = volume_per_atom
    if not low <= volume / len(frac) <= high:
        return f"degenerate lattice (volume {volume:.3g} Å³ for {len(frac)} atoms, allowed {low}-{high} Å³ per atom)"
    lattice, frac = reduced_cell(lattice, frac)
    try:
        src, _, _, vectors = radius_graph(torch.as_tensor(lattice)[None], torch.as_tensor(frac),
                                          torch.zeros(len(frac), dtype=torch.long), min_distance)
    except GraphError as exc:
        return f"degenerate lattice ({exc})"
    if len(src):
        closest = float(torch.linalg.vector_norm(vectors, dim=1).min())
        return f"atoms {closest:.3f} Å apart (minimum {min_distance} Å)"
    return None


def to_structure(lattice: np.ndarray, frac: np.ndarray, numbers: np.ndarray, *,
                 min_distance: float = MIN_DISTANCE) -> Structure:
    """A pymatgen structure of a generated cell, always built, with its validity recorded in
    ``structure.properties``: ``valid`` (bool) and ``invalid_reason`` (str or None). Valid ones are
    given in their LLL-reduced cell (:func:`reduced_cell`); invalid ones as generated."""
    from pymatgen.core import Lattice, Structure

    reason = invalid_reason(lattice, frac, min_distance)
    lattice, frac = np.asarray(lattice, dtype=np.float64), np.asarray(frac, dtype=np.float64).reshape(-1, 3)
    if reason is None:
        lattice, frac = reduced_cell(lattice, frac)
    elif np.all(np.isfinite(frac)):
        frac = np.mod(frac, 1.0)
    return Structure(Lattice(lattice), [int(z) for z in numbers], frac,
                     properties={"valid": reason is None, "invalid_reason": reason})


def is_valid(structure: Structure) -> bool:
    """A candidate's recorded validity (:func:`to_structure`); structures from elsewhere are
    checked now."""
    recorded = structure.properties.get("valid") if structure.properties else None
    if recorded is not None:
        return bool(recorded)
    lattice, frac, _ = crystal_arrays(structure)
    return invalid_reason(lattice, frac) is None


def volume_per_atom(crystals: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """Mean volume per atom (Å³) of ``(lattice, frac, numbers)`` triples: the lattice scale of the
    diffusion model."""
    values = [abs(float(np.linalg.det(lattice))) / len(numbers) for lattice, _, numbers in crystals]
    if not values:
        raise ValueError("no crystals")
    return float(math.fsum(values) / len(values))
