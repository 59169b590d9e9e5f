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
(reflection, scatterer) pairs of the whole batch. Large cells use the same symmetry search
(spglib takes 15 s for a 20,000-atom cell, this 0.7 s), and per structure the cheaper of two sums
(by a cost model): sines and cosines of every (reflection, atom) pair as matrix products, or the
separable sum: exp(2πi h·x) = e(hx) e(ky) e(lz), so each slab of equal h is one complex matrix
product with no transcendental per pair (20 times cheaper per term). Centrosymmetric cells take a
real structure factor over half the atoms. Arrays are torch tensors on the requested device
(numpy for the symmetry).

Bounded cost: before the work, a structure whose reflections in the range (memory; they follow
from the cell volume, the 2θ range and the wavelength) or symmetry-distinct reflections ×
scatterers (time) exceed ``max_reflections`` / ``max_cost`` is refused with the estimate, the
limit and the argument that raises it (:class:`CostLimitError`); :func:`estimate_cost` gives the
estimate without the work. A 20,000-atom P1 cell of 80 Å (1.7e10 terms) takes a few seconds on 2
cores (benchmarks/large_cell.py).
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

from xrdcore.crystal.spacegroups import MATRIX_CODE_SPAN, matrix_codes
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


#: the default bounds of one structure's simulation (:func:`peak_lists` refuses above them, before
#: the work, with the estimate, the limit and the argument that raises it): reflections bound the
#: memory (about REFLECTION_BYTES each: 10 million is about 6 GB), reflection × scatterer terms
#: the time (1e11 terms: about 25 s on 2 cores; a 20,000-atom P1 cell of 80 Å has 1.7e10)
DEFAULT_MAX_REFLECTIONS = 10_000_000
DEFAULT_MAX_COST = 1e11
#: peak memory per reflection (one of each Friedel pair in the 2θ range), measured
REFLECTION_BYTES = 600
#: a progress bar is shown (when asked for) for a structure estimated to take longer than this, seconds
PROGRESS_SECONDS = 5.0


class StructureError(ValueError):
    """A structure that cannot be simulated; the message says what is wrong with it."""


class CostLimitError(StructureError):
    """A structure whose simulation would exceed a limit; the message gives the estimate, the limit
    and the argument that raises it."""


@dataclass(frozen=True)
class Cost:
    """What simulating one structure costs, known before the work from its cell volume, scatterers,
    the 2θ range and the wavelength: the ``reflections`` are the reciprocal-lattice points in the
    range, one of each Friedel pair ((4π/3)(g_max³ − g_min³) V / 2, g = 2 sin θ / λ); ``terms``
    are reflections × scatterers, the structure factors' work before symmetry reduces it."""

    reflections: int
    scatterers: int

    @property
    def terms(self) -> float:
        return float(self.reflections) * self.scatterers

    @property
    def bytes(self) -> int:
        return self.reflections * REFLECTION_BYTES

    @property
    def seconds(self) -> float:
        """Wall time on the 2-core CPU of benchmarks/large_cell.py, no symmetry assumed: the
        per-reflection steps plus the separable structure factors (a box ~1.3 × the terms)."""
        return self.reflections * _REFLECTION_SECONDS + 1.3 * self.terms * _SEPARABLE_SECONDS


def estimate_cost(structure: Structure, *, wavelength: str | float = "CuKa1",
                  two_theta_range: tuple[float, float] = (DEFAULT_GRID.start, DEFAULT_GRID.stop)) -> Cost:
    """The :class:`Cost` of simulating ``structure`` over ``two_theta_range`` (no work done)."""
    lam = parse_wavelength(wavelength)
    low, high = check_two_theta_range(two_theta_range)
    volume = abs(float(np.linalg.det(np.asarray(structure.lattice.matrix, dtype=float))))
    scatterers = sum(len(site.species) for site in structure)
    return _cost(volume, scatterers, lam, low, high)


def _cost(volume: float, scatterers: int, lam: float, low: float, high: float) -> Cost:
    g_min, g_max = (2 * math.sin(math.radians(t / 2)) / lam for t in (low, high))
    return Cost(int(round(2 * math.pi / 3 * (g_max ** 3 - g_min ** 3) * volume)), int(scatterers))


