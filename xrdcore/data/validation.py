"""Sanity checks on one structure before it is labelled, simulated or used for training.

Each check exists because the failure it catches is otherwise silent or deep: NaN coordinates
give NaN patterns, absurd cells or overlapping atoms give patterns of no real crystal, and
spglib cannot assign a space group to a site it does not know how to type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from pymatgen.core import Structure

DisorderPolicy = Literal["skip", "keep"]
DISORDER_POLICIES: tuple[str, ...] = ("skip", "keep")

#: the smallest distance (Å) between two atoms of a real crystal we accept; H–H in H₂ is 0.74
MIN_DISTANCE = 0.5
#: volume per atom (Å³) outside which a cell is not a crystal (diamond ~5.7, MOFs ~15–100)
VOLUME_PER_ATOM = (1.0, 1.0e4)
#: lattice vector lengths (Å) outside which a cell is corrupt or not a bulk crystal
LATTICE_LENGTH = (0.5, 500.0)
#: tolerance on occupancies read from files (0.9999 is an ordered site)
OCCUPANCY_TOL = 1e-3


class InvalidStructure(ValueError):
    """The structure cannot be used; ``kind`` classifies why (for report counts), ``sites`` are the
    indices of the two sites an overlap names (else None)."""

    def __init__(self, message: str, kind: str, sites: tuple[int, int] | None = None):
        super().__init__(message)
        self.kind, self.sites = kind, sites


def disordered_sites(structure: Structure) -> list[int]:
    """Indices of sites that are partially occupied or shared by several species."""
    return [i for i, site in enumerate(structure)
            if len(site.species) != 1 or abs(float(sum(site.species.values())) - 1.0) > OCCUPANCY_TOL]


def check_structure(structure: Structure, *, disorder: DisorderPolicy = "skip",
                    min_distance: float = MIN_DISTANCE) -> None:
    """Raise :class:`InvalidStructure` naming the first problem found; return if none.

    ``disorder="skip"`` refuses partially occupied or mixed sites. ``"keep"`` accepts them
    (see :func:`xrdcore.data.labels.spglib_cell` for how they are labelled) and then
    does not count two partially occupied sites whose occupancies sum to at most one as
    overlapping: they are alternative positions (split sites), never filled at once.
    """
    if disorder not in DISORDER_POLICIES:
        raise ValueError(f"disorder must be one of {', '.join(DISORDER_POLICIES)}, got {disorder!r}")
    if len(structure) == 0:
        raise InvalidStructure("the structure has no atoms", "empty")
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.all(np.isfinite(matrix)):
        raise InvalidStructure("the lattice has non-finite (NaN or infinite) parameters", "non-finite")
    if not np.all(np.isfinite(structure.frac_coords)):
        bad = int(np.flatnonzero(~np.isfinite(structure.frac_coords).all(axis=1))[0])
        raise InvalidStructure(f"site {bad} ({structure[bad].species_string}) has non-finite coordinates",
                               "non-finite")
    lengths = np.linalg.norm(matrix, axis=1)
    low, high = LATTICE_LENGTH
    if lengths.min() <= low or lengths.max() > high:
        raise InvalidStructure(f"lattice lengths {_fmt(lengths)} Å are outside ({low}, {high}] Å", "cell")
    per_atom = abs(float(np.linalg.det(matrix))) / len(structure)
    low, high = VOLUME_PER_ATOM
    if not low <= per_atom <= high:
        raise InvalidStructure(f"volume per atom {per_atom:.3g} Å³ is outside [{low:g}, {high:g}] Å³",
                               "cell")
    for index, site in enumerate(structure):  # pymatgen itself refuses occupancies above 1
        for species in site.species:
            if not 1 <= getattr(species, "Z", 0) <= 118:  # pymatgen's DummySpecies has no real Z
                raise InvalidStructure(f"site {index} has an unknown species {str(species)!r}", "species")
    from xrdcore.diffraction.scattering import scattering_parameters

    unsupported = sorted({sp.symbol for site in structure for sp in site.species} - set(scattering_parameters()))
    if unsupported:  # caught here, not in the simulator, so that it never enters a split
        raise InvalidStructure(f"no X-ray scattering factor for {', '.join(unsupported)}", "unsupported-element")
    disordered = disordered_sites(structure)
    if disordered and disorder == "skip":
        raise InvalidStructure(f"{len(disordered)} of {len(structure)} sites are partially occupied or "
                               "mixed (disorder='skip': no single ordered structure to label)", "disordered")
    _check_distances(structure, min_distance, allow_split_sites=bool(disordered))


def _check_distances(structure: Structure, min_distance: float, allow_split_sites: bool) -> None:
    """Neighbour search within ``min_distance`` only: linear in the number of atoms."""
    centres, neighbours, _, distances = structure.get_neighbor_list(min_distance)
    if allow_split_sites and len(centres):
        occupancy = np.array([float(sum(site.species.values())) for site in structure])
        clash = occupancy[centres] + occupancy[neighbours] > 1 + OCCUPANCY_TOL
        clash |= centres == neighbours  # a site too close to its own periodic image
        centres, neighbours, distances = centres[clash], neighbours[clash], distances[clash]
    if len(centres):
        k = int(np.argmin(distances))
        i, j = int(centres[k]), int(neighbours[k])
        raise InvalidStructure(
            f"atoms overlap: sites {i} ({structure[i].species_string}) and {j} "
            f"({structure[j].species_string}) are {distances[k]:.3f} Å apart (< {min_distance} Å)",
            "overlap", sites=(i, j))


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
