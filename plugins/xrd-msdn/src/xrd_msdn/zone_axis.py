"""Kinematic single-crystal spot patterns along three zone axes of a crystal: the physics.

View v (0, 1, 2) looks along Cartesian axis v (x, y, z) of the cell, the conventional standard
cell by default (:func:`conventional_cell`). Its zone axis [uvw] is the lattice direction along
that axis: exact for every view of a cubic, tetragonal, orthorhombic, hexagonal or trigonal cell
([100], [010], [001]; hexagonal [100], [120], [001]) and for x (and y of monoclinic cells). Where
the axis is no lattice direction (z of a monoclinic cell, y and z of a triclinic one) the zone axis
is the lattice direction with indices in {−1, 0, 1} closest to it, and the beam is tilted onto it.

The spots are the reciprocal-lattice points g = h a* + k b* + l c* (Å⁻¹, no 2π) of the zero-order
Laue zone, h·u + k·v + l·w = 0, the direct beam (000) removed. For wavelength λ their excitation
error is s_g = −λ|g|²/2 (the curvature of the Ewald sphere; 0 with ``ewald_sphere=False``, an
undistorted zero layer as in a precession photograph), their kinematic intensity
|F(g)|² × exp(−s_g² / 2σ²), a Gaussian relrod of width σ (``relrod_width``), and points with
|s_g| > ``max_excitation_error`` are not excited. Higher Laue zones are left out on purpose: in a
cell tens of Å long along the beam they would overlay the zero layer with spots that the shaping's
"smallest spot distance" would then follow.

A spot sits at the in-plane components of g, ``(u, w) = (g·û, g·ŵ)``: û is the Cartesian axis
``IMAGE_AXES[v][0]`` made perpendicular to the beam n̂, ŵ = n̂ × û; for a beam along the axis,
(û, ŵ) = (y, z), (z, x), (x, y) — cyclic, so that relabelling the axes cyclically relabels the
views and nothing else. Intensities are relative to the strongest spot of the view; spots weaker
than ``min_intensity`` are dropped, and at most ``max_spots`` (the strongest) are kept.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import spglib
import torch
from spglib.error import SpglibError
from xrdcore.data.labels import DEFAULT_ANGLE_TOLERANCE, DEFAULT_SYMPREC, spglib_cell
from xrdcore.diffraction.pxrd import StructureError, scattering_parameters

from xrd_msdn.scattering import Radiation, structure_factor_squared

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["IMAGE_AXES", "Cell", "ZoneAxis", "ZoneAxisSpots", "conventional_cell", "zero_layer", "zone_axes",
           "zone_axis_views"]

#: the Cartesian axis that sets each view's horizontal image axis; the vertical one is beam × it
IMAGE_AXES: tuple[tuple[int, int], ...] = ((1, 2), (2, 0), (0, 1))
#: largest index searched for a lattice direction exactly along a Cartesian axis
_MAX_INDEX = 6


@dataclass(frozen=True)
class ZoneAxis:
    """The geometry of one view: zone axis ``uvw`` (indices of the cell), beam direction ``beam``
    and image axes ``u``, ``w`` (Cartesian unit vectors; u × w = beam), and whether the beam is
    exactly the view's Cartesian axis (``exact``) or was tilted onto the nearest low-index row."""

    axis: int
    uvw: tuple[int, int, int]
    beam: np.ndarray
    u: np.ndarray
    w: np.ndarray
    exact: bool


@dataclass(frozen=True)
class ZoneAxisSpots:
    """The spots of one view (beam along Cartesian axis ``axis`` = 0, 1, 2 for x, y, z).

    ``zone_axis``: [uvw]; ``hkl`` ``(N, 3)`` long: indices on the cell the pattern was computed
    for, h·u + k·v + l·w = 0; ``position`` ``(N, 2)`` float64, Å⁻¹: (u, w) in the image plane;
    ``intensity`` ``(N,)`` float64, relative to the strongest spot (1); ``excitation_error``
    ``(N,)`` float64, Å⁻¹. Spots are ordered by position (u, then w).
    """

    axis: int
    zone_axis: tuple[int, int, int]
    hkl: torch.Tensor
    position: torch.Tensor
    intensity: torch.Tensor
    excitation_error: torch.Tensor

    def __len__(self) -> int:
        return len(self.intensity)