def _human(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


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
              device: str | torch.device | None = None, max_reflections: int | None = DEFAULT_MAX_REFLECTIONS,
              max_cost: float | None = DEFAULT_MAX_COST, progress: bool = False) -> PeakList:
    """Kinematic powder peaks of ``structure``.

    ``wavelength``: a line name (``"CuKa1"``) or Å. ``two_theta_range``: degrees.
    ``debye_waller``: element → B in Å². ``symprec``: tolerance (Å) of the symmetry used to
    merge equivalent reflections; ``None`` uses Friedel's law only (the result is the same,
    slower on CPU). ``device``: where the tensors live. ``max_reflections`` (memory) and
    ``max_cost`` (symmetry-distinct reflections × scatterers: time) bound the work: above them
    :class:`CostLimitError` is raised before it starts (``None``: no bound). ``progress``: a bar
    on standard error for a structure estimated to take more than PROGRESS_SECONDS.
    """
    return peak_lists([structure], wavelength=wavelength, two_theta_range=two_theta_range,
                      debye_waller=debye_waller, symprec=symprec, device=device, max_reflections=max_reflections,
                      max_cost=max_cost, progress=progress)[0]


def peak_lists(structures: Sequence[Structure], *, wavelength: str | float = "CuKa1",
               two_theta_range: tuple[float, float] = (DEFAULT_GRID.start, DEFAULT_GRID.stop),
               debye_waller: Mapping[str, float] | None = None, symprec: float | None = 1e-3,
               device: str | torch.device | None = None, max_reflections: int | None = DEFAULT_MAX_REFLECTIONS,
               max_cost: float | None = DEFAULT_MAX_COST, progress: bool = False) -> list[PeakList]:
    """:func:`peak_list` of each structure, all in one call: many times faster for small cells,
    whose cost is otherwise mostly per call, as every step after reading the structures runs
    once for the batch (reflections carry the index of their structure, ``segment``). The
    settings are those of :func:`peak_list`, the bounds apply to each structure; a structure
    that cannot be simulated raises :class:`StructureError`, naming its position in a batch of
    several.
    """
    lam = parse_wavelength(wavelength)
    low, high = check_two_theta_range(two_theta_range)
    device = torch.device(device or "cpu")
    cells, costs = [], []

    def named(index: int, exc: StructureError) -> StructureError:
        return type(exc)(f"structure {index}: {exc}") if len(structures) > 1 else exc

    for index, structure in enumerate(structures):
        try:
            cells.append(_Cell.of(structure, debye_waller or {}))
            costs.append(_check_reflections(cells[-1], lam, low, high, max_reflections, max_cost))
        except StructureError as exc:
            raise named(index, exc) from None
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
    distinct = torch.bincount(segment, minlength=len(cells)).tolist()
    for index, (cell, count) in enumerate(zip(cells, distinct)):
        try:
            _check_cost(cell, count, max_cost)
        except StructureError as exc:
            raise named(index, exc) from None
    bar = _progress_bar(cells, costs) if progress else None
    try:
        f_squared = _structure_factors_squared(cells, inversions, reps, segment, (g / 2) ** 2, device,
                                               None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()
    intensity = f_squared * lorentz_polarisation(theta) * multiplicity
    return _merge(torch.rad2deg(2 * theta), 1 / g, intensity, reps, multiplicity, segment, lam, cells, laue)


def lorentz_polarisation(theta: torch.Tensor) -> torch.Tensor:
    """(1 + cos² 2θ) / (sin² θ cos θ), θ in radians (unpolarised beam, no monochromator)."""
    return (1 + torch.cos(2 * theta) ** 2) / (torch.sin(theta) ** 2 * torch.cos(theta))


def _check_reflections(cell: _Cell, lam: float, low: float, high: float, limit: int | None,
                       max_cost: float | None) -> Cost:
    """Refuse, before any work, a cell whose reflections in the range would not fit the memory
    bound, or whose structure factors would exceed the time bound even with the most symmetry
    (the Laue group m-3m: 48 reflections per orbit, 24 per Friedel half); else its :class:`Cost`."""
    volume = abs(np.linalg.det(cell.lattice))
    cost = _cost(volume, len(cell.coords), lam, low, high)
    if limit is not None and cost.reflections > limit:
        raise CostLimitError(
            f"about {cost.reflections:,} reflections between {low:g} and {high:g}° 2θ (cell volume "
            f"{volume:,.0f} Å³, wavelength {lam:.4f} Å) need about {cost.bytes / 2**30:.1f} GiB, above the "
            f"limit of {limit:,.0f} reflections; raise it with --max-reflections (Python: max_reflections=), "
            f"or narrow the 2θ range")
    _check_cost(cell, math.ceil(cost.reflections / 24), max_cost, without_symmetry=cost.reflections)
    return cost


def _check_cost(cell: _Cell, distinct: int, limit: float | None, without_symmetry: int | None = None) -> None:
    """Refuse a cell whose symmetry-distinct reflections × scatterers exceed the time bound
    (``without_symmetry``: before the symmetry is known, ``distinct`` is the fewest it can have,
    and this the most)."""
    cost = Cost(distinct, len(cell.coords))
    if limit is not None and cost.terms > limit:
        count = (f"at least {distinct:,} (with the most symmetry; {without_symmetry:,} with none)"
                 if without_symmetry is not None else f"{distinct:,}")
        duration = f" (about {_human(cost.seconds)} on 2 cores)" if without_symmetry is None else ""
        raise CostLimitError(
            f"{count} symmetry-distinct reflections × {len(cell.coords):,} scatterers = {cost.terms:.3g} "
            f"structure-factor terms{duration}, above the limit of {limit:.3g}; raise it with --max-cost "
            f"(Python: max_cost=), or narrow the 2θ range")


def _progress_bar(cells: Sequence[_Cell], costs: Sequence[Cost]):
    """A tqdm bar over the large cells' atoms, if their structure factors are estimated (``costs``,
    one per cell) to take longer than PROGRESS_SECONDS; else None."""
    large = [(cell, cost) for cell, cost in zip(cells, costs) if not _is_small(cell)]
    seconds = sum(cost.seconds for _, cost in large)
    if seconds < PROGRESS_SECONDS:
        return None
    from tqdm import tqdm

    terms = sum(cost.terms for _, cost in large)
    return _Bar(tqdm(total=sum(len(cell.coords) for cell, _ in large), unit="atom", smoothing=0.1,
                     desc=f"structure factors ({terms:.2g} terms, about {_human(seconds)})"))


class _Bar:
    """A tqdm bar fed shares of atoms: it moves by whole atoms."""

    def __init__(self, bar):
        self.bar, self.done = bar, 0.0

    def update(self, atoms: float) -> None:
        before, self.done = self.done, self.done + atoms
        if int(self.done) > int(before):
            self.bar.update(int(self.done) - int(before))

    def close(self) -> None:
        if self.bar.total - self.bar.n <= 1:  # the shares' rounding
            self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()


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
    if not symprec:
        return _laue_groups([np.eye(3, dtype=int)[None]] * len(cells)), [None] * len(cells)
    rotations, inversions = _symmetry_search(cells, symprec)
    return _laue_groups(rotations), [None if _is_small(c) else t for c, t in zip(cells, inversions)]


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
    owner, proper = _unique_per_owner(owner, proper, matrix_codes(proper))
    a, b = _pairs_within(owner, owner, cells)
    products = proper[a] @ proper[b]
    code, product_code = matrix_codes(proper), matrix_codes(products)
    values = np.unique(code)
    rank = np.searchsorted(values, product_code).clip(max=len(values) - 1)
    keys = owner * len(values) + np.searchsorted(values, code)  # sorted, as owner and code are
    product_keys = owner[a] * len(values) + rank
    member = (np.abs(products).max((1, 2)) <= MATRIX_CODE_SPAN) & (values[rank] == product_code)
    member &= keys[np.searchsorted(keys, product_keys).clip(max=len(keys) - 1)] == product_keys
    bad = np.bincount(owner[a][~member], minlength=cells) > 0
    bad |= np.bincount(owner, weights=np.abs(proper).max((1, 2)) > MATRIX_CODE_SPAN, minlength=cells) > 0
    laue = np.concatenate([proper, -proper])
    owner, laue = _unique_per_owner(np.tile(owner, 2), laue, matrix_codes(laue))
    friedel = np.stack([np.eye(3, dtype=np.int64), -np.eye(3, dtype=np.int64)])
    groups = np.split(laue, np.cumsum(np.bincount(owner, minlength=cells))[:-1])
    return [friedel if bad[i] else group for i, group in enumerate(groups)]


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
    """The symmetry rotations of each cell (:func:`_symmetry_search`)."""
    return _symmetry_search(cells, symprec)[0]


def _symmetry_search(cells: Sequence[_Cell], symprec: float) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """The symmetry rotations of cells, all searched at once, found as spglib finds them: R keeps
    the metric, and for some t, x → R x + t takes every site within ``symprec`` Å of a site of its
    own type; and the translation of each cell's inversion x → −x + t (None if it has none).
    spglib also identifies and standardises the space group, which costs up to 20 ms for a cubic
    cell, three times pymatgen's whole pattern, and 15 s for a 20,000-atom cell (this: 0.7 s).

    Only the Laue group ±R is wanted: the inversion is searched first, and a centrosymmetric
    cell then needs only its proper rotations (R and −R hold together there).
    """
    sites = _Sites.of(cells, symprec)
    rotations, owner = _lattice_automorphisms(sites.lattices)
    keep = _keeps_metric(rotations, sites.lattices, owner)
    rotations, owner = rotations[keep], owner[keep]
    inversion = np.all(rotations == -np.eye(3, dtype=int), axis=(1, 2))
    found, shifts = sites.search(rotations[inversion], owner[inversion])
    centric = np.zeros(len(cells), dtype=bool)
    centric[owner[inversion][found]] = True
    translations: list[np.ndarray | None] = [None] * len(cells)
    for cell, shift in zip(owner[inversion][found].tolist(), shifts[found]):
        translations[cell] = shift
    keep = ~centric[owner] | (np.linalg.det(rotations) > 0)
    rotations, owner = rotations[keep], owner[keep]
    valid = sites.search(rotations, owner)[0]
    groups = np.split(rotations[valid], np.cumsum(np.bincount(owner[valid], minlength=len(cells)))[:-1])
    return groups, translations


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

    def search(self, rotations: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which rotations R of cell ``owner`` are symmetries: for some t, x → R x + t takes every
        site within symprec Å of a site of its own type; and such a t for each (NaN if none).

        The candidate t take one site of the rarest type onto each site of that type; a few other
        sites (two, and in large cells about six more spread over the cell) rule out most candidates,
        then every site is checked for the first candidate left of each rotation, and for its
        others only where that one fails (the others of a valid one differ by a pure translation,
        which adds nothing), a batch of about _CHUNK_ELEMENTS site images at a time."""
        turns = rotations.astype(float)
        target = np.flatnonzero(self.types == self.types[self.anchor[self.cell]])  # sorted by cell
        which, k = _pairs_within(owner, self.cell[target], len(self.lattices))  # candidate: rotation, target
        anchors = self.coords[self.anchor[owner[which]]]
        translations = self.coords[target[k]] - np.einsum("nij,nj->ni", turns[which], anchors)
        sizes = np.bincount(self.cell, minlength=len(self.lattices))
        stride = np.where(sizes > SMALL_CELL, np.maximum(1, sizes // 6), len(self.cell) + 1)
        probes = (self.local < 3) | (self.local % stride[self.cell] == 0)
        probes &= np.arange(len(self.cell)) != self.anchor[self.cell]  # the anchor fits
        fits = self.fit(turns[which], translations, owner[which], probes)
        which, translations = which[fits], translations[fits]
        first = np.flatnonzero(np.diff(which, prepend=-1))
        fits = self.fit(turns[which[first]], translations[first], owner[which[first]], self.local >= 0)
        valid = np.zeros(len(rotations), dtype=bool)
        shift = np.full((len(rotations), 3), np.nan)
        valid[which[first[fits]]], shift[which[first[fits]]] = True, translations[first[fits]]
        pending = np.isin(which, which[first[~fits]])
        pending[first] = False
        pending = np.flatnonzero(pending)
        while len(pending):
            pending = pending[~valid[which[pending]]]
            head = pending[:max(1, int(np.searchsorted(np.cumsum(sizes[owner[which[pending]]]), _CHUNK_ELEMENTS)))]
            ok = head[self.fit(turns[which[head]], translations[head], owner[which[head]], self.local >= 0)]
            valid[which[ok]], shift[which[ok]] = True, translations[ok]
            pending = pending[len(head):]
        return valid, shift

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
                               device: torch.device, progress=None) -> torch.Tensor:
    """|F|² of each reflection with its own structure's scatterers: summed over (reflection,
    scatterer) pairs for all small cells together, and for each large one by the faster of two
    sums (:func:`_separable_is_faster`), moved onto its inversion centre where it has one
    (:func:`_inversion_pairs`). ``progress`` is called with the number of a large cell's atoms done."""
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
        cell = centric or cells[i]
        atoms = len(cells[i].coords)
        report = None if progress is None else lambda share, n=atoms: progress(n * share)
        slabs = _slab_boxes(hkl[part])
        if _separable_is_faster(cell, hkl[part], slabs):
            out[part] = _separable_structure_factor_squared(cell, hkl[part], s2[part], device,
                                                            real=centric is not None, progress=report, slabs=slabs)
        else:
            out[part] = _structure_factor_squared(cell, hkl[part], s2[part], device, real=centric is not None,
                                                  progress=report)
    return out


#: seconds per (reflection, scatterer) term of the direct sum (a sine and a cosine each), per box
#: term of the separable one (a complex multiply-add), per (slab, element, atom block) of the
#: separable one (its Python loop), and per reflection of every other step, on the 2-core CPU of
#: benchmarks/large_cell.py: what chooses the sum, and the estimates of messages and progress bars
_DIRECT_SECONDS, _SEPARABLE_SECONDS, _SLAB_SECONDS, _REFLECTION_SECONDS = 7e-9, 1.5e-10, 1e-4, 1.5e-6


def _separable_is_faster(cell: _Cell, hkl: torch.Tensor, slabs=None) -> bool:
    """Whether the cost model prefers the separable sum for these reflections of a large cell
    (``slabs``: their :func:`_slab_boxes`, if already found)."""
    _, ends, box = _slab_boxes(hkl) if slabs is None else slabs
    separable = (_separable_cost(hkl, len(cell.coords), box) * _SEPARABLE_SECONDS
                 + len(ends) * len(cell.elements) * _SLAB_SECONDS)
    return separable < len(hkl) * len(cell.coords) * _DIRECT_SECONDS


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
                              real: bool = False, progress=None) -> torch.Tensor:
    """|F(hkl)|² of one structure, chunked over reflections: per element, Σ occupancy·exp(2πi h·x)
    as matrix products; ``real`` (origin on an inversion centre) skips the sine part, which cancels.
    ``progress`` is called with the share of the work each chunk was."""
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
        if progress is not None:
            progress(len(phase) / len(hkl))
    return out


