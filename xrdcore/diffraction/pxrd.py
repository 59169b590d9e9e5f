"""Kinematic powder X-ray diffraction: the peak lists of crystal structures, in torch.

The physics is pymatgen's ``XRDCalculator`` (and is tested against it): every reciprocal-lattice
point inside the 2θ range, atomic scattering factors ``f(s) = Z - 41.78214 s² Σ aᵢ exp(-bᵢ s²)``
from pymatgen's own parameter table, site occupancies, optional Debye–Waller factors
``exp(-B s²)``, the Lorentz–polarisation factor ``(1 + cos² 2θ) / (sin² θ cos θ)``, reflections
closer than 1e-5° in 2θ merged, intensities scaled to a maximum of 100.

What makes it fast: reflections related by the structure's Laue symmetry (Friedel's law
included) have equal |F| and 2θ, so the structure factor is computed once per orbit and
weighted by the orbit size, with no Python loop over reflections or atoms. :func:`peak_lists`
simulates many structures in one call: after reading the structures, every step runs once
for the whole batch on concatenated arrays (a segment per structure), because for a small
cell the fixed cost of a call (dozens of array operations) outweighs its arithmetic. For the
same reason small cells find their symmetry with a batched search of their own
(:func:`_rotations`; spglib also identifies and standardises the space group, up to 20 ms for
a cubic cell, three times pymatgen's whole pattern) and take the exact structure factor over
(reflection, scatterer) pairs of the whole batch. Large cells use spglib, matrix products per
structure and, when centrosymmetric, a real structure factor over half the atoms. Arrays are
torch tensors on the requested device (numpy for the symmetry).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import spglib
import torch

from xrdcore.diffraction.grid import DEFAULT_GRID
from xrdcore.diffraction.radiation import check_two_theta_range
from xrdcore.diffraction.radiation import wavelength as parse_wavelength
from xrdcore.diffraction.scattering import atomic_number, scattering_parameters

if TYPE_CHECKING:
    from pymatgen.core import Structure

#: reflections whose 2θ differ by less than this (degrees) are one peak, as in pymatgen
TWO_THETA_TOL = 1e-5
#: peaks weaker than this on the max-100 scale are dropped, as in pymatgen
MIN_RELATIVE_INTENSITY = 1e-3
#: cells with at most this many scatterers (a site, or one per species on a partly occupied
#: site) are small: simulated together (see the module's docstring), as synthetic crystals are
SMALL_CELL = 64
#: reflections × scatterers evaluated at once; bounds memory, not results
_CHUNK_ELEMENTS = 1 << 20


class StructureError(ValueError):
    """A structure that cannot be simulated; the message says what is wrong with it."""


@dataclass(frozen=True)
class PeakList:
    """Powder peaks of one structure, ordered by 2θ.

    ``hkl`` is one reflection of the strongest family merged into the peak (indices of the
    structure's own cell); ``multiplicity`` counts every reflection merged into it.
    """

    two_theta: np.ndarray  # (P,) degrees
    d: np.ndarray  # (P,) Å
    intensity: np.ndarray  # (P,) relative, strongest = 100
    hkl: np.ndarray  # (P, 3) int
    multiplicity: np.ndarray  # (P,) int
    wavelength: float  # Å
    lattice: np.ndarray  # (3, 3) rows a, b, c in Å: the cell ``hkl`` refers to
    rotations: np.ndarray  # (R, 3, 3) int: the Laue group on hkl (h → h R); a peak's family is {hkl R}

    def __len__(self) -> int:
        return len(self.two_theta)


def peak_list(structure: Structure, *, wavelength: str | float = "CuKa1",
              two_theta_range: tuple[float, float] = (DEFAULT_GRID.start, DEFAULT_GRID.stop),
              debye_waller: Mapping[str, float] | None = None, symprec: float | None = 1e-3,
              device: str | torch.device | None = None) -> PeakList:
    """Kinematic powder peaks of ``structure``.

    ``wavelength``: a line name (``"CuKa1"``) or Å. ``two_theta_range``: degrees.
    ``debye_waller``: element → B in Å². ``symprec``: tolerance (Å) of the symmetry used to
    merge equivalent reflections; ``None`` uses Friedel's law only (the result is the same,
    slower on CPU). ``device``: where the tensors live.
    """
    return peak_lists([structure], wavelength=wavelength, two_theta_range=two_theta_range,
                      debye_waller=debye_waller, symprec=symprec, device=device)[0]


def peak_lists(structures: Sequence[Structure], *, wavelength: str | float = "CuKa1",
               two_theta_range: tuple[float, float] = (DEFAULT_GRID.start, DEFAULT_GRID.stop),
               debye_waller: Mapping[str, float] | None = None, symprec: float | None = 1e-3,
               device: str | torch.device | None = None) -> list[PeakList]:
    """:func:`peak_list` of each structure, all in one call: many times faster for small cells,
    whose cost is otherwise mostly per call, as every step after reading the structures runs
    once for the batch (reflections carry the index of their structure, ``segment``). The
    settings are those of :func:`peak_list`; a structure that cannot be simulated raises
    :class:`StructureError`, naming its position in a batch of several.
    """
    lam = parse_wavelength(wavelength)
    low, high = check_two_theta_range(two_theta_range)
    device = torch.device(device or "cpu")
    cells = []
    for index, structure in enumerate(structures):
        try:
            cells.append(_Cell.of(structure, debye_waller or {}))
        except StructureError as exc:
            raise (StructureError(f"structure {index}: {exc}") if len(structures) > 1 else exc) from None
    if not cells:
        return []
    g_min, g_max = (2 * math.sin(math.radians(t / 2)) / lam for t in (low, high))
    laue, inversions = _symmetry(cells, symprec)
    lattices = torch.as_tensor(np.stack([cell.lattice for cell in cells]), device=device)
    reciprocal = torch.linalg.inv(lattices).transpose(1, 2)
    # symmetric reflections agree in |g| only to rounding: enumerate a slightly wider shell so
    # that every orbit is whole, then keep the orbits inside the exact range
    hkl, segment = _reflections(lattices, reciprocal, g_min * (1 - 1e-6), g_max * (1 + 1e-6))
    reps, segment, multiplicity = _orbit_representatives(hkl, segment, laue)
    g = torch.linalg.vector_norm(_times(reps.double(), reciprocal, segment), dim=1)
    inside = torch.nonzero((g >= g_min) & (g <= g_max)).flatten()
    reps, segment, multiplicity, g = (t.index_select(0, inside) for t in (reps, segment, multiplicity, g))
    theta = torch.asin((lam * g / 2).clamp(max=1.0))
    f_squared = _structure_factors_squared(cells, inversions, reps, segment, (g / 2) ** 2, device)
    intensity = f_squared * lorentz_polarisation(theta) * multiplicity
    return _merge(torch.rad2deg(2 * theta), 1 / g, intensity, reps, multiplicity, segment, lam, cells, laue)


def lorentz_polarisation(theta: torch.Tensor) -> torch.Tensor:
    """(1 + cos² 2θ) / (sin² θ cos θ), θ in radians (unpolarised beam, no monochromator)."""
    return (1 + torch.cos(2 * theta) ** 2) / (torch.sin(theta) ** 2 * torch.cos(theta))


@dataclass(frozen=True)
class _Cell:
    """What the simulation needs of a structure: lattice, scatterers, and site types for the symmetry."""

    lattice: np.ndarray  # (3, 3) rows a, b, c in Å
    site_coords: np.ndarray  # (n_sites, 3) fractional
    site_types: np.ndarray  # (n_sites,) int, equal for sites with the same species and occupancy
    coords: np.ndarray  # (n_scatterers, 3) fractional; one per (site, species)
    occupancy: np.ndarray  # (n_scatterers,)
    element: np.ndarray  # (n_scatterers,) index into elements
    elements: tuple[str, ...]
    debye_waller: np.ndarray  # (n_elements,) B in Å²

    @classmethod
    def of(cls, structure: Structure, debye_waller: Mapping[str, float]) -> _Cell:
        lattice = np.array(structure.lattice.matrix, dtype=float)  # a writable copy for torch
        if len(structure) == 0:
            raise StructureError("the structure has no atoms")
        if not np.all(np.isfinite(lattice)):
            raise StructureError("the lattice has non-finite parameters")
        volume = abs(np.linalg.det(lattice))
        if volume < 1.0 or volume / len(structure) < 0.5:
            raise StructureError(f"the cell volume {volume:.3g} Å³ is too small for {len(structure)} sites")
        params = scattering_parameters()
        site_coords = np.asarray(structure.frac_coords, dtype=float)
        if not np.all(np.isfinite(site_coords)):
            raise StructureError("some fractional coordinates are not finite")
        unknown = sorted(set(debye_waller) - set(params))
        if unknown:
            raise ValueError(f"Debye-Waller factors given for unknown elements: {', '.join(unknown)}")
        compositions = [site.species for site in structure]
        if all(c.num_atoms == len(c) == 1 for c in compositions):  # ordered (pymatgen's test): no per-site work
            symbols = [getattr(sp, "symbol", str(sp)) for c in compositions for sp in c]
            missing = sorted(set(symbols) - set(params))
            if missing:
                raise StructureError(f"site {symbols.index(missing[0])}: no X-ray scattering factor for {missing[0]!r}")
            elements = tuple(dict.fromkeys(symbols))
            element = np.array([elements.index(e) for e in symbols]) if len(elements) > 1 else np.zeros(len(symbols), int)
            return cls(lattice, np.mod(site_coords, 1.0), element, site_coords, np.ones(len(symbols)), element,
                       elements, np.array([float(debye_waller.get(e, 0.0)) for e in elements]))
        coords, occupancy, symbols, type_keys = [], [], [], []
        for index, composition in enumerate(compositions):  # pymatgen guarantees occupancies sum to <= 1
            for species, occu in composition.items():
                symbol = getattr(species, "symbol", str(species))
                if symbol not in params:
                    raise StructureError(f"site {index}: no X-ray scattering factor for {symbol!r}")
                coords.append(site_coords[index])
                occupancy.append(float(occu))
                symbols.append(symbol)
            type_keys.append(tuple(sorted((str(sp), round(float(o), 4)) for sp, o in composition.items())))
        elements = tuple(dict.fromkeys(symbols))
        type_index = {key: i for i, key in enumerate(dict.fromkeys(type_keys))}
        return cls(lattice, np.mod(site_coords, 1.0), np.array([type_index[k] for k in type_keys]),
                   np.asarray(coords), np.asarray(occupancy), np.array([elements.index(s) for s in symbols]),
                   elements, np.array([float(debye_waller.get(e, 0.0)) for e in elements]))


def _reflections(lattices: torch.Tensor, reciprocal: torch.Tensor, g_min: float, g_max: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer (h, k, l) with g_min <= |g| <= g_max, where g = h a* + k b* + l c*, of every
    lattice, and the index of the lattice of each: only the first nonzero index positive, one
    of each Friedel pair h, −h (both are in every orbit of a Laue group).

    For every (h, k) the allowed l form an interval (a quadratic inequality in l), so the
    enumeration costs the number of (h, k) pairs plus the output, not a whole bounding box.
    """
    device = lattices.device
    bounds = torch.floor(g_max * torch.linalg.vector_norm(lattices, dim=2)).long()  # (B, 3)
    widths = 2 * bounds[:, 1] + 1
    sizes = (bounds[:, 0] + 1) * widths - bounds[:, 1]  # (h, k) with h >= 0, and k >= 0 where h = 0
    segment = torch.repeat_interleave(torch.arange(len(lattices), device=device), sizes)
    local = (torch.arange(len(segment), device=device)
             - (torch.cumsum(sizes, 0) - sizes - bounds[:, 1]).index_select(0, segment))
    width = widths.index_select(0, segment)
    h = torch.div(local, width, rounding_mode="floor")
    k = local % width - bounds[:, 1].index_select(0, segment)
    rows = reciprocal.index_select(0, segment)  # (n_hk, 3, 3)
    u = h[:, None] * rows[:, 0] + k[:, None] * rows[:, 1]  # (n_hk, 3)
    c = rows[:, 2]
    # |u + l c|² = uu + l b2 + l² a2 <= g_max²: an interval of l
    uu, a2, b2 = (u * u).sum(1), (c * c).sum(1), 2 * (u * c).sum(1)
    disc = b2 ** 2 - 4 * a2 * (uu - g_max ** 2)
    root = torch.sqrt(disc.clamp(min=0))
    lo = torch.ceil((-b2 - root) / (2 * a2) - 1e-9).long()
    lo = torch.where((h == 0) & (k == 0), lo.clamp(min=1), lo)
    hi = torch.floor((-b2 + root) / (2 * a2) + 1e-9).long()
    counts = torch.where(disc >= 0, (hi - lo + 1).clamp(min=0), torch.zeros_like(lo))
    pairs = torch.repeat_interleave(torch.arange(len(h), device=device), counts)
    l_values = (lo - torch.cumsum(counts, 0) + counts).index_select(0, pairs) + torch.arange(len(pairs), device=device)
    uu, a2, b2 = (t.index_select(0, pairs) for t in (uu, a2, b2))
    g2 = uu + l_values * b2 + l_values ** 2 * a2
    keep = torch.nonzero((g2 <= g_max ** 2) & (g2 >= g_min ** 2) & (g2 > 0)).flatten()
    pairs, l_values = pairs.index_select(0, keep), l_values.index_select(0, keep)
    hkl = torch.stack([h.index_select(0, pairs), k.index_select(0, pairs), l_values], 1)
    return hkl, segment.index_select(0, pairs)


