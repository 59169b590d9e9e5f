"""Kinematic powder X-ray diffraction: the peak list of a crystal structure, in torch.

The physics is pymatgen's ``XRDCalculator`` (and is tested against it): every reciprocal-lattice
point inside the 2θ range, atomic scattering factors ``f(s) = Z - 41.78214 s² Σ aᵢ exp(-bᵢ s²)``
from pymatgen's own parameter table, site occupancies, optional Debye–Waller factors
``exp(-B s²)``, the Lorentz–polarisation factor ``(1 + cos² 2θ) / (sin² θ cos θ)``, reflections
closer than 1e-5° in 2θ merged, intensities scaled to a maximum of 100.

What makes it fast: reflections related by the structure's Laue symmetry (from spglib, which
includes Friedel's law) have equal |F| and 2θ, so the structure factor is computed once per
orbit and weighted by the orbit size; it is evaluated as two matrix products over chunks of
reflections, with no Python loop over reflections or atoms. All arrays are torch tensors on
the requested device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import spglib
import torch

from xrdcore.diffraction.radiation import check_two_theta_range
from xrdcore.diffraction.radiation import wavelength as parse_wavelength
from xrdcore.diffraction.scattering import atomic_number, scattering_parameters

if TYPE_CHECKING:
    from pymatgen.core import Structure

#: reflections whose 2θ differ by less than this (degrees) are one peak, as in pymatgen
TWO_THETA_TOL = 1e-5
#: peaks weaker than this on the max-100 scale are dropped, as in pymatgen
MIN_RELATIVE_INTENSITY = 1e-3
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
              two_theta_range: tuple[float, float] = (5.0, 90.0),
              debye_waller: Mapping[str, float] | None = None, symprec: float | None = 1e-3,
              device: str | torch.device | None = None) -> PeakList:
    """Kinematic powder peaks of ``structure``.

    ``wavelength``: a line name (``"CuKa1"``) or Å. ``two_theta_range``: degrees.
    ``debye_waller``: element → B in Å². ``symprec``: spglib tolerance (Å) for the symmetry used
    to merge equivalent reflections; ``None`` uses Friedel's law only (the result is the same,
    slower on CPU). ``device``: where the tensors live.
    """
    lam = parse_wavelength(wavelength)
    low, high = check_two_theta_range(two_theta_range)
    device = torch.device(device or "cpu")
    cell = _Cell.of(structure, debye_waller or {})
    g_min, g_max = (2 * math.sin(math.radians(t / 2)) / lam for t in (low, high))

    rotations, inversion = _symmetry(cell, symprec)
    rotations = torch.as_tensor(rotations, dtype=torch.float64, device=device)
    # symmetric reflections agree in |g| only to rounding: enumerate a slightly wider shell so
    # that every orbit is whole, then keep the orbits inside the exact range
    hkl = _reflections(cell.lattice, g_min * (1 - 1e-6), g_max * (1 + 1e-6), device)
    reps, multiplicity = _orbit_representatives(hkl, rotations) if len(hkl) else (hkl, hkl[:, 0])
    reciprocal = torch.linalg.inv(torch.as_tensor(cell.lattice, device=device)).T
    g = torch.linalg.vector_norm(reps.double() @ reciprocal, dim=1)
    inside = (g >= g_min) & (g <= g_max)
    reps, multiplicity, g = reps[inside], multiplicity[inside], g[inside]
    if len(reps) == 0:
        return _empty(lam, cell.lattice, rotations)
    sin_theta = (lam * g / 2).clamp(max=1.0)
    theta = torch.asin(sin_theta)
    centric = _inversion_pairs(cell, inversion) if inversion is not None else None
    f_squared = _structure_factor_squared(centric or cell, reps, (g / 2) ** 2, device, real=centric is not None)
    intensity = f_squared * lorentz_polarisation(theta) * multiplicity
    return _merge(torch.rad2deg(2 * theta), 1 / g, intensity, reps, multiplicity, lam, cell.lattice, rotations)


def lorentz_polarisation(theta: torch.Tensor) -> torch.Tensor:
    """(1 + cos² 2θ) / (sin² θ cos θ), θ in radians (unpolarised beam, no monochromator)."""
    return (1 + torch.cos(2 * theta) ** 2) / (torch.sin(theta) ** 2 * torch.cos(theta))


@dataclass(frozen=True)
class _Cell:
    """What the simulation needs of a structure: lattice, scatterers, and site types for spglib."""

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
        if structure.is_ordered:  # one species per site: no per-site Python work
            symbols = [getattr(sp, "symbol", str(sp)) for sp in structure.species]
            missing = sorted(set(symbols) - set(params))
            if missing:
                raise StructureError(f"site {symbols.index(missing[0])}: no X-ray scattering factor for {missing[0]!r}")
            elements = tuple(dict.fromkeys(symbols))
            element = np.array([elements.index(e) for e in symbols]) if len(elements) > 1 else np.zeros(len(symbols), int)
            return cls(lattice, np.mod(site_coords, 1.0), element, site_coords, np.ones(len(symbols)), element,
                       elements, np.array([float(debye_waller.get(e, 0.0)) for e in elements]))
        coords, occupancy, symbols, type_keys = [], [], [], []
        for index, site in enumerate(structure):  # pymatgen guarantees occupancies sum to <= 1
            for species, occu in site.species.items():
                symbol = getattr(species, "symbol", str(species))
                if symbol not in params:
                    raise StructureError(f"site {index}: no X-ray scattering factor for {symbol!r}")
                coords.append(site_coords[index])
                occupancy.append(float(occu))
                symbols.append(symbol)
            type_keys.append(tuple(sorted((str(sp), round(float(o), 4)) for sp, o in site.species.items())))
        elements = tuple(dict.fromkeys(symbols))
        type_index = {key: i for i, key in enumerate(dict.fromkeys(type_keys))}
        return cls(lattice, np.mod(site_coords, 1.0), np.array([type_index[k] for k in type_keys]),
                   np.asarray(coords), np.asarray(occupancy), np.array([elements.index(s) for s in symbols]),
                   elements, np.array([float(debye_waller.get(e, 0.0)) for e in elements]))


def _reflections(lattice: np.ndarray, g_min: float, g_max: float, device: torch.device) -> torch.Tensor:
    """All integer (h, k, l) with g_min <= |g| <= g_max, where g = h a* + k b* + l c*.

    For every (h, k) the allowed l form an interval (a quadratic inequality in l), so the
    enumeration costs the number of (h, k) pairs plus the output, not a whole bounding box.
    """
    reciprocal = torch.linalg.inv(torch.as_tensor(lattice, dtype=torch.float64, device=device)).T
    bounds = torch.floor(g_max * torch.linalg.vector_norm(torch.as_tensor(lattice, device=device), dim=1)).long()
    h_max, k_max = int(bounds[0]), int(bounds[1])
    h, k = torch.meshgrid(torch.arange(-h_max, h_max + 1, device=device),
                          torch.arange(-k_max, k_max + 1, device=device), indexing="ij")
    h, k = h.reshape(-1), k.reshape(-1)
    u = h[:, None] * reciprocal[0] + k[:, None] * reciprocal[1]  # (n_hk, 3)
    c = reciprocal[2]
    a2, b2 = c @ c, 2 * (u @ c)
    c2 = (u * u).sum(1) - g_max ** 2
    disc = b2 ** 2 - 4 * a2 * c2
    ok = disc >= 0
    root = torch.sqrt(disc.clamp(min=0))
    lo = torch.ceil((-b2 - root) / (2 * a2) - 1e-9).long()
    hi = torch.floor((-b2 + root) / (2 * a2) + 1e-9).long()
    counts = torch.where(ok, (hi - lo + 1).clamp(min=0), torch.zeros_like(lo))
    rows = torch.repeat_interleave(torch.arange(len(h), device=device), counts)
    starts = torch.cumsum(counts, 0) - counts
    l_values = lo[rows] + torch.arange(len(rows), device=device) - starts[rows]
    hkl = torch.stack([h[rows], k[rows], l_values], 1)
    g2 = ((hkl.double() @ reciprocal) ** 2).sum(1)
    keep = (g2 <= g_max ** 2) & (g2 >= g_min ** 2) & (g2 > 0)
    return hkl[keep]


def _symmetry(cell: _Cell, symprec: float | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The Laue group (point group with the inversion added, Friedel's law) on the structure's own
    basis, and the translation t of an inversion x → −x + t if the structure has one."""
    rotations, inversion = np.eye(3, dtype=int)[None], None
    if symprec:
        symmetry = spglib.get_symmetry((cell.lattice, cell.site_coords, cell.site_types), symprec=symprec)
        if symmetry is not None:
            rotations = symmetry["rotations"]
            is_inversion = np.all(rotations == -np.eye(3, dtype=int), axis=(1, 2))
            if is_inversion.any():
                inversion = symmetry["translations"][is_inversion.argmax()]
        # spglib accepts a cell that is symmetric within symprec; reflections h and h R have the
        # same 2θ only if R keeps the reciprocal metric G*: the worst relative change of g² over
        # all directions is ||R G* Rᵀ - G*|| / λmin(G*), kept far below the 1e-5° merge tolerance
        reciprocal_metric = np.linalg.inv(cell.lattice @ cell.lattice.T)
        change = np.einsum("rij,jk,rlk->ril", rotations, reciprocal_metric, rotations) - reciprocal_metric
        worst = np.linalg.norm(change, ord=2, axis=(1, 2)) / np.linalg.eigvalsh(reciprocal_metric)[0]
        rotations = rotations[worst < 1e-8]
    laue = np.unique(np.concatenate([rotations, -rotations]).reshape(-1, 9), axis=0).reshape(-1, 3, 3)
    if not _is_group(laue):  # orbits are only defined for a group: fall back to Friedel's law
        laue = np.stack([np.eye(3, dtype=int), -np.eye(3, dtype=int)])
    return laue, inversion


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


