"""The 230 space-group types and their symmetry superclasses, derived from spglib's database.

Nothing here is typed in by hand: every property comes from the symmetry operations spglib
stores for the standard setting of each type (the first Hall number of each type: unique axis b,
cell choice 1, origin choice 1, hexagonal axes for rhombohedral groups). The only definitions
written out are the ones crystallography itself defines: the centring vectors of each lattice
letter and the symbols of the crystal families.
"""

from __future__ import annotations

import difflib
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import numpy as np
import spglib

N_SPACE_GROUPS = 230
#: half-width of the hkl cube over which systematic absences are enumerated; every reflection
#: condition of the 230 types repeats with a period of at most 6 along any index.
ABSENCE_HKL_RANGE = 6

#: centring vectors (fractions of the conventional cell) that define each lattice letter
CENTRING_VECTORS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "P": (),
    "A": ((0, 0.5, 0.5),),
    "B": ((0.5, 0, 0.5),),
    "C": ((0.5, 0.5, 0),),
    "I": ((0.5, 0.5, 0.5),),
    "F": ((0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)),
    "R": ((2 / 3, 1 / 3, 1 / 3), (1 / 3, 2 / 3, 2 / 3)),  # obverse, hexagonal axes
}
#: first letter of the Bravais-lattice (Pearson) symbol for each lattice system
_FAMILY_LETTER = {
    "triclinic": "a", "monoclinic": "m", "orthorhombic": "o", "tetragonal": "t",
    "hexagonal": "h", "rhombohedral": "h", "cubic": "c",
}


#: the largest |entry| of a rotation matrix that matrix_codes tells apart
MATRIX_CODE_SPAN = 63


def matrix_codes(matrices: np.ndarray) -> np.ndarray:
    """One integer per 3 × 3 integer matrix, its entries (clipped to ±MATRIX_CODE_SPAN) as digits,
    the first most significant: codes sort as the rows of entries do, and (2 span + 1)⁹ < 2⁶³."""
    span = MATRIX_CODE_SPAN
    digits = (2 * span + 1) ** np.arange(8, -1, -1, dtype=np.int64)
    return (matrices.reshape(len(matrices), 9).clip(-span, span) + span) @ digits


@dataclass(frozen=True)
class SpaceGroup:
    """One space-group type with every superclass it belongs to.

    ``bravais`` uses the Pearson-symbol convention (``mC``, ``oC`` for side-centred lattices,
    written ``mS``, ``oS`` in the International Tables since 2002).
    """

    number: int
    symbol: str  # short Hermann–Mauguin symbol as spglib writes it, e.g. "P2_1/c"
    full_symbol: str
    schoenflies: str
    hall_number: int
    crystal_system: str
    lattice_system: str
    centring: str
    bravais: str
    point_group: str
    laue_class: str
    arithmetic_class: str
    extinction_class: str  # symbols of every type with the same absences, ", "-joined

    @property
    def extinction_class_any_setting(self) -> str:
        """The extinction class merged over every setting of each type (computed on first use:
        it compares 530 settings, which most callers never need)."""
        return _setting_free_names()[self.number]


@dataclass(frozen=True)
class Operations:
    """Symmetry operations x' = R x + t of a type's standard setting, fractional coordinates."""

    rotations: np.ndarray  # (n, 3, 3) int
    translations: np.ndarray  # (n, 3) float, reduced to [0, 1)


@contextmanager
def _quiet_spglib():
    """spglib >= 2.5 warns about its error-handling mode on every call; the database calls
    here cannot fail, and flipping spglib's global switch would change it for user code."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="spglib")
        yield


@cache
def _settings() -> tuple:
    """spglib's description of each of the 530 settings in its database, index ``hall - 1``."""
    with _quiet_spglib():
        return tuple(spglib.get_spacegroup_type(hall) for hall in range(1, 531))


@cache
def standard_hall_numbers() -> tuple[int, ...]:
    """Hall number of the standard setting of each type 1–230 (spglib's default choice)."""
    first: dict[int, int] = {}
    for hall, sgtype in enumerate(_settings(), start=1):
        first.setdefault(sgtype.number, hall)
    return tuple(first[n] for n in range(1, N_SPACE_GROUPS + 1))