@dataclass(frozen=True)
class Cell:
    """What the simulation needs of a structure: the lattice and its scatterers."""

    formula: str
    lattice: np.ndarray  # (3, 3) rows a, b, c in Å, Cartesian
    coords: np.ndarray  # (n, 3) fractional; one row per (site, species)
    occupancy: np.ndarray  # (n,)
    element: np.ndarray  # (n,) index into elements
    elements: tuple[str, ...]

    @classmethod
    def of(cls, structure: Structure) -> Cell:
        """The scatterers of ``structure`` in its own cell and orientation (no standardisation)."""
        formula = _formula(structure)
        _check(structure, formula)
        return cls.from_sites(formula, np.array(structure.lattice.matrix, dtype=float),
                              np.asarray(structure.frac_coords, dtype=float),
                              [_content(site) for site in structure])

    @classmethod
    def from_sites(cls, formula: str, lattice: np.ndarray, coords: np.ndarray,
                   contents: Sequence[Mapping[str, float]]) -> Cell:
        """A cell from fractional ``coords`` ``(n_sites, 3)`` and per site element → occupancy;
        a :class:`~xrdcore.diffraction.pxrd.StructureError` naming ``formula`` if it cannot be used."""
        if not (np.all(np.isfinite(lattice)) and np.all(np.isfinite(coords))):
            raise StructureError(f"{formula}: the lattice or the coordinates are not finite")
        volume = abs(float(np.linalg.det(lattice)))
        if volume < 1.0 or volume / max(len(coords), 1) < 0.5:
            raise StructureError(f"{formula}: the cell volume {volume:.3g} Å³ is too small for {len(coords)} sites")
        params = scattering_parameters()
        rows, occupancy, symbols = [], [], []
        for index, content in enumerate(contents):
            for symbol, occu in content.items():
                if symbol not in params:
                    raise StructureError(f"{formula}: site {index} holds {symbol!r}, which has no scattering factor")
                rows.append(index)
                occupancy.append(float(occu))
                symbols.append(symbol)
        elements = tuple(dict.fromkeys(symbols))
        return cls(formula, np.array(lattice, dtype=float), np.asarray(coords, dtype=float)[rows],
                   np.asarray(occupancy), np.array([elements.index(s) for s in symbols]), elements)


def _formula(structure: Structure) -> str:
    return structure.composition.reduced_formula or "empty structure"


def _content(site) -> dict[str, float]:
    """Element → occupancy of one site (oxidation states dropped: the scattering factors are atomic)."""
    content: dict[str, float] = {}
    for species, occu in site.species.items():
        symbol = getattr(species, "symbol", str(species))
        content[symbol] = content.get(symbol, 0.0) + float(occu)
    return content


def _check(structure: Structure, formula: str) -> None:
    if len(structure) == 0:
        raise StructureError(f"{formula}: the structure has no atoms")


def conventional_cell(structure: Structure, symprec: float = DEFAULT_SYMPREC,
                      angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE) -> Cell:
    """spglib's standardised conventional cell of ``structure`` (``symprec`` in Å, ``angle_tolerance``
    in degrees; by default the tolerances xrdcore labels with, and the same site typing, so the cell
    is that of the label's space group). It is in the ITA setting and spglib's idealised standard
    orientation, the same crystal directions along x, y, z for every structure of a crystal
    system: a along x and b in the xy plane, so a, b, c along x, y, z for orthogonal cells, and for
    hexagonal ones a along x ([100]), y along [120] and c along z."""
    formula = _formula(structure)
    _check(structure, formula)
    cell = spglib_cell(structure)
    with warnings.catch_warnings():  # spglib 2 warns about its error handling on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            dataset = spglib.get_symmetry_dataset(cell, symprec=symprec, angle_tolerance=angle_tolerance)
            reason = "" if dataset is not None else getattr(spglib, "get_error_message", lambda: "")()
        except (SpglibError, ValueError, TypeError) as exc:  # SpglibError where errors are raised
            dataset, reason = None, str(exc)
    if dataset is None:
        raise StructureError(f"{formula}: spglib found no symmetry at symprec={symprec} Å "
                             f"({reason or 'no reason given'})")
    content_of = {}
    for site, kind in zip(structure, cell[2]):
        content_of.setdefault(kind, _content(site))
    return Cell.from_sites(formula, np.asarray(dataset.std_lattice, dtype=float),
                           np.asarray(dataset.std_positions, dtype=float),
                           [content_of[int(kind)] for kind in dataset.std_types])