def _is_group(rotations: np.ndarray) -> bool:
    """Whether a set of integer matrices is closed under multiplication."""
    members = {r.tobytes() for r in rotations.astype(np.int64)}
    products = np.einsum("aij,bjk->abik", rotations, rotations).reshape(-1, 3, 3).astype(np.int64)
    return all(p.tobytes() in members for p in products)


def _orbit_representatives(hkl: torch.Tensor, rotations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One reflection per symmetry orbit (the largest code) and the orbit sizes.

    A reflection's code is h·c + offset with c = (base², base, 1), so the code of its image h R
    is h·(R c) + offset: the codes of all images of all reflections are one matrix product.
    """
    span = int(hkl.abs().max()) + 1
    base = 2 * span + 1
    weights = torch.tensor([base * base, base, 1], dtype=torch.float64, device=hkl.device)
    image_weights = rotations @ weights  # (n_ops, 3): code of h R is h · (R c)
    codes = hkl.double() @ weights
    best = torch.empty_like(codes)
    step = max(1, _CHUNK_ELEMENTS // len(rotations))
    for start in range(0, len(hkl), step):
        best[start:start + step] = (hkl[start:start + step].double() @ image_weights.T).amax(1)
    keys, counts = torch.unique(best, return_counts=True)  # sorted
    is_rep = codes == best
    rep_codes, order = torch.sort(codes[is_rep])
    if len(rep_codes) != len(keys) or not torch.equal(rep_codes, keys):
        raise RuntimeError("symmetry orbits leave the reflection sphere: the lattice is inconsistent")
    return hkl[is_rep][order], counts


def _structure_factor_squared(cell: _Cell, hkl: torch.Tensor, s2: torch.Tensor, device: torch.device,
                              real: bool = False) -> torch.Tensor:
    """|F(hkl)|², chunked over reflections: per element, Σ occupancy·exp(2πi h·x) as matrix
    products; ``real`` (origin on an inversion centre) skips the sine part, which cancels."""
    # phases in float32: |h| < ~100 keeps the error of h·2πx below 1e-4 rad, and float32
    # matmul + cos/sin is several times faster than reducing phases in float64
    coords = torch.as_tensor(2 * math.pi * cell.coords.T, dtype=torch.float32, device=device)  # (3, n)
    weights = torch.zeros(len(cell.coords), len(cell.elements), dtype=torch.float32, device=device)
    weights[torch.arange(len(cell.coords)), torch.as_tensor(cell.element)] = torch.as_tensor(
        cell.occupancy, dtype=torch.float32)
    params = scattering_parameters()
    z = torch.tensor([atomic_number(e) for e in cell.elements], dtype=torch.float64, device=device)
    width = max(len(params[e]) for e in cell.elements)
    a = torch.zeros(len(cell.elements), width, dtype=torch.float64, device=device)
    b = torch.zeros_like(a)
    for i, element in enumerate(cell.elements):
        a[i, :len(params[element])] = torch.as_tensor(params[element][:, 0])
        b[i, :len(params[element])] = torch.as_tensor(params[element][:, 1])
    debye_waller = torch.as_tensor(cell.debye_waller, device=device)

    out = torch.empty(len(hkl), dtype=torch.float64, device=device)
    step = max(1, _CHUNK_ELEMENTS // len(cell.coords))
    for start in range(0, len(hkl), step):
        rows = slice(start, start + step)
        phase = hkl[rows].float() @ coords
        cos_part = (torch.cos(phase) @ weights).double()  # (chunk, n_elements)
        s2_rows = s2[rows, None]
        form = z - 41.78214 * s2_rows * (a * torch.exp(-b * s2_rows[..., None])).sum(-1)
        form = form * torch.exp(-debye_waller * s2_rows)
        out[rows] = (form * cos_part).sum(1) ** 2
        if not real:
            out[rows] += (form * (torch.sin(phase) @ weights).double()).sum(1) ** 2
    return out


def _merge(two_theta: torch.Tensor, d: torch.Tensor, intensity: torch.Tensor, hkl: torch.Tensor,
           multiplicity: torch.Tensor, lam: float, lattice: np.ndarray, rotations: torch.Tensor) -> PeakList:
    """Merge reflections closer than TWO_THETA_TOL, scale to max 100, drop the negligible.

    A new peak starts wherever sorted 2θ jumps by more than the tolerance; fixed bins (as in
    pymatgen) would split two reflections 1e-9° apart that happen to straddle a bin edge."""
    order = torch.argsort(two_theta)
    two_theta, d, intensity, hkl, multiplicity = (t[order] for t in (two_theta, d, intensity, hkl, multiplicity))
    gap = torch.diff(two_theta) > TWO_THETA_TOL
    group = torch.cat([torch.zeros(1, dtype=torch.long, device=gap.device), torch.cumsum(gap.long(), 0)])
    n = int(group[-1]) + 1
    total = torch.zeros(n, dtype=intensity.dtype, device=intensity.device).index_add_(0, group, intensity)
    count = torch.zeros(n, dtype=multiplicity.dtype, device=multiplicity.device).index_add_(0, group, multiplicity)
    first = torch.zeros(n, dtype=torch.long, device=group.device).scatter_reduce_(
        0, group, torch.arange(len(group), device=group.device), "amin", include_self=False)
    # the strongest member names the peak: position of the max intensity within each group
    strongest = torch.full((n,), -1.0, dtype=intensity.dtype, device=intensity.device).scatter_reduce_(
        0, group, intensity, "amax", include_self=True)
    is_strongest = intensity == strongest[group]
    named = torch.full((n,), len(group), dtype=torch.long, device=group.device).scatter_reduce_(
        0, group[is_strongest], torch.arange(len(group), device=group.device)[is_strongest], "amin",
        include_self=True)
    if float(total.max()) <= 0:
        return _empty(lam, lattice, rotations)
    relative = 100 * total / total.max()
    keep = relative > MIN_RELATIVE_INTENSITY
    as_numpy = lambda t: t[keep].cpu().numpy()  # noqa: E731
    return PeakList(as_numpy(two_theta[first]), as_numpy(d[first]), as_numpy(relative),
                    as_numpy(hkl[named]).astype(int), as_numpy(count).astype(int), lam, lattice,
                    rotations.round().long().cpu().numpy())


def _empty(lam: float, lattice: np.ndarray, rotations: torch.Tensor) -> PeakList:
    empty = np.zeros(0)
    return PeakList(empty, empty, empty, np.zeros((0, 3), dtype=int), np.zeros(0, dtype=int), lam, lattice,
                    rotations.round().long().cpu().numpy())
