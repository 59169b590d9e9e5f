"""The built-in structure data sets: prototypes (the default, no download), CoRE MOF, balanced
synthetic crystals, a folder of CIFs and a CSV of CIFs.

Each yields records in a stable order with stable ids and never stops at a bad entry: what it
cannot read is noted in ``rejected`` (see :class:`~xrdcore.data.report.ReportingDataset`).
``limit`` counts entries of the source (files, rows, requested crystals), good or bad, so a
limited read is always the same prefix. Labels are not set here: :mod:`xrdcore.data.labels`
assigns spglib's.
"""

from __future__ import annotations

import abc
import itertools
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from xrdcore.data.parallel import check_workers, parse_shard
from xrdcore.data.random_crystals import MAX_ATOMS, CrystalRequest, generate, require_pyxtal, structure_seed
from xrdcore.data.report import Loaded, ReportingDataset, rejection
from xrdcore.data.sources import (CIFEntry, aflow_prototypes, check_csv, check_directory, cif_directory,
                                  coremof_archive, coremof_cifs, coremof_size, csv_cifs, parse_entry, structure_from_dict)
from xrdcore.interfaces import StructureRecord
from xrdcore.validate import positive_int

_PYXTAL = "pyxtal (Fredericks et al., Comput. Phys. Commun. 261, 107810 (2021)), generated on this machine"


def _check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    return limit


def _seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


class _CIFDataset(ReportingDataset):
    """Shared reading of CIF entries: text read here, parsed in the loader (worker processes)."""

    @abc.abstractmethod
    def _entries(self) -> Iterable[CIFEntry]:
        """The source's raw CIF entries (text, id, meta), in a stable order."""

    def sources(self, limit: int | None = None) -> Iterator[CIFEntry]:
        return itertools.islice(self._entries(), _check_limit(limit))

    def loader(self):
        return load_cif_entry


def load_cif_entry(entry: CIFEntry) -> Loaded:
    """The records of one CIF entry (several data blocks give several), or why there are none."""
    parsed = parse_entry(entry)
    if not parsed.structures:
        return Loaded(rejection=rejection(entry.id, parsed.reason, parsed.kind))
    return Loaded([StructureRecord(ident, structure, dict(entry.meta)) for ident, structure in parsed.structures])


def load_crystal(source: CrystalRequest | tuple[str, dict, dict]) -> Loaded:
    """A pyxtal crystal of a request, or an AFLOW prototype (id, structure dict, meta)."""
    if isinstance(source, CrystalRequest):
        request, structure, meta = generate(source)
        if structure is None:
            return Loaded(rejection=rejection(request.id, f"pyxtal, requested space group "
                                                          f"{request.space_group}: {meta}", "generation"))
        return Loaded([StructureRecord(request.id, structure, meta)])
    ident, data, meta = source
    try:
        structure = structure_from_dict(data)
    except Exception as exc:
        return Loaded(rejection=rejection(ident, f"pymatgen aflow_prototypes.json.gz: cannot build the structure "
                                                 f"({type(exc).__name__}: {exc})", "unreadable"))
    return Loaded([StructureRecord(ident, structure, meta)])


def _stream_seed(seed: int, stream: str) -> int:
    """Different data sets with the same seed draw different crystals (no silent overlap)."""
    return int(seed) * 4_294_967_296 + zlib.crc32(stream.encode())


class PrototypesDataset(ReportingDataset):
    """The embedded default: pymatgen's 288 AFLOW prototypes and ``per_group`` pyxtal crystals
    requested in each of the 230 space groups (or ``space_groups``); no download needed."""

    name = "prototypes"
    provenance = ("AFLOW Library of Crystallographic Prototypes (Mehl et al., Comput. Mater. Sci. 136, S1 "
                  "(2017)), 288 structures as shipped in pymatgen (analysis/prototypes/"
                  f"aflow_prototypes.json.gz); plus random crystals from {_PYXTAL}")
    licence = ("AFLOW prototypes: as distributed with pymatgen (MIT), cite Mehl et al. 2017; "
               "pyxtal crystals: generated data, no restrictions (CC0)")

    def __init__(self, per_group: int = 2, seed: int = 0, space_groups: Iterable[int] | None = None,
                 max_atoms: int = MAX_ATOMS, aflow: bool = True, workers: int = 1):
        if isinstance(per_group, bool) or not isinstance(per_group, int) or per_group < 0:
            raise ValueError(f"per_group must be a non-negative integer, got {per_group!r}")
        self.groups = tuple(range(1, 231)) if space_groups is None else tuple(int(g) for g in space_groups)
        if bad := [g for g in self.groups if not 1 <= g <= 230]:
            raise ValueError(f"space_groups must be numbers 1-230, got {bad}")
        self.per_group, self.seed, self.max_atoms = per_group, _seed(seed), positive_int("max_atoms", max_atoms)
        self.aflow, self.workers = bool(aflow), check_workers(workers)
        if per_group and self.groups:
            require_pyxtal("the prototypes data set (per_group > 0; per_group=0 gives the AFLOW part alone)")

    def requests(self) -> Iterator[CrystalRequest]:
        """The pyxtal crystals of this data set, group by group."""
        base = _stream_seed(self.seed, self.name)
        for group in self.groups:
            for index in range(self.per_group):
                yield CrystalRequest(f"pyxtal-sg{group:03d}-{index}", group, index,
                                     structure_seed(base, group, index), self.max_atoms)

    def sources(self, limit: int | None = None) -> Iterator[CrystalRequest | tuple[str, dict, dict]]:
        """AFLOW prototypes first (id, structure dict, meta), then the pyxtal requests."""
        entries = itertools.chain(aflow_prototypes() if self.aflow else (), self.requests())
        return itertools.islice(entries, _check_limit(limit))

    def loader(self):
        return load_crystal

    def size_hint(self, limit: int | None = None) -> int:
        size = (288 if self.aflow else 0) + self.per_group * len(self.groups)
        return size if limit is None else min(size, limit)


