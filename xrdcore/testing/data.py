"""Small real data shipped with xrdcore for tests: 46 Materials Project structures (MP-20), their
spglib space groups and their powder peak lists. ``mp20/README.md`` beside this module says where
they come from and under which licence. Nothing here executes stored code: the structures are CIF
text in a CSV table, the peak lists plain arrays in an ``.npz`` read without pickle.

Every function returns the entries in the same order, so ``structures()[i]``, ``space_groups()[i]``
and ``peak_lists()[i]`` describe one crystal.
"""

from __future__ import annotations

import csv
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xrdcore.diffraction.grid import DEFAULT_GRID

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from xrdcore.data.cache import PeakCache
    from xrdcore.diffraction.pxrd import PeakList

FOLDER = Path(__file__).with_name("mp20")
#: ``material_id, formula, space_group, cif``: space groups from spglib at
#: :data:`xrdcore.data.labels.DEFAULT_SYMPREC`, the tolerance every data set is labelled with
STRUCTURES_CSV = FOLDER / "structures.csv"
#: peak lists of :func:`xrdcore.diffraction.pxrd.peak_lists` with :data:`PEAK_SETTINGS`
PEAKS_NPZ = FOLDER / "peaks.npz"
PEAK_SETTINGS = {"wavelength": "CuKa1", "two_theta_range": (DEFAULT_GRID.start, DEFAULT_GRID.stop)}


@lru_cache(maxsize=1)
def _rows() -> tuple[dict[str, str], ...]:
    with STRUCTURES_CSV.open(newline="", encoding="utf-8") as handle:
        return tuple(csv.DictReader(handle))


def ids() -> list[str]:
    """Materials Project ids."""
    return [row["material_id"] for row in _rows()]


def space_groups() -> np.ndarray:
    """spglib space-group numbers (int64), the labels a data set built from these would carry."""
    return np.array([int(row["space_group"]) for row in _rows()], dtype=np.int64)


@lru_cache(maxsize=1)
def _structures() -> tuple[Structure, ...]:
    from pymatgen.core import Structure

    with warnings.catch_warnings():  # pymatgen warns about the rounding of MP's P1 CIFs
        warnings.simplefilter("ignore")
        return tuple(Structure.from_str(row["cif"], fmt="cif") for row in _rows())


def structures() -> list[Structure]:
    """The structures as pymatgen objects (fresh copies: change them freely)."""
    return [s.copy() for s in _structures()]


@lru_cache(maxsize=1)
def _peak_lists() -> tuple[PeakList, ...]:
    from xrdcore.data.cache import peak_list_at

    with np.load(PEAKS_NPZ, allow_pickle=False) as stored:
        a = {name: stored[name] for name in stored.files}
    if a["ids"].tolist() != ids():
        raise ValueError(f"{PEAKS_NPZ} does not list the structures of {STRUCTURES_CSV} in order")
    return tuple(peak_list_at(a, i) for i in range(len(a["offsets"]) - 1))


def peak_lists() -> list[PeakList]:
    """Powder peaks of every structure (Cu Kα1, 2θ 5-90°), as the peak cache stores them."""
    return list(_peak_lists())


def build_cache(out: str | Path) -> PeakCache:
    """A peak cache of these structures in ``out`` (a new or empty directory; about three seconds),
    with the default build settings and split: what ``xrdcore data build`` makes of the table."""
    from xrdcore.data.cache import BuildSpec
    from xrdcore.data.cache import build_cache as build

    return build(out, BuildSpec("csv", {"path": str(STRUCTURES_CSV)}), progress=False)