@cache
def operations(number: int) -> Operations:
    """The general-position operations of type ``number`` in its standard setting."""
    with _quiet_spglib():
        ops = spglib.get_symmetry_from_database(standard_hall_numbers()[number - 1])
    return Operations(ops["rotations"].astype(int), np.mod(ops["translations"], 1.0))


def rotation_type_counts(rotations: np.ndarray) -> tuple[int, ...]:
    """How many distinct rotations of each kind (1, 2, 3, 4, 6, -1, m, -3, -4, -6) a set holds.

    These counts identify each of the 32 crystallographic point groups whatever the basis.
    """
    unique = np.unique(rotations.reshape(len(rotations), 9), axis=0).reshape(-1, 3, 3)
    det = np.rint(np.linalg.det(unique)).astype(int)
    trace = np.trace(unique, axis1=1, axis2=2) * det  # trace of the proper part ±R
    kinds = [(d, t) for d in (1, -1) for t in (3, -1, 0, 1, 2)]
    return tuple(int(np.sum((det == d) & (trace == t))) for d, t in kinds)


def crystal_system_of(rotations: np.ndarray) -> str:
    """Crystal system from the orders of the proper parts of the point-group operations."""
    n1, n2, n3, n4, n6, i1, i2, i3, i4, i6 = rotation_type_counts(rotations)
    # proper parts: 2-folds come from 2 and m, 3-folds from 3 and -3, and so on
    twofold, threefold, fourfold, sixfold = n2 + i2, n3 + i3, n4 + i4, n6 + i6
    if threefold >= 8:
        return "cubic"
    if sixfold:
        return "hexagonal"
    if threefold:
        return "trigonal"
    if fourfold:
        return "tetragonal"
    if twofold >= 3:
        return "orthorhombic"
    if twofold:
        return "monoclinic"
    return "triclinic"


def centring_of(ops: Operations) -> str:
    """Lattice letter from the pure translations (identity rotation) among the operations."""
    identity = np.all(ops.rotations == np.eye(3, dtype=int), axis=(1, 2))
    vectors = {tuple(np.round(t, 6)) for t in ops.translations[identity] if np.any(t > 1e-6)}
    for letter, defined in CENTRING_VECTORS.items():
        if vectors == {tuple(np.round(v, 6)) for v in defined}:
            return letter
    raise ValueError(f"centring vectors {sorted(vectors)} match no lattice letter")


def absent_reflections(ops: Operations, hkl_range: int = ABSENCE_HKL_RANGE) -> np.ndarray:
    """Boolean mask over :func:`hkl_grid` of reflections absent for the general position.

    A reflection h is systematically absent when some operation (R, t) fixes it (h R = h) while
    its phase h·t is not an integer; the structure factor of any orbit then cancels in pairs.
    """
    hkl = hkl_grid(hkl_range).astype(float)
    shifting = np.any(np.abs(ops.translations) > 1e-6, axis=1)  # only these can extinguish
    ops = Operations(ops.rotations[shifting], ops.translations[shifting])
    if not len(ops.rotations):
        return np.zeros(len(hkl), dtype=bool)
    distinct, which = np.unique(ops.rotations.reshape(-1, 9), axis=0, return_inverse=True)
    moved = hkl @ (distinct.reshape(-1, 3, 3) - np.eye(3))  # (n_distinct, m, 3): h R - h
    fixed = np.all(moved == 0, axis=2)[which.ravel()]  # (n_ops, m)
    phase = ops.translations @ hkl.T  # (n_ops, m)
    shifted = np.abs(phase - np.rint(phase)) > 1e-6
    return np.any(fixed & shifted, axis=0)


@cache
def hkl_grid(hkl_range: int = ABSENCE_HKL_RANGE) -> np.ndarray:
    """All integer (h, k, l) with |h|, |k|, |l| <= hkl_range except (0, 0, 0)."""
    axis = np.arange(-hkl_range, hkl_range + 1)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    return grid[np.any(grid != 0, axis=1)]