class SyntheticDataset(ReportingDataset):
    """``size`` pyxtal crystals balanced over the 230 space groups (requested round-robin),
    reproducible for a given ``seed`` whatever the number of ``workers``."""

    name = "synthetic"
    provenance = f"random crystals requested evenly over the 230 space groups from {_PYXTAL}"
    licence = "generated data, no restrictions (CC0); pyxtal is MIT-licensed"

    def __init__(self, size: int = 2300, seed: int = 0, max_atoms: int = MAX_ATOMS, workers: int = 1,
                 shard: str | None = None):
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size must be a non-negative integer, got {size!r}")
        self.size, self.seed, self.max_atoms = size, _seed(seed), positive_int("max_atoms", max_atoms)
        self.workers = check_workers(workers)
        self.shard, self.shards = parse_shard(shard)
        require_pyxtal("the synthetic data set")

    def requests(self) -> Iterator[CrystalRequest]:
        """Crystal i is requested in space group i mod 230 + 1, as its (i div 230)-th of that group.
        Shard k of n takes the crystals with i mod n = k: ids and seeds are global, so shards built
        on different machines are disjoint and together are exactly the unsharded set."""
        base = _stream_seed(self.seed, self.name)
        for i in range(self.shard, self.size, self.shards):
            group, index = i % 230 + 1, i // 230
            yield CrystalRequest(f"synthetic-{i:07d}", group, index, structure_seed(base, group, index),
                                 self.max_atoms)

    def sources(self, limit: int | None = None) -> Iterator[CrystalRequest]:
        return itertools.islice(self.requests(), _check_limit(limit))

    def loader(self):
        return load_crystal

    def size_hint(self, limit: int | None = None) -> int:
        size = len(range(self.shard, self.size, self.shards))
        return size if limit is None else min(size, limit)


class CoreMOFDataset(_CIFDataset):
    """CoRE MOF 2019 (``subset`` 2019-ASR by default: 12,020 CIFs) from the core-mof package,
    streamed from its archive; ids are the CIF names (``ABAVIJ_clean``)."""

    name = "coremof"
    provenance = ("CoRE MOF 2019 (Chung et al., J. Chem. Eng. Data 64, 5985 (2019)), computation-ready "
                  "structures from the core-mof PyPI package (import CoRE_MOF)")
    licence = "data CC-BY-4.0; core-mof package code MIT"

    def __init__(self, subset: str = "2019-ASR", workers: int = 1):
        coremof_archive(subset)  # fail now, with a clear message, if the package or subset is missing
        self.subset, self.workers = subset, check_workers(workers)

    def _entries(self) -> Iterable[CIFEntry]:
        return coremof_cifs(self.subset)

    def size_hint(self, limit: int | None = None) -> int | None:
        size = coremof_size(self.subset)
        return limit if size is None else size if limit is None else min(size, limit)


class CIFDirectoryDataset(_CIFDataset):
    """A folder of ``.cif`` files (``recursive`` for sub-folders); ids are file stems."""

    name = "cif-dir"
    provenance = "a local folder of CIF files"
    licence = "as set by the owner of the files (unknown to xrdcore)"

    def __init__(self, path: str | Path, recursive: bool = False, workers: int = 1):
        self.path, self.recursive = check_directory(path), bool(recursive)
        self.workers = check_workers(workers)
        self.provenance = f"CIF files in {self.path}"

    def _entries(self) -> Iterable[CIFEntry]:
        return cif_directory(self.path, self.recursive)

    def size_hint(self, limit: int | None = None) -> int:
        files = self.path.rglob("*") if self.recursive else self.path.glob("*")
        size = sum(1 for f in files if f.suffix.lower() == ".cif")
        return size if limit is None else min(size, limit)


class CSVDataset(_CIFDataset):
    """A CSV table with one CIF per row (``cif_column``) and an id column (``id_column``), such
    as MP-20's ``material_id, cif, …``; the other columns are kept in ``meta``."""

    name = "csv"
    provenance = "CIF strings in a local CSV table"
    licence = "as set by the owner of the table (unknown to xrdcore)"

    def __init__(self, path: str | Path, cif_column: str = "cif", id_column: str = "material_id",
                 workers: int = 1):
        self.path = check_csv(path, cif_column, id_column)
        self.cif_column, self.id_column, self.workers = cif_column, id_column, check_workers(workers)
        self.provenance = f"CIF strings in column {cif_column!r} of {self.path}"

    def _entries(self) -> Iterable[CIFEntry]:
        return csv_cifs(self.path, self.cif_column, self.id_column)