def zone_axes(lattice: np.ndarray) -> tuple[ZoneAxis, ZoneAxis, ZoneAxis]:
    """The zone axes of the views along x, y and z of ``lattice`` (rows a, b, c in Å)."""
    lattice = np.asarray(lattice, dtype=float)
    inverse = np.linalg.inv(lattice)  # row v: the fractional components of Cartesian axis v
    out = []
    for axis in range(3):
        uvw = _integer_direction(inverse[axis])
        exact = uvw is not None
        if not exact:
            uvw = _nearest_row(lattice, axis)
        row = np.asarray(uvw, dtype=float) @ lattice
        beam = row / np.linalg.norm(row)
        across = np.eye(3)[IMAGE_AXES[axis][0]]
        u = across - (across @ beam) * beam
        u /= np.linalg.norm(u)
        out.append(ZoneAxis(axis, uvw, beam, u, np.cross(beam, u), exact))
    return tuple(out)


def _integer_direction(fractional: np.ndarray) -> tuple[int, int, int] | None:
    """The smallest integer vector parallel to ``fractional`` (indices up to _MAX_INDEX), if any."""
    scaled = fractional / np.abs(fractional).max()
    for m in range(1, _MAX_INDEX + 1):
        candidate = m * scaled
        if np.all(np.abs(candidate - np.round(candidate)) < 1e-6 * m):
            uvw = np.round(candidate).astype(int)
            uvw //= math.gcd(*(abs(int(i)) for i in uvw))
            return tuple(int(i) for i in uvw)
    return None


def _nearest_row(lattice: np.ndarray, axis: int) -> tuple[int, int, int]:
    """The lattice direction with indices in {−1, 0, 1} at the smallest angle to Cartesian ``axis``
    (ties: the shorter, then the first in lexicographic order), pointing along it."""
    best = None
    for uvw in itertools.product((-1, 0, 1), repeat=3):
        row = np.asarray(uvw, dtype=float) @ lattice
        length = float(np.linalg.norm(row))
        if length == 0 or row[axis] <= 0:
            continue
        key = (round(-row[axis] / length, 12), round(length, 9), uvw)
        best = min(best, key) if best else key
    return best[2]