def extinction_keys(hkl_range: int = ABSENCE_HKL_RANGE) -> list[tuple[str, bytes]]:
    """(lattice system, packed absence mask) for each type 1–230; equal keys share a class."""
    keys = []
    for number in range(1, N_SPACE_GROUPS + 1):
        ops = operations(number)
        mask = absent_reflections(ops, hkl_range)
        keys.append((lattice_system_of(number), np.packbits(mask).tobytes()))
    return keys


def setting_free_extinction_groups(hkl_range: int = ABSENCE_HKL_RANGE) -> list[list[int]]:
    """Types whose absences coincide in *some* settings, merged transitively.

    A powder pattern does not say which cell axis is a, b or c (nor which monoclinic cell
    choice was taken), so two types whose absences agree after relabelling the axes give the
    same peak positions. Every setting in spglib's database except rhombohedral axes is
    compared, within one lattice system.
    """
    parent = list(range(N_SPACE_GROUPS + 1))

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    first_with: dict[tuple[str, bytes], int] = {}
    for hall, sgtype in enumerate(_settings(), start=1):
        if sgtype.choice == "R":
            continue
        with _quiet_spglib():
            ops = spglib.get_symmetry_from_database(hall)
        setting = Operations(ops["rotations"].astype(int), np.mod(ops["translations"], 1.0))
        key = (lattice_system_of(sgtype.number),
               np.packbits(absent_reflections(setting, hkl_range)).tobytes())
        other = first_with.setdefault(key, sgtype.number)
        parent[root(sgtype.number)] = root(other)
    groups: dict[int, list[int]] = {}
    for number in range(1, N_SPACE_GROUPS + 1):
        groups.setdefault(root(number), []).append(number)
    return list(groups.values())


@cache
def lattice_system_of(number: int) -> str:
    """The crystal system, with trigonal split by lattice into rhombohedral and hexagonal."""
    ops = operations(number)
    system = crystal_system_of(ops.rotations)
    if system == "trigonal":
        return "rhombohedral" if centring_of(ops) == "R" else "hexagonal"
    return system


@cache
def space_groups() -> tuple[SpaceGroup, ...]:
    """All 230 types, index ``n - 1`` holding type ``n``."""
    types = [_settings()[h - 1] for h in standard_hall_numbers()]
    keys = extinction_keys()
    members: dict[tuple[str, bytes], list[str]] = {}
    for sgtype, key in zip(types, keys):
        members.setdefault(key, []).append(sgtype.international_short)
    # the Laue class is the point group with the inversion added, named as that point group
    point_group_names = {rotation_type_counts(operations(n).rotations): t.pointgroup_international
                         for n, t in enumerate(types, start=1)}
    table = []
    for number, (sgtype, key) in enumerate(zip(types, keys), start=1):
        ops = operations(number)
        lattice_system, centring = key[0], centring_of(ops)
        centrosymmetric = np.concatenate([ops.rotations, -ops.rotations])
        table.append(SpaceGroup(
            number=number,
            symbol=sgtype.international_short,
            full_symbol=sgtype.international_full,
            schoenflies=sgtype.schoenflies,
            hall_number=sgtype.hall_number,
            crystal_system=crystal_system_of(ops.rotations),
            lattice_system=lattice_system,
            centring=centring,
            bravais=_FAMILY_LETTER[lattice_system] + ("C" if centring in "ABC" else centring),
            point_group=sgtype.pointgroup_international,
            laue_class=point_group_names[rotation_type_counts(centrosymmetric)],
            arithmetic_class=sgtype.arithmetic_crystal_class_symbol,
            extinction_class=", ".join(members[key]),
        ))
    return tuple(table)


@cache
def _setting_free_names() -> dict[int, str]:
    symbols = [sg.symbol for sg in space_groups()]
    return {n: ", ".join(symbols[m - 1] for m in group) for group in setting_free_extinction_groups() for n in group}


#: symbols of the five types renamed in 2002 when the double glide e was introduced (ITA)
LEGACY_SYMBOLS = {"Abm2": 39, "Aba2": 41, "Cmca": 64, "Cmma": 67, "Ccca": 68}


