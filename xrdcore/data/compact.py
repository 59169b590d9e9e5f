"""A structure as plain arrays: what worker processes send back, what the cache stores, and what
a pymatgen ``Structure`` is rebuilt from only when it is needed.

A 12,000-entry MOF set held as pymatgen structures takes ~4 GB (one Python object per site); as
arrays it takes ~100 MB, and sending it between processes costs a copy instead of a pickle of
every site.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pymatgen.core import Structure


@dataclass(frozen=True, eq=False)
class CompactStructure:
    """Lattice rows a, b, c (Å), fractional coordinates, and each site's content as an index into
    ``contents`` (species string → occupancy, e.g. ``{"Fe2+": 0.5, "Ni2+": 0.5}``)."""

    lattice: np.ndarray  # (3, 3) float64
    coords: np.ndarray  # (n, 3) float64
    content_index: np.ndarray  # (n,) int32
    contents: tuple[dict[str, float], ...]

    def __len__(self) -> int:
        return len(self.coords)

    @classmethod
    def from_structure(cls, structure: Structure) -> CompactStructure:
        index: dict[tuple, int] = {}
        contents: list[dict[str, float]] = []
        sites = np.empty(len(structure), dtype=np.int32)
        for i, site in enumerate(structure):
            content = {str(sp): float(occ) for sp, occ in site.species.items()}
            key = tuple(content.items())
            if key not in index:
                index[key] = len(contents)
                contents.append(content)
            sites[i] = index[key]
        return cls(np.array(structure.lattice.matrix, dtype=float), np.array(structure.frac_coords, dtype=float),
                   sites, tuple(contents))

    def to_structure(self) -> Structure:
        """The pymatgen structure, with the same lattice and coordinates bit for bit."""
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.lattice), [self.contents[i] for i in self.content_index], self.coords)

    def stored(self) -> dict[str, Any]:
        """The cache's stored form (``structures.jsonl.gz``): values rounded to 8 decimals (lattice,
        coordinates) and 6 (occupancies), which is what every simulation reads."""
        contents = [{sp: round(occ, 6) for sp, occ in c.items()} for c in self.contents]
        return {"lattice": self.lattice.round(8).tolist(), "coords": self.coords.round(8).tolist(),
                "species": [contents[i] for i in self.content_index]}

    def exact(self) -> dict[str, Any]:
        """Every value bit for bit, JSON-ready (arrays as base64 of their little-endian bytes), for
        checkpoints: ~20x faster to write and read than decimal floats."""
        return {"lattice": _b64(self.lattice, "<f8"), "coords": _b64(self.coords, "<f8"),
                "content_index": _b64(self.content_index, "<i4"), "contents": list(self.contents)}

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> CompactStructure:
        """From the cache's stored form: :meth:`to_structure` then equals :func:`structure_from_stored`."""
        index: dict[tuple, int] = {}
        contents: list[dict[str, float]] = []
        sites = np.empty(len(data["species"]), dtype=np.int32)
        for i, content in enumerate(data["species"]):
            key = tuple(content.items())
            if key not in index:
                index[key] = len(contents)
                contents.append(dict(content))
            sites[i] = index[key]
        return cls(np.asarray(data["lattice"], dtype=float).reshape(3, 3),
                   np.asarray(data["coords"], dtype=float).reshape(-1, 3), sites, tuple(contents))

    @classmethod
    def from_exact(cls, data: Mapping[str, Any]) -> CompactStructure:
        return cls(_from_b64(data["lattice"], "<f8").reshape(3, 3), _from_b64(data["coords"], "<f8").reshape(-1, 3),
                   _from_b64(data["content_index"], "<i4").astype(np.int32), tuple(dict(c) for c in data["contents"]))


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _from_b64(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype).astype(dtype[1:])


def structure_from_stored(data: Mapping[str, Any]) -> Structure:
    """A pymatgen structure from the cache's stored form (:meth:`CompactStructure.stored`)."""
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice(data["lattice"]), data["species"], data["coords"])