def _times(vectors: torch.Tensor, matrices: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
    """Each row vector times the matrix of its structure: v_n M[segment_n]."""
    return torch.einsum("ni,nij->nj", vectors, matrices.index_select(0, segment))


def _is_small(cell: _Cell) -> bool:
    """Whether the cell takes the batched path (SMALL_CELL)."""
    return len(cell.coords) <= SMALL_CELL


def _symmetry(cells: Sequence[_Cell], symprec: float | None) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """The Laue group of each cell (point group with the inversion added, Friedel's law) on its own
    basis, and for large cells the translation t of an inversion x → −x + t if there is one (the
    shortcut of :func:`_inversion_pairs`; small cells take the exact sum, which costs little)."""
    small = [cell for cell in cells if _is_small(cell)]
    found = iter(_rotations(small, symprec) if symprec and small else [np.eye(3, dtype=int)[None]] * len(small))
    rotations, inversions = [], []
    for cell in cells:
        group, inversion = (next(found), None) if _is_small(cell) else _spglib_operations(cell, symprec)
        rotations.append(group)
        inversions.append(inversion)
    return _laue_groups(rotations), inversions


def _laue_groups(rotations: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each set of rotations with their negatives added (Friedel's law), sorted, all at once; or
    Friedel's law alone where that is not a group, for which orbits would be undefined.

    The set is ±P with P the proper rotations (R det R), a group if P is closed under
    multiplication. A matrix is coded as one integer, its nine entries as digits (entries beyond
    ±63, of a grotesquely skewed cell, would overflow the code: such a cell gets Friedel's law,
    which is always right); a product is in P if (set, rank of its code) is among the members'.
    """
    cells = len(rotations)
    owner = np.repeat(np.arange(cells), [len(r) for r in rotations])
    proper = np.concatenate(rotations).astype(np.int64)
    proper *= np.round(np.linalg.det(proper)).astype(np.int64)[:, None, None]
    owner, proper = _unique_per_owner(owner, proper, _matrix_codes(proper))
    a, b = _pairs_within(owner, owner, cells)
    products = proper[a] @ proper[b]
    code, product_code = _matrix_codes(proper), _matrix_codes(products)
    values = np.unique(code)
    rank = np.searchsorted(values, product_code).clip(max=len(values) - 1)
    keys = owner * len(values) + np.searchsorted(values, code)  # sorted, as owner and code are
    product_keys = owner[a] * len(values) + rank
    member = (np.abs(products).max((1, 2)) <= _SPAN) & (values[rank] == product_code)
    member &= keys[np.searchsorted(keys, product_keys).clip(max=len(keys) - 1)] == product_keys
    bad = np.bincount(owner[a][~member], minlength=cells) > 0
    bad |= np.bincount(owner, weights=np.abs(proper).max((1, 2)) > _SPAN, minlength=cells) > 0
    laue = np.concatenate([proper, -proper])
    owner, laue = _unique_per_owner(np.tile(owner, 2), laue, _matrix_codes(laue))
    friedel = np.stack([np.eye(3, dtype=np.int64), -np.eye(3, dtype=np.int64)])
    groups = np.split(laue, np.cumsum(np.bincount(owner, minlength=cells))[:-1])
    return [friedel if bad[i] else group for i, group in enumerate(groups)]


#: the largest |entry| of a rotation matrix that _matrix_codes tells apart
_SPAN = 63


def _matrix_codes(matrices: np.ndarray) -> np.ndarray:
    """One integer per 3 × 3 integer matrix, its entries (clipped to ±_SPAN) as digits, the first
    most significant: codes sort as the rows of entries do, and (2 _SPAN + 1)⁹ < 2⁶³."""
    digits = (2 * _SPAN + 1) ** np.arange(8, -1, -1, dtype=np.int64)
    return (matrices.reshape(len(matrices), 9).clip(-_SPAN, _SPAN) + _SPAN) @ digits


def _unique_per_owner(owner: np.ndarray, items: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct items of each owner (by code), ordered by owner and code."""
    order = np.lexsort((code, owner))
    owner, code = owner[order], code[order]
    new = np.ones(len(code), dtype=bool)
    new[1:] = (np.diff(owner) != 0) | (np.diff(code) != 0)
    return owner[new], items[order][new]


def _spglib_operations(cell: _Cell, symprec: float | None) -> tuple[np.ndarray, np.ndarray | None]:
    """spglib's symmetry rotations of the cell that keep the metric, and its inversion's translation."""
    spglib_cell = (cell.lattice, cell.site_coords, cell.site_types)
    symmetry = spglib.get_symmetry(spglib_cell, symprec=symprec) if symprec else None
    if symmetry is None:
        return np.eye(3, dtype=int)[None], None
    rotations = symmetry["rotations"]
    is_inversion = np.all(rotations == -np.eye(3, dtype=int), axis=(1, 2))
    inversion = symmetry["translations"][is_inversion.argmax()] if is_inversion.any() else None
    return rotations[_keeps_metric(rotations, cell.lattice[None], np.zeros(len(rotations), dtype=int))], inversion


def _rotations(cells: Sequence[_Cell], symprec: float) -> list[np.ndarray]:
    """The symmetry rotations of small cells, all searched at once, found as spglib finds them: R
    keeps the metric, and for some t, x → R x + t takes every site within ``symprec`` Å of a site
    of its own type. spglib also identifies and standardises the space group, which costs up to
    20 ms for a cubic cell, three times pymatgen's whole pattern.

    Only the Laue group ±R is wanted: the inversion is searched first, and a centrosymmetric
    cell then needs only its proper rotations (R and −R hold together there).
    """
    sites = _Sites.of(cells, symprec)
    rotations, owner = _lattice_automorphisms(sites.lattices)
    keep = _keeps_metric(rotations, sites.lattices, owner)
    rotations, owner = rotations[keep], owner[keep]
    inversion = np.all(rotations == -np.eye(3, dtype=int), axis=(1, 2))
    centric = np.zeros(len(cells), dtype=bool)
    centric[owner[inversion][sites.search(rotations[inversion], owner[inversion])]] = True
    keep = ~centric[owner] | (np.linalg.det(rotations) > 0)
    rotations, owner = rotations[keep], owner[keep]
    valid = sites.search(rotations, owner)
    return np.split(rotations[valid], np.cumsum(np.bincount(owner[valid], minlength=len(cells)))[:-1])


@dataclass(frozen=True)
class _Sites:
    """The sites of many small cells, concatenated (``cell``: whose each is), with what the
    symmetry search needs of them."""

    coords: np.ndarray  # (n, 3) fractional
    types: np.ndarray  # (n,) distinct between cells
    cell: np.ndarray  # (n,) sorted
    local: np.ndarray  # (n,) index within its cell
    anchor: np.ndarray  # (cells,) a site of each cell's rarest type
    lattices: np.ndarray  # (cells, 3, 3)
    keys: np.ndarray  # sorted search keys, see fit
    key_site: np.ndarray  # the site of each key
    reach: np.ndarray  # (cells,) how far the key of a site within symprec can be
    symprec: float

    #: a site's key is x·KEY mod 1: periodic, and spread even where sites share coordinates
    KEY = np.array([1.0, 7.0, 31.0])

    @classmethod
    def of(cls, cells: Sequence[_Cell], symprec: float) -> _Sites:
        sizes = np.array([len(c.site_coords) for c in cells])
        cell = np.repeat(np.arange(len(cells)), sizes)
        local = np.arange(len(cell)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        offsets = np.cumsum([0] + [int(c.site_types.max()) + 1 for c in cells[:-1]])
        types = np.concatenate([c.site_types + o for c, o in zip(cells, offsets)])
        coords = np.concatenate([c.site_coords for c in cells])
        count = np.bincount(types)[types]
        anchor = np.lexsort((local, count, cell))[np.cumsum(sizes) - sizes]  # first of its rarest type
        lattices = np.stack([c.lattice for c in cells])
        # each cell's keys, sorted, and a period down and up: [k - 1, k, k + 1], apart from other
        # cells' (+4 per cell); sorting by cell first keeps each cell's block in place, so a site's
        # rank among its cell's keys is ``local``
        order = np.lexsort((np.mod(coords @ cls.KEY, 1.0), cell))
        block = np.repeat(3 * (np.cumsum(sizes) - sizes), sizes)  # where each cell's keys start
        position = (block + local)[:, None] + sizes[cell][:, None] * np.arange(3)
        keys, key_site = np.empty(3 * len(cell)), np.empty(3 * len(cell), dtype=np.int64)
        keys[position] = (np.mod(coords[order] @ cls.KEY, 1.0) + 4 * cell)[:, None] + np.arange(-1, 2)
        key_site[position] = order[:, None]
        reach = symprec * np.linalg.norm(np.linalg.inv(lattices) @ cls.KEY, axis=1)
        return cls(coords, types, cell, local, anchor, lattices, keys, key_site, reach, symprec)

    def search(self, rotations: np.ndarray, owner: np.ndarray) -> np.ndarray:
        """Which rotations R of cell ``owner`` are symmetries: for some t, x → R x + t takes every
        site within symprec Å of a site of its own type.

        The candidate t take one site of the rarest type onto each site of that type; two other
        sites rule out most candidates, then every site is checked for the first candidate left
        of each rotation, and for its others only where that one fails (the others of a valid one
        differ by a pure translation, which adds nothing)."""
        turns = rotations.astype(float)
        target = np.flatnonzero(self.types == self.types[self.anchor[self.cell]])  # sorted by cell
        which, k = _pairs_within(owner, self.cell[target], len(self.lattices))  # candidate: rotation, target
        anchors = self.coords[self.anchor[owner[which]]]
        translations = self.coords[target[k]] - np.einsum("nij,nj->ni", turns[which], anchors)
        probes = (self.local < 3) & (np.arange(len(self.cell)) != self.anchor[self.cell])  # the anchor fits
        fits = self.fit(turns[which], translations, owner[which], probes)
        which, translations = which[fits], translations[fits]
        first = np.flatnonzero(np.diff(which, prepend=-1))
        fits = self.fit(turns[which[first]], translations[first], owner[which[first]], self.local >= 0)
        rest = np.isin(which, which[first[~fits]])
        rest[first] = False
        rest = np.flatnonzero(rest)
        rest = rest[self.fit(turns[which[rest]], translations[rest], owner[which[rest]], self.local >= 0)]
        valid = np.zeros(len(rotations), dtype=bool)
        valid[which[first[fits]]] = valid[which[rest]] = True
        return valid

    def fit(self, rotations: np.ndarray, translations: np.ndarray, owner: np.ndarray, sites: np.ndarray
            ) -> np.ndarray:
        """For each operation x → R x + t of cell ``owner``, whether it takes every one of that
        cell's ``sites`` (a mask over all sites) within symprec Å of a site of the same type
        (fractional differences wrapped to the nearest lattice point, as spglib does).

        Only few sites are compared with each image: a site within symprec has its key within
        symprec |a* + 7 b* + 31 c*|, and those are found by bisection among the sorted keys."""
        chosen = np.flatnonzero(sites)
        operation, k = _pairs_within(owner, self.cell[chosen], len(self.lattices))
        site, cell = chosen[k], owner[operation]
        images = np.einsum("nij,nj->ni", rotations[operation], self.coords[site]) + translations[operation]
        keys = np.mod(images @ self.KEY, 1.0) + 4 * cell
        low = np.searchsorted(self.keys, keys - self.reach[cell])
        counts = np.searchsorted(self.keys, keys + self.reach[cell], side="right") - low
        image = np.repeat(np.arange(len(keys)), counts)
        other = self.key_site[low[image] + np.arange(len(image)) - np.repeat(np.cumsum(counts) - counts, counts)]
        delta = images[image] - self.coords[other]
        delta = np.einsum("ni,nij->nj", delta - np.round(delta), self.lattices[cell[image]])
        distance2 = np.einsum("ni,ni->n", delta, delta)
        near = (distance2 <= self.symprec ** 2) & (self.types[other] == self.types[site[image]])
        matched = np.zeros(len(keys), dtype=bool)
        matched[image[near]] = True
        return np.bincount(operation[~matched], minlength=len(rotations)) == 0


def _pairs_within(first: np.ndarray, second: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j) with first[i] == second[j], for group labels sorted in both: the cartesian
    products of many small groups at once, ordered by i."""
    count = np.bincount(second, minlength=groups)
    repeat = count[first]
    i = np.repeat(np.arange(len(first)), repeat)
    j = (np.cumsum(count) - count)[first[i]] + np.arange(len(i)) - np.repeat(np.cumsum(repeat) - repeat, repeat)
    return i, j


def _lattice_automorphisms(lattices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The integer matrices R whose columns are lattice vectors with the lengths and mutual angles
    of a, b, c (R^T G R = G for the metric G), and the lattice of each: every rotation that can
    map a lattice onto itself.

    The tolerance, 1e-6 of the trace of G, is a hundred times looser than :func:`_keeps_metric`,
    which decides; a vector of length r has coordinates |n_i| <= r |a*_i|, which bounds the search.
    """
    metric = lattices @ lattices.transpose(0, 2, 1)
    tolerance = 1e-6 * np.trace(metric, axis1=1, axis2=2)
    radius = np.sqrt(metric.diagonal(axis1=1, axis2=2).max(1) + tolerance)
    widths = 2 * np.floor(radius[:, None] * np.linalg.norm(np.linalg.inv(lattices), axis=1)).astype(int) + 1
    sizes = widths.prod(1)
    owner = np.repeat(np.arange(len(lattices)), sizes)
    local = np.arange(len(owner)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    w = widths[owner]
    grid = np.stack([local // (w[:, 1] * w[:, 2]), local // w[:, 2] % w[:, 1], local % w[:, 2]], 1) - w // 2
    lengths = np.einsum("ni,nij,nj->n", grid, metric[owner], grid)
    (ca, a), (cb, b), (cc, c) = ((owner[found], grid[found]) for found in (
        np.flatnonzero(np.abs(lengths - metric[owner, j, j]) <= tolerance[owner]) for j in range(3)))

    def angle(u: np.ndarray, v: np.ndarray, cell: np.ndarray, i: int, j: int) -> np.ndarray:
        return np.abs(np.einsum("ni,nij,nj->n", u, metric[cell], v) - metric[cell, i, j]) <= tolerance[cell]

    i, j = _pairs_within(ca, cb, len(lattices))
    keep = angle(a[i], b[j], ca[i], 0, 1)
    i, j = i[keep], j[keep]
    p, k = _pairs_within(ca[i], cc, len(lattices))
    i, j, cell = i[p], j[p], cc[k]
    keep = angle(a[i], c[k], cell, 0, 2) & angle(b[j], c[k], cell, 1, 2)
    return np.stack([a[i], b[j], c[k]], axis=2)[keep], cell[keep]


def _keeps_metric(rotations: np.ndarray, lattices: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Which rotations keep the reciprocal metric G* of their lattice (``lattices[owner]``) to 1e-8.

    A symmetry search accepts a cell that is symmetric within its tolerance; reflections h and
    h R have the same 2θ only if R keeps G*: the worst relative change of g² over all directions
    is at most ||R G* Rᵀ - G*|| / λmin(G*) (Frobenius norm), kept far below the 1e-5° merge
    tolerance."""
    reciprocal_metrics = np.linalg.inv(lattices @ lattices.transpose(0, 2, 1))
    scale = np.linalg.eigvalsh(reciprocal_metrics)[:, 0]
    change = rotations @ reciprocal_metrics[owner] @ rotations.transpose(0, 2, 1) - reciprocal_metrics[owner]
    return np.sqrt((change ** 2).sum((1, 2))) < 1e-8 * scale[owner]


def _inversion_pairs(cell: _Cell, translation: np.ndarray) -> _Cell | None:
    """The scatterers of a centrosymmetric structure with the origin on its inversion centre,
    one of each pair x, −x kept with double weight: F(h) = Σ 2 f cos(2π h·x) is then real, which
    needs a quarter of the work of the general sum. ``None`` if some scatterer has no partner."""
    from scipy.spatial import cKDTree

    shifted = np.mod(cell.coords - translation / 2, 1.0)
    shifted[shifted >= 1.0] = 0.0
    mirrored = np.mod(-shifted, 1.0)
    mirrored[mirrored >= 1.0] = 0.0
    distance, partner = cKDTree(shifted, boxsize=1.0).query(mirrored)
    same = (cell.element[partner] == cell.element) & np.isclose(cell.occupancy[partner], cell.occupancy)
    if not np.all(same & (distance < 1e-3)):
        return None
    keep = np.arange(len(shifted)) <= partner
    weight = np.where(partner[keep] == np.arange(len(shifted))[keep], 1.0, 2.0)
    return replace(cell, coords=shifted[keep], occupancy=cell.occupancy[keep] * weight, element=cell.element[keep])


def _proper_rotations(groups: Sequence[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The proper rotations (det +1: one of each R, −R) of each Laue group as one (B, R, 3, 3)
    float64 tensor, zero-padded, and how many each group has."""
    positive = np.split(np.linalg.det(np.concatenate(groups)) > 0, np.cumsum([len(g) for g in groups])[:-1])
    proper = [group[keep] for group, keep in zip(groups, positive)]
    padded = np.zeros((len(groups), max(len(p) for p in proper), 3, 3))
    for i, rotations in enumerate(proper):
        padded[i, :len(rotations)] = rotations
    return torch.as_tensor(padded, device=device), torch.as_tensor([len(p) for p in proper], device=device)


def _orbit_representatives(hkl: torch.Tensor, segment: torch.Tensor, laue: Sequence[np.ndarray]
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One reflection per symmetry orbit (the largest code), its structure and the orbit sizes,
    ordered by structure and code, from one reflection of each Friedel pair (half of every orbit).

    A reflection's code is h·c with c = (base², base, 1), so the code of its image h R is
    h·(R c): the codes of all images of a reflection are one product with its structure's R c,
    for the proper rotations R only, as −h R has code −(h·R c). Structures with equally many
    rotations are done together; adding segment × base³ keeps their codes apart. Reflections
    come ordered by structure and code (as :func:`_reflections` enumerates them), so the
    representatives are found in order and each reflection's by bisection, with no sort.
    """
    if not len(hkl):
        return hkl, segment, torch.zeros_like(segment)
    base = 2 * int(hkl.abs().max()) + 3
    weights = torch.tensor([base * base, base, 1], dtype=torch.float64, device=hkl.device)
    rotations, sizes = _proper_rotations(laue, hkl.device)
    image_weights = rotations @ weights  # (B, n_ops, 3): code of h R is h · (R c)
    indices = hkl.double()
    codes = indices @ weights
    best = torch.empty_like(codes)
    n_ops = sizes.index_select(0, segment)
    for size in torch.unique(sizes).tolist():
        for rows in torch.nonzero(n_ops == size).flatten().split(max(1, _CHUNK_ELEMENTS // size)):
            images = torch.einsum("nk,nrk->nr", indices.index_select(0, rows),
                                  image_weights[:, :size].index_select(0, segment.index_select(0, rows)))
            best.index_copy_(0, rows, images.abs().amax(1))
    offset = segment.double() * base ** 3
    representatives = torch.nonzero(codes == best).flatten()
    keys = (codes + offset).index_select(0, representatives)
    orbit = torch.searchsorted(keys, best + offset).clamp(max=len(keys) - 1)
    if not torch.equal(keys.index_select(0, orbit), best + offset):
        raise RuntimeError("symmetry orbits leave the reflection sphere: the lattice is inconsistent")
    counts = torch.bincount(orbit, minlength=len(keys))
    return hkl.index_select(0, representatives), segment.index_select(0, representatives), 2 * counts


@cache
def _element_table() -> tuple[dict[str, int], np.ndarray, np.ndarray, np.ndarray]:
    """Row of each element, and Z and the (a, b) parameters of every element by row, padded with
    zero terms (which add nothing)."""
    params = scattering_parameters()
    names = sorted(params)
    a = np.zeros((len(names), max(len(p) for p in params.values())))
    b = np.zeros_like(a)
    for i, name in enumerate(names):
        a[i, :len(params[name])], b[i, :len(params[name])] = params[name][:, 0], params[name][:, 1]
    return {name: i for i, name in enumerate(names)}, np.array([atomic_number(n) for n in names], float), a, b


def _form_factors(rows: torch.Tensor, debye_waller: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """f(s) exp(-B s²) of the elements of table ``rows`` (any shape) at s² (broadcast against it)."""
    z, a, b = (torch.as_tensor(t, device=rows.device).index_select(0, rows.flatten()) for t in _element_table()[1:])
    z, a, b = z.view(rows.shape), a.view(*rows.shape, -1), b.view(*rows.shape, -1)
    form = z - 41.78214 * s2 * (a * torch.exp(-b * s2[..., None])).sum(-1)
    return form * torch.exp(-debye_waller * s2)


def _structure_factors_squared(cells: Sequence[_Cell], inversions: Sequence[np.ndarray | None],
                               hkl: torch.Tensor, segment: torch.Tensor, s2: torch.Tensor,
                               device: torch.device) -> torch.Tensor:
    """|F|² of each reflection with its own structure's scatterers: summed over (reflection,
    scatterer) pairs for all small cells together, as matrix products for each large one, moved
    onto its inversion centre where it has one (:func:`_inversion_pairs`)."""
    small = torch.as_tensor([_is_small(cell) for cell in cells], device=device)
    out = torch.empty(len(hkl), dtype=torch.float64, device=device)
    rows = torch.nonzero(small.index_select(0, segment)).flatten()
    if len(rows):
        out.index_copy_(0, rows, _pair_structure_factors_squared(
            cells, *(t.index_select(0, rows) for t in (hkl, segment, s2)), device))
    ends = torch.searchsorted(segment, torch.arange(1, len(cells) + 1, device=device)).tolist()
    for i in torch.nonzero(~small).flatten().tolist():  # reflections are ordered by structure
        part = slice(ends[i - 1] if i else 0, ends[i])
        centric = _inversion_pairs(cells[i], inversions[i]) if inversions[i] is not None else None
        out[part] = _structure_factor_squared(centric or cells[i], hkl[part], s2[part], device,
                                              real=centric is not None)
    return out


def _pair_structure_factors_squared(cells: Sequence[_Cell], hkl: torch.Tensor, segment: torch.Tensor,
                                    s2: torch.Tensor, device: torch.device) -> torch.Tensor:
    """|F(hkl)|² of reflections of small cells (their ``segment``), all at once: each reflection is
    paired with every scatterer of its structure, and the pairs' terms are summed per reflection."""
    index = _element_table()[0]
    n = torch.as_tensor([len(c.coords) for c in cells], device=device)
    # per scatterer, as rows for gathering: 2π x, 2π y, 2π z, occupancy, element within its cell
    atoms = torch.as_tensor(np.vstack([2 * math.pi * np.concatenate([c.coords for c in cells]).T,
                                       np.concatenate([c.occupancy for c in cells]),
                                       np.concatenate([c.element for c in cells])]), device=device)
    width = max(len(c.elements) for c in cells)
    rows, debye_waller = np.zeros((len(cells), width), dtype=np.int64), np.zeros((len(cells), width))
    for i, cell in enumerate(cells):
        rows[i, :len(cell.elements)] = [index[e] for e in cell.elements]
        debye_waller[i, :len(cell.elements)] = cell.debye_waller
    rows, debye_waller = torch.as_tensor(rows, device=device), torch.as_tensor(debye_waller, device=device)

    out = torch.empty(len(hkl), dtype=torch.float64, device=device)
    step = _CHUNK_ELEMENTS // SMALL_CELL  # every reflection has at most SMALL_CELL pairs
    for start in range(0, len(hkl), step):
        chunk = slice(start, start + step)
        seg = segment[chunk]
        form = _form_factors(rows.index_select(0, seg), debye_waller.index_select(0, seg), s2[chunk, None])
        counts = n.index_select(0, seg)
        pair = torch.repeat_interleave(torch.arange(len(seg), device=device), counts)
        atom = (torch.cumsum(n, 0) - n).index_select(0, seg) - (torch.cumsum(counts, 0) - counts)  # 1st atom - 1st pair
        atom = atom.index_select(0, pair) + torch.arange(len(pair), device=device)
        # one index_select per row: several times faster on CPU than indexing with a tensor
        x, y, z, occupancy, element = (row.index_select(0, atom) for row in atoms)
        h = [row.index_select(0, pair) for row in hkl[chunk].double().T.contiguous()]
        phase = torch.addcmul(torch.addcmul(h[0] * x, h[1], y), h[2], z)
        weight = occupancy * form.take(pair * width + element.long())
        f_cos = torch.zeros(len(seg), dtype=torch.float64, device=device).index_add_(0, pair, weight * torch.cos(phase))
        f_sin = torch.zeros_like(f_cos).index_add_(0, pair, weight * torch.sin(phase))
        out[chunk] = f_cos ** 2 + f_sin ** 2
    return out


def _structure_factor_squared(cell: _Cell, hkl: torch.Tensor, s2: torch.Tensor, device: torch.device,
                              real: bool = False) -> torch.Tensor:
    """|F(hkl)|² of one structure, chunked over reflections: per element, Σ occupancy·exp(2πi h·x)
    as matrix products; ``real`` (origin on an inversion centre) skips the sine part, which cancels."""
    # phases in float32: |h| < ~100 keeps the error of h·2πx below 1e-4 rad, and float32
    # matmul + cos/sin is several times faster than reducing phases in float64
    coords = torch.as_tensor(2 * math.pi * cell.coords.T, dtype=torch.float32, device=device)  # (3, n)
    weights = torch.zeros(len(cell.coords), len(cell.elements), dtype=torch.float32, device=device)
    weights[torch.arange(len(cell.coords)), torch.as_tensor(cell.element)] = torch.as_tensor(
        cell.occupancy, dtype=torch.float32)
    index = _element_table()[0]
    rows = torch.as_tensor([index[e] for e in cell.elements], device=device)
    debye_waller = torch.as_tensor(cell.debye_waller, device=device)

    out = torch.empty(len(hkl), dtype=torch.float64, device=device)
    step = max(1, _CHUNK_ELEMENTS // len(cell.coords))
    for start in range(0, len(hkl), step):
        chunk = slice(start, start + step)
        phase = hkl[chunk].float() @ coords
        form = _form_factors(rows, debye_waller, s2[chunk, None])  # (chunk, n_elements)
        out[chunk] = (form * (torch.cos(phase) @ weights).double()).sum(1) ** 2
        if not real:
            out[chunk] += (form * (torch.sin(phase) @ weights).double()).sum(1) ** 2
    return out


def _merge(two_theta: torch.Tensor, d: torch.Tensor, intensity: torch.Tensor, hkl: torch.Tensor,
           multiplicity: torch.Tensor, segment: torch.Tensor, lam: float, cells: Sequence[_Cell],
           laue: Sequence[np.ndarray]) -> list[PeakList]:
    """Per structure, merge reflections closer than TWO_THETA_TOL, scale to max 100, drop the
    negligible.

    A new peak starts wherever sorted 2θ jumps by more than the tolerance; fixed bins (as in
    pymatgen) would split two reflections 1e-9° apart that happen to straddle a bin edge."""
    device = two_theta.device
    by_angle = torch.argsort(two_theta, stable=True)
    order = by_angle.index_select(0, torch.argsort(segment.index_select(0, by_angle), stable=True))
    two_theta, d, intensity, hkl, multiplicity, segment = (
        t.index_select(0, order) for t in (two_theta, d, intensity, hkl, multiplicity, segment))
    starts = torch.ones(len(two_theta), dtype=torch.bool, device=device)
    starts[1:] = (torch.diff(two_theta) > TWO_THETA_TOL) | (torch.diff(segment) != 0)
    group = torch.cumsum(starts.long(), 0) - 1
    n = int(group[-1]) + 1 if len(group) else 0
    total = torch.zeros(n, dtype=intensity.dtype, device=device).index_add_(0, group, intensity)
    count = torch.zeros(n, dtype=multiplicity.dtype, device=device).index_add_(0, group, multiplicity)
    first = torch.nonzero(starts).flatten()
    # the strongest family names the peak; of families equal to 1e-4 (the float32 phases of large
    # cells are good to ~1e-5), the largest hkl, so that the name does not depend on rounding
    strongest = torch.zeros(n, dtype=intensity.dtype, device=device).scatter_reduce_(
        0, group, intensity, "amax", include_self=False)
    base = 2 * int(hkl.abs().max()) + 3 if len(hkl) else 1
    code = hkl.double() @ torch.tensor([base * base, base, 1], dtype=torch.float64, device=device)
    code[intensity < strongest.index_select(0, group) * (1 - 1e-4)] = -math.inf
    best = torch.full((n,), -math.inf, dtype=code.dtype, device=device).scatter_reduce_(0, group, code, "amax")
    named = torch.nonzero(code == best.index_select(0, group)).flatten()  # one per group: hkl differ in one
    peak_segment = segment.index_select(0, first)
    scale = torch.zeros(len(cells), dtype=total.dtype, device=device).scatter_reduce_(
        0, peak_segment, total, "amax", include_self=True).index_select(0, peak_segment)
    relative = 100 * total / scale
    keep = torch.nonzero((scale > 0) & (relative > MIN_RELATIVE_INTENSITY)).flatten()
    ends = np.cumsum(torch.bincount(peak_segment.index_select(0, keep), minlength=len(cells)).tolist())[:-1]
    columns = [np.split(t.index_select(0, keep).cpu().numpy(), ends) for t in (
        two_theta.index_select(0, first), d.index_select(0, first), relative, hkl.index_select(0, named).long(),
        count.long())]
    return [PeakList(*arrays, lam, cell.lattice, rotations)
            for *arrays, cell, rotations in zip(*columns, cells, laue)]