@cache
def _symbol_index() -> tuple[dict[str, int], dict[str, int]]:
    """Every spglib setting symbol → number, twice: ``exact`` without spaces (``P3_121``), and
    ``loose`` also without '_' (``P3121``). Monoclinic full symbols also appear without their
    '1' axes (``P 1 2_1/n 1`` → ``P2_1/n``); elsewhere '1' axes carry meaning (P312 vs P3_12)."""
    exact: dict[str, int] = {}
    for sgtype in _settings():
        full = sgtype.international_full.split()
        monoclinic = 3 <= sgtype.number <= 15
        without_ones = full[:1] + [axis for axis in full[1:] if axis != "1" or not monoclinic]
        for symbol in (sgtype.international_short, sgtype.international_full,
                       sgtype.international, " ".join(without_ones)):
            key = symbol.replace(" ", "")
            if exact.setdefault(key, sgtype.number) != sgtype.number:
                raise RuntimeError(f"symbol {symbol!r} names types {exact[key]} and {sgtype.number}")
    for symbol, number in LEGACY_SYMBOLS.items():
        exact.setdefault(symbol, number)
    loose: dict[str, int] = {}
    for key, number in exact.items():
        if loose.setdefault(key.replace("_", ""), number) != number:
            raise RuntimeError(f"symbol {key!r} is ambiguous without '_'")
    return exact, loose


@cache
def capital_symbols() -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """spglib's symbols in capitals: Hermann-Mauguin (without spaces) → type number, every key
    :func:`space_group` finds in any case, and Hall (single spaces, which separate its parts) →
    (type number, spglib's Hall number of that one setting)."""
    exact, _ = _symbol_index()
    hm: dict[str, int] = {}
    for key, number in exact.items():
        for variant in (key, key.replace("_", "")):
            hm.setdefault(variant.upper(), number)
    hall: dict[str, tuple[int, int]] = {}
    for number, kind in enumerate(_settings(), start=1):
        hall.setdefault(" ".join(kind.hall_symbol.split()).upper(), (kind.number, number))
    return hm, hall


@cache
def hm_settings() -> dict[str, list[tuple[int, str]]]:
    """Hermann-Mauguin symbols (capitals, no spaces or '_') → spglib's settings [(Hall number, choice)]."""
    settings: dict[str, list[tuple[int, str]]] = {}
    for hall, kind in enumerate(_settings(), start=1):
        names = {kind.international_full, kind.international_short, *kind.international.split("=")}
        for name in names:
            key = name.replace(" ", "").replace("_", "").upper()
            if (hall, kind.choice) not in settings.setdefault(key, []):
                settings[key].append((hall, kind.choice))
    return settings


def space_group(spec: int | str) -> SpaceGroup:
    """Look up a type by number (1–230, also as a string) or Hermann–Mauguin symbol.

    Symbols of any setting spglib knows are accepted, with or without spaces, ``_`` and a
    ``:H``/``:R`` suffix: ``"P2_1/c"``, ``"P21/n"``, ``"P 1 21/c 1"``, ``"Fm-3m"``, ``"R-3:H"``,
    and the pre-2002 names of the e-glide types (``"Cmca"``). A symbol that writes ``_`` must
    match exactly, so ``"P3_21"`` (no such type) is an error, never P321.
    """
    if isinstance(spec, bool) or not isinstance(spec, (int, np.integer, str)):
        raise TypeError(f"expected a space-group number or symbol, got {type(spec).__name__}")
    if isinstance(spec, str) and spec.strip().isdigit():
        spec = int(spec)
    if not isinstance(spec, str):
        if not 1 <= spec <= N_SPACE_GROUPS:
            raise ValueError(f"space-group number must be 1-230, got {spec}")
        return space_groups()[int(spec) - 1]
    exact, loose = _symbol_index()
    key = re.sub(r":[HhRr]$", "", spec.strip()).replace(" ", "")
    number = exact.get(key) if "_" in key else exact.get(key, loose.get(key))
    if number is None:
        close = difflib.get_close_matches(key, exact, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown space-group symbol {spec!r}{hint}")
    return space_groups()[number - 1]
