"""Space-group labels from spglib, at one recorded tolerance, for every structure read.

Sources' own labels are never trusted: pyxtal often builds more symmetry than it was asked for,
CIFs are frequently written in P1, and databases disagree on settings. spglib's number at a
stated ``symprec`` is the label; a structure that cannot be labelled is rejected, not guessed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import spglib

from xrdcore.data.report import ReadReport, Rejection
from xrdcore.data.validation import (DISORDER_POLICIES, DisorderPolicy, InvalidStructure, check_structure,
                                     disordered_sites)

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from xrdcore.interfaces import StructureDataset

#: spglib's distance tolerance (Å) for labels: loose enough for refined experimental structures
DEFAULT_SYMPREC = 0.1
#: spglib's angle tolerance (degrees); negative means spglib's own default
DEFAULT_ANGLE_TOLERANCE = -1.0


@dataclass(frozen=True)
class LabelledRecord:
    """A structure that passed validation, with its spglib space group and reduced formula."""

    id: str
    structure: Structure
    space_group: int
    formula: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def group_key(self) -> tuple[str, int]:
        """(reduced formula, space group): the unit of de-duplication and of splitting."""
        return self.formula, self.space_group


def spglib_cell(structure: Structure) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The (lattice, positions, types) triple spglib reads.

    One type per distinct site content, species and occupancies included: an ordered site is
    typed by its species (``Fe2+`` and ``Fe3+`` differ, as in pymatgen's SpacegroupAnalyzer),
    a disordered site by its whole mixture, so the number found is that of the average
    structure, the one a diffraction experiment sees.
    """
    keys: dict[tuple, int] = {}
    types = []
    for site in structure:
        content = tuple(sorted((str(sp), round(float(occ), 3)) for sp, occ in site.species.items()))
        types.append(keys.setdefault(content, len(keys) + 1))
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    return lattice, np.asarray(structure.frac_coords, dtype=float), types


def space_group_number(structure: Structure, symprec: float = DEFAULT_SYMPREC,
                       angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE) -> int:
    """spglib's space-group number (1–230); :class:`InvalidStructure` if spglib finds none."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="spglib")
        try:
            dataset = spglib.get_symmetry_dataset(spglib_cell(structure), symprec=symprec,
                                                  angle_tolerance=angle_tolerance)
        except Exception as exc:  # spglib.SpglibError when the caller switched error modes
            raise InvalidStructure(f"spglib found no symmetry at symprec={symprec}: {exc}",
                                   "symmetry") from None
    if dataset is None:
        detail = getattr(spglib, "get_error_message", lambda: "")() or "no reason given"
        raise InvalidStructure(f"spglib found no symmetry at symprec={symprec} ({detail})", "symmetry")
    return int(dataset.number)


def label(structure: Structure, *, symprec: float = DEFAULT_SYMPREC, disorder: DisorderPolicy = "skip",
          angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE) -> int:
    """Validate one structure and return its space-group number, or raise
    :class:`~xrdcore.data.validation.InvalidStructure` saying what is wrong.

    ``disorder="skip"`` (default) rejects partial occupancy: most consumers need one ordered
    structure per label. ``"keep"`` labels the average structure (see :func:`spglib_cell`),
    never an arbitrary ordered approximant, whose symmetry would be an artefact of the choice.
    """
    check_structure(structure, disorder=disorder)
    return space_group_number(structure, symprec, angle_tolerance)


def labelled(dataset: StructureDataset, report: ReadReport, *, limit: int | None = None,
             angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE) -> Iterator[LabelledRecord]:
    """Validate and label a data set's records with ``report``'s symprec and disorder policy.

    Never stops at a bad entry: unreadable entries noted by the data set (its ``rejected``
    list, see :class:`~xrdcore.data.report.ReportingDataset`), invalid structures, repeated
    ids and unexpected errors all become :class:`Rejection` lines in ``report``, in source order.
    """
    if report.disorder not in DISORDER_POLICIES:
        raise ValueError(f"disorder must be one of {', '.join(DISORDER_POLICIES)}, got {report.disorder!r}")
    seen: set[str] = set()
    drained = 0

    def drain() -> None:
        nonlocal drained
        noted = getattr(dataset, "rejected", [])
        for rejection in noted[drained:]:
            report.add(rejection)
        drained = len(noted)

    for record in dataset.records(limit=limit):
        drain()
        if record.id in seen:
            report.add(Rejection(record.id, "the id occurs more than once in the data set; kept the first",
                                 "duplicate-id"))
            continue
        seen.add(record.id)
        where = f"{record.meta['location']}: " if record.meta.get("location") else ""
        try:
            number = label(record.structure, symprec=report.symprec, disorder=report.disorder,
                           angle_tolerance=angle_tolerance)
            formula = record.structure.composition.reduced_formula
        except InvalidStructure as exc:
            report.add(Rejection(record.id, where + str(exc), exc.kind))
            continue
        except Exception as exc:  # a structure that breaks pymatgen or spglib must not stop the run
            report.add(Rejection(record.id, f"{where}labelling failed: {type(exc).__name__}: "
                                            f"{' '.join(str(exc).split())}", "error"))
            continue
        report.accepted += 1
        meta = dict(record.meta)
        if report.disorder == "keep":
            meta["disordered"] = bool(disordered_sites(record.structure))
        yield LabelledRecord(record.id, record.structure, number, formula, meta)
    drain()


def read_dataset(dataset: StructureDataset, *, name: str | None = None, symprec: float = DEFAULT_SYMPREC,
                 disorder: DisorderPolicy = "skip", limit: int | None = None
                 ) -> tuple[list[LabelledRecord], ReadReport]:
    """All valid, labelled records of a data set and the report of what was left out."""
    report = ReadReport(name or getattr(dataset, "name", type(dataset).__name__), symprec, disorder)
    return list(labelled(dataset, report, limit=limit)), report