def _slab_boxes(hkl: torch.Tensor) -> tuple[list[int], list[int], torch.Tensor]:
    """The slabs of equal h of reflections ordered by h (as orbit representatives are): where each
    starts and ends, and the (k_min, k_max, l_min, l_max) of each as an (S, 4) tensor."""
    h, k, l = hkl.long().T
    _, counts = torch.unique_consecutive(h, return_counts=True)
    slab = torch.repeat_interleave(torch.arange(len(counts), device=hkl.device), counts)
    box = torch.stack([torch.zeros(len(counts), dtype=torch.long, device=hkl.device).scatter_reduce(
        0, slab, v, reduce, include_self=False) for v in (k, l) for reduce in ("amin", "amax")], 1)
    ends = torch.cumsum(counts, 0).tolist()
    return [0] + ends[:-1], ends, box


def _separable_cost(hkl: torch.Tensor, scatterers: int, box: torch.Tensor | None = None) -> float:
    """(reflection, scatterer) terms that :func:`_separable_structure_factor_squared` evaluates:
    each slab's (k, l) box (``box``: from :func:`_slab_boxes`, if already found) times the scatterers."""
    if not len(hkl):
        return 0.0
    box = (_slab_boxes(hkl)[2] if box is None else box).double()
    return float(((box[:, 1] - box[:, 0] + 1) * (box[:, 3] - box[:, 2] + 1)).sum()) * scatterers


