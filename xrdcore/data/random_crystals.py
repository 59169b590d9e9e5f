"""Random crystals of a requested space group (pyxtal), reproducible one structure at a time.

Every structure has its own seed, derived from (data-set seed, space group, index) by numpy's
SeedSequence, so a data set is the same whether it is built in one process or sharded over
many, and any single structure can be rebuilt alone. The composition is drawn to fit the
group's Wyckoff multiplicities (each species occupies one or two orbits' worth of sites), and
a failed placement is retried with a seed derived from the attempt number.

pyxtal often returns more symmetry than requested (atoms land on special positions or the
random cell is metrically higher): the request is only recorded, the label comes from spglib.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pymatgen.core import Structure

#: elements drawn for random crystals: common, with scattering factors and covalent radii
#: (no H: a hydrogen-only crystal has no useful X-ray pattern; no noble gases)
ELEMENTS: tuple[str, ...] = tuple(
    "Li Be B C N O F Na Mg Al Si P S Cl K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Rb Sr Y Zr "
    "Nb Mo Ru Rh Pd Ag Cd In Sn Sb Te I Cs Ba La Ce Nd Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi".split())
#: atoms per conventional cell, at most: keeps generation, labelling and simulation fast
MAX_ATOMS = 64
#: placements tried (each with its own derived seed) before a structure is given up
MAX_ATTEMPTS = 10
#: compositions drawn per attempt before giving up on finding one that fits the group
_COMPOSITION_DRAWS = 50


class GenerationError(RuntimeError):
    """pyxtal could not build a crystal for this request within the allowed attempts."""


@dataclass(frozen=True)
class CrystalRequest:
    """One structure to generate: picklable, so it can be sent to a worker process."""

    id: str
    space_group: int
    index: int
    seed: int
    max_atoms: int = MAX_ATOMS


def structure_seed(seed: int, space_group: int, index: int) -> int:
    """The seed of one structure: independent of how many others are built, or where."""
    return int(np.random.SeedSequence(int(seed), spawn_key=(space_group, index)).generate_state(1)[0])


def require_pyxtal(what: str) -> None:
    """A clear ImportError, up front, where pyxtal is needed but not installed."""
    import importlib.util

    if importlib.util.find_spec("pyxtal") is None:
        raise ImportError(f"{what} needs pyxtal to generate random crystals: pip install pyxtal")


@cache
def _pyxtal_version() -> str:
    """Recorded with each crystal: another pyxtal version may draw other crystals from a seed."""
    from importlib.metadata import version

    return version("pyxtal")


@cache
def _wyckoff(space_group: int):
    from pyxtal.symmetry import Group

    return Group(space_group)


def draw_composition(space_group: int, rng: np.random.Generator, max_atoms: int = MAX_ATOMS
                     ) -> tuple[list[str], list[int]]:
    """Species and counts per conventional cell that pyxtal can place in this group.

    Each count is one or two Wyckoff multiplicities of the group; the whole must fit one
    combination of Wyckoff positions (pyxtal's own check) and ``max_atoms``.
    """
    group = _wyckoff(space_group)
    multiplicities = sorted({wp.multiplicity for wp in group if wp.multiplicity <= max_atoms})
    if not multiplicities:
        raise GenerationError(f"space group {space_group}: every Wyckoff position has more than "
                              f"{max_atoms} sites")
    for _ in range(_COMPOSITION_DRAWS):
        n_species = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
        counts = [int(rng.choice(multiplicities)) * int(rng.integers(1, 3)) for _ in range(n_species)]
        if sum(counts) <= max_atoms and group.check_compatible(counts)[0]:
            species = [str(e) for e in rng.choice(ELEMENTS, size=n_species, replace=False)]
            return species, counts
    raise GenerationError(f"space group {space_group}: no composition of at most {max_atoms} atoms "
                          f"fitting its Wyckoff positions in {_COMPOSITION_DRAWS} draws")


def random_crystal(space_group: int, seed: int, max_atoms: int = MAX_ATOMS,
                   attempts: int = MAX_ATTEMPTS) -> tuple[Structure, dict[str, Any]]:
    """A pyxtal crystal requested in ``space_group`` and what was asked for (for ``meta``).

    Deterministic for a given ``seed``; raises :class:`GenerationError` with pyxtal's last
    complaint if no attempt succeeds.
    """
    from pyxtal import pyxtal

    if not 1 <= int(space_group) <= 230:
        raise ValueError(f"space group must be 1-230, got {space_group}")
    last = "no attempt made"
    for attempt in range(attempts):
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(attempt,)))
        try:
            species, counts = draw_composition(space_group, rng, max_atoms)
            crystal = pyxtal()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                crystal.from_random(3, int(space_group), species, counts,
                                    random_state=int(rng.integers(2**31 - 1)))
            if not crystal.valid:
                last = f"pyxtal could not place {dict(zip(species, counts))} without overlaps"
                continue
            structure = crystal.to_pymatgen()
        except GenerationError:
            raise
        except Exception as exc:  # pyxtal raises many types for an impossible placement
            last = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            continue
        return structure, {"source": "pyxtal", "requested_space_group": int(space_group), "seed": int(seed),
                           "attempt": attempt, "composition": dict(zip(species, counts)),
                           "pyxtal_version": _pyxtal_version()}
    raise GenerationError(f"space group {space_group}, seed {seed}: no crystal in {attempts} attempts "
                          f"({last})")


def generate(request: CrystalRequest) -> tuple[CrystalRequest, Structure | None, dict[str, Any] | str]:
    """Worker entry point: the structure and its meta, or ``None`` and the reason it failed."""
    try:
        structure, meta = random_crystal(request.space_group, request.seed, request.max_atoms)
    except Exception as exc:
        return request, None, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return request, structure, meta