def zero_layer(lattice: np.ndarray, zone: ZoneAxis, field: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(N, 3)`` long: every hkl ≠ 0 of the zero-order Laue zone of ``zone`` (h·u + k·v + l·w = 0)
    whose in-plane components (g·û, g·ŵ) both lie within ±``field`` (Å⁻¹).

    Of the three indices, the one whose reciprocal vector has the largest component along the beam
    is solved for; for each pair of the other two (within the reciprocal sphere of the field) the
    zero layer holds at most one value of it, so the work is the number of pairs."""
    lat = torch.as_tensor(np.asarray(lattice, dtype=float), dtype=torch.float64, device=device)
    reciprocal = torch.linalg.inv(lat).T  # rows a*, b*, c*
    uvw = torch.tensor(zone.uvw, dtype=torch.long, device=device)
    beam = torch.as_tensor(zone.beam, dtype=torch.float64, device=device)
    along = reciprocal @ beam
    g_max = math.sqrt(2) * field
    bounds = torch.floor(g_max * torch.linalg.vector_norm(lat, dim=1) + 1e-9).long()
    solved = int(torch.argmax(along.abs()))
    p, q = (i for i in range(3) if i != solved)
    first, second = torch.meshgrid(torch.arange(-int(bounds[p]), int(bounds[p]) + 1, device=device),
                                   torch.arange(-int(bounds[q]), int(bounds[q]) + 1, device=device), indexing="ij")
    first, second = first.reshape(-1), second.reshape(-1)
    value = torch.round(-(first * along[p] + second * along[q]) / along[solved]).long()
    hkl = torch.empty(len(first), 3, dtype=torch.long, device=device)
    hkl[:, p], hkl[:, q], hkl[:, solved] = first, second, value
    g = hkl.double() @ reciprocal
    u = g @ torch.as_tensor(zone.u, dtype=torch.float64, device=device)
    w = g @ torch.as_tensor(zone.w, dtype=torch.float64, device=device)
    keep = ((hkl @ uvw) == 0) & (u.abs() <= field) & (w.abs() <= field) & (hkl != 0).any(1)
    return hkl[keep]


def zone_axis_views(cell: Cell, *, wavelength: float, radiation: Radiation, ewald_sphere: bool, field: float,
                    relrod_width: float, max_excitation_error: float, min_intensity: float, max_spots: int,
                    debye_waller: Mapping[str, float] | None = None,
                    device: torch.device | str = "cpu") -> tuple[ZoneAxisSpots, ZoneAxisSpots, ZoneAxisSpots]:
    """The spots of ``cell`` along x, y and z (see the module docstring for every parameter;
    lengths in Å, reciprocal lengths in Å⁻¹). The structure factors of the three views are one
    computation over all their reflections."""
    zones = zone_axes(cell.lattice)
    reciprocal = torch.linalg.inv(torch.as_tensor(cell.lattice, dtype=torch.float64, device=device)).T
    per_view = [zero_layer(cell.lattice, zone, field, device) for zone in zones]
    hkl = torch.cat(per_view)
    g = hkl.double() @ reciprocal
    g_norm = torch.linalg.vector_norm(g, dim=1)
    # |F(h)| = |F(−h)| (Friedel; the scattering factors are real), and a row such as 00l can lie in
    # two views: one structure factor per pair ±h
    first = hkl.gather(1, (hkl != 0).long().argmax(1, keepdim=True)).squeeze(1)
    canonical = torch.where((first < 0)[:, None], -hkl, hkl)
    span = 2 * int(hkl.abs().max()) + 1 if len(hkl) else 1
    codes, inverse = torch.unique((canonical + span // 2) @ torch.tensor([span * span, span, 1], device=device),
                                  return_inverse=True)
    friedel = torch.stack([codes // (span * span), codes // span % span, codes % span], 1) - span // 2
    f2 = structure_factor_squared(friedel, torch.linalg.vector_norm(friedel.double() @ reciprocal, dim=1) / 2,
                                  cell.coords, cell.occupancy, cell.element, cell.elements, radiation,
                                  debye_waller)[inverse]
    excitation = -(wavelength / 2) * g_norm ** 2 if ewald_sphere else torch.zeros_like(g_norm)
    intensity = f2 * torch.exp(-0.5 * (excitation / relrod_width) ** 2)
    views, start = [], 0
    for zone, reflections in zip(zones, per_view):
        rows = slice(start, start + len(reflections))
        start += len(reflections)
        position = torch.stack([g[rows] @ torch.as_tensor(zone.u, dtype=torch.float64, device=device),
                                g[rows] @ torch.as_tensor(zone.w, dtype=torch.float64, device=device)], 1)
        views.append(_select(zone, reflections, position, intensity[rows], excitation[rows],
                             max_excitation_error, min_intensity, max_spots))
    return tuple(views)


def _select(zone: ZoneAxis, hkl: torch.Tensor, position: torch.Tensor, intensity: torch.Tensor,
            excitation: torch.Tensor, max_excitation_error: float, min_intensity: float,
            max_spots: int) -> ZoneAxisSpots:
    """The excited spots, relative to the strongest, the weak dropped, at most ``max_spots``
    kept (the strongest; ties to the earlier position), ordered by position."""
    keep = excitation.abs() <= max_excitation_error
    hkl, position, intensity, excitation = hkl[keep], position[keep], intensity[keep], excitation[keep]
    peak = float(intensity.max()) if len(intensity) else 0.0
    if not peak > 0:
        keep = torch.zeros(0, dtype=torch.long, device=hkl.device)
    else:
        intensity = intensity / peak
        order = torch.sort(position[:, 1], stable=True).indices  # by w, then (stable) by u: (u, w) order
        order = order[torch.sort(position[order, 0], stable=True).indices]
        keep = order[intensity[order] >= min_intensity]
        if len(keep) > max_spots:
            strongest = torch.sort(intensity[keep], descending=True, stable=True).indices[:max_spots]
            keep = keep[torch.sort(strongest).values]
    return ZoneAxisSpots(zone.axis, zone.uvw, hkl[keep], position[keep], intensity[keep], excitation[keep])