def _phases(indices: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """exp(2πi n x) for every index n (rows) and coordinate x (columns), complex64, computed in
    float64 (|n x| reaches a few hundred radians)."""
    angle = (2 * math.pi) * indices.double()[:, None] * coords[None, :]
    return torch.polar(torch.ones_like(angle), angle).to(torch.complex64)


def _separable_structure_factor_squared(cell: _Cell, hkl: torch.Tensor, s2: torch.Tensor, device: torch.device,
                                        real: bool = False, progress=None, slabs=None) -> torch.Tensor:
    """|F|² of one structure's reflections (ordered by h) by slabs of equal h: exp(2πi h·x) is
    e(hx) e(ky) e(lz), so the structure factors of each slab's (k, l) box are one complex matrix
    product (k × atoms)(atoms × l) per element: about a twentieth of the cost per (reflection,
    atom) term of the sines and cosines of :func:`_structure_factor_squared`, at the price of the
    box's corners. Atoms go in blocks, to bound memory; ``real`` (origin on an inversion centre)
    takes the real part only. ``progress`` is called with the share of the work each slab was;
    ``slabs``: the reflections' :func:`_slab_boxes`, if already found."""
    out = torch.zeros(len(hkl), dtype=torch.float64, device=device)
    if not len(hkl):
        return out
    starts, ends, box = _slab_boxes(hkl) if slabs is None else slabs
    box_rows = box.tolist()
    h_values = hkl[torch.as_tensor(starts, device=device), 0]
    k, l = hkl[:, 1].long(), hkl[:, 2].long()
    k_min, k_max, l_min, l_max = int(box[:, 0].min()), int(box[:, 1].max()), int(box[:, 2].min()), int(box[:, 3].max())
    ks, ls = torch.arange(k_min, k_max + 1, device=device), torch.arange(l_min, l_max + 1, device=device)
    index = _element_table()[0]
    rows = torch.as_tensor([index[e] for e in cell.elements], device=device)
    debye_waller = torch.as_tensor(cell.debye_waller, device=device)
    step = max(1, _CHUNK_ELEMENTS // (len(rows) * _element_table()[2].shape[1]))
    form = torch.cat([_form_factors(rows, debye_waller, s2[i:i + step, None])  # (n, elements)
                      for i in range(0, len(s2), step)])
    f_real = torch.zeros(len(hkl), dtype=torch.float64, device=device)
    f_imag = torch.zeros_like(f_real)
    coords = torch.as_tensor(cell.coords, dtype=torch.float64, device=device)
    occupancy = torch.as_tensor(cell.occupancy, dtype=torch.float64, device=device)
    element = torch.as_tensor(cell.element, device=device)
    block = max(1, _CHUNK_ELEMENTS // max(len(ks), len(ls)))
    for e in range(len(cell.elements)):
        atoms = torch.nonzero(element == e).flatten()
        for begin in range(0, len(atoms), block):
            chosen = atoms[begin:begin + block]
            x, y, z = coords.index_select(0, chosen).T
            along_k = _phases(ks, y)  # (K, atoms)
            along_l = _phases(ls, z).T.contiguous()  # (atoms, L)
            weighted = _phases(h_values, x) * occupancy.index_select(0, chosen).to(torch.complex64)  # (S, atoms)
            for s, (start, end, (k0, k1, l0, l1)) in enumerate(zip(starts, ends, box_rows)):
                rows_k = along_k[k0 - k_min:k1 - k_min + 1] * weighted[s]
                columns = along_l[:, l0 - l_min:l1 - l_min + 1]
                if real:
                    grid = torch.cat([rows_k.real, rows_k.imag], 1) @ torch.cat([columns.real, -columns.imag], 0)
                else:
                    grid = rows_k @ columns
                values = grid[k[start:end] - k0, l[start:end] - l0]
                f_real[start:end] += form[start:end, e] * values.real.double()
                if not real:
                    f_imag[start:end] += form[start:end, e] * values.imag.double()
                if progress is not None:
                    progress(len(chosen) / len(cell.coords) / len(starts))
    return f_real ** 2 + f_imag ** 2


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
