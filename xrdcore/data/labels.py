"""Space-group labels from spglib, at one recorded tolerance, for every structure read.

Sources' own labels are never trusted: pyxtal often builds more symmetry than it was asked for,
CIFs are frequently written in P1, and databases disagree on settings. spglib's number at a
stated ``symprec`` is the label; a structure that cannot be labelled is rejected, not guessed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import spglib

from xrdcore.data.compact import CompactStructure
from xrdcore.data.parallel import checkpointed_map
from xrdcore.data.report import Loaded, ReadReport, Rejection, ReportingDataset
from xrdcore.interfaces import StructureRecord
from xrdcore.data.validation import (DISORDER_POLICIES, DisorderPolicy, InvalidStructure, check_structure,
                                     disordered_sites)
from xrdcore import validate

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from xrdcore.interfaces import StructureDataset

#: spglib's distance tolerance (Å) for labels: loose enough for refined experimental structures
DEFAULT_SYMPREC = 0.1
#: spglib's angle tolerance (degrees); negative means spglib's own default
DEFAULT_ANGLE_TOLERANCE = -1.0


@dataclass(frozen=True)
class LabelledRecord:
    """A structure that passed validation, with its spglib space group and reduced formula.

    ``content`` is a pymatgen ``Structure`` or, as the parallel reader returns it, a
    :class:`~xrdcore.data.compact.CompactStructure` (built into a ``Structure`` on demand).
    """

    id: str
    content: Any
    space_group: int
    formula: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def structure(self) -> Structure:
        return self.content.to_structure() if isinstance(self.content, CompactStructure) else self.content

    @property
    def compact(self) -> CompactStructure:
        return self.content if isinstance(self.content, CompactStructure) else CompactStructure.from_structure(self.content)

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
    """spglib's space-group number (1–230); :class:`InvalidStructure` if spglib finds none.

    The tolerances and the cell are checked first (a ValueError, an InvalidStructure): spglib
    crashes the process on a negative or NaN ``symprec`` or a non-finite cell."""
    symprec = validate.symprec(symprec)
    angle_tolerance = validate.angle_tolerance(angle_tolerance)
    try:
        cell = validate.spglib_cell(*spglib_cell(structure), name="structure")
    except ValueError as exc:
        raise InvalidStructure(str(exc), "cell") from None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="spglib")
        try:
            dataset = spglib.get_symmetry_dataset(cell, symprec=symprec,
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


@dataclass(frozen=True)
class LabelSettings:
    """How structures are labelled: spglib tolerances and the disorder policy."""

    symprec: float = DEFAULT_SYMPREC
    disorder: str = "skip"
    angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE

    def __post_init__(self):
        validate.symprec(self.symprec)
        validate.choice("disorder", self.disorder, DISORDER_POLICIES)
        validate.angle_tolerance(self.angle_tolerance)


@dataclass(frozen=True)
class Outcome:
    """One step of reading, in source order: an entry the source could not read (``record`` and
    ``labelled`` both None), or a record that was labelled (``labelled``) or refused."""

    id: str
    record: bool
    labelled: LabelledRecord | None = None
    rejection: Rejection | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "record": self.record}
        if self.rejection is not None:
            data["rejection"] = [self.rejection.reason, self.rejection.kind]
        if self.labelled is not None:
            r = self.labelled
            data.update(space_group=r.space_group, formula=r.formula, meta=r.meta, structure=r.compact.exact())
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        rejection = Rejection(data["id"], *data["rejection"]) if "rejection" in data else None
        labelled = None
        if "structure" in data:
            labelled = LabelledRecord(data["id"], CompactStructure.from_exact(data["structure"]), data["space_group"],
                                      data["formula"], data["meta"])
        return cls(data["id"], data["record"], labelled, rejection)


def label_record(record: StructureRecord, settings: LabelSettings, compact: bool = False) -> Outcome:
    """Validate and label one record; every failure becomes a rejection naming the entry."""
    where = f"{record.meta['location']}: " if record.meta.get("location") else ""
    try:
        number = label(record.structure, symprec=settings.symprec, disorder=settings.disorder,
                       angle_tolerance=settings.angle_tolerance)
        formula = record.structure.composition.reduced_formula
    except InvalidStructure as exc:
        return Outcome(record.id, True, rejection=Rejection(record.id, where + str(exc), exc.kind))
    except Exception as exc:  # a structure that breaks pymatgen or spglib must not stop the run
        return Outcome(record.id, True, rejection=Rejection(
            record.id, f"{where}labelling failed: {type(exc).__name__}: {' '.join(str(exc).split())}", "error"))
    meta = dict(record.meta)
    if settings.disorder == "keep":
        meta["disordered"] = bool(disordered_sites(record.structure))
    content = CompactStructure.from_structure(record.structure) if compact else record.structure
    return Outcome(record.id, True, LabelledRecord(record.id, content, number, formula, meta))


def load_and_label(job: tuple[Callable[[Any], Loaded], Any, LabelSettings]) -> list[Outcome]:
    """Worker entry point: load one source entry and label its records (structures come back as
    arrays, not as pymatgen objects)."""
    load, source, settings = job
    loaded = load(source)
    outcomes = [Outcome(loaded.rejection.id, False, rejection=loaded.rejection)] if loaded.rejection else []
    return outcomes + [label_record(record, settings, compact=True) for record in loaded.records]


def labelled(dataset: StructureDataset, report: ReadReport, *, limit: int | None = None,
             angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE, checkpoints: str | Path | None = None,
             chunk: int = 500, progress: bool = False) -> Iterator[LabelledRecord]:
    """Validate and label a data set's records with ``report``'s symprec and disorder policy.

    Never stops at a bad entry: unreadable entries, invalid structures, repeated ids and
    unexpected errors all become :class:`Rejection` lines in ``report``, in source order.

    A :class:`~xrdcore.data.report.ReportingDataset` is read, validated and labelled in its
    ``workers`` processes; with ``checkpoints`` (a folder) the outcomes of every ``chunk`` source
    entries are saved there as they finish, and a rerun reuses them: an interrupted read resumes.
    """
    if report.disorder not in DISORDER_POLICIES:
        raise ValueError(f"disorder must be one of {', '.join(DISORDER_POLICIES)}, got {report.disorder!r}")
    settings = LabelSettings(report.symprec, report.disorder, angle_tolerance)
    validate.positive_int("chunk", chunk)
    parallel = isinstance(dataset, ReportingDataset)
    if parallel:
        outcomes = _parallel_outcomes(dataset, settings, limit, checkpoints, chunk, progress)
    else:
        outcomes = _serial_outcomes(dataset, settings, limit)
    seen: set[str] = set()
    records = 0
    for outcome in outcomes:
        if parallel and limit is not None and records >= limit:
            return  # as ReportingDataset.records: several data blocks per file give capped records
        if not outcome.record:
            report.add(outcome.rejection)
            continue
        records += 1
        if outcome.id in seen:
            report.add(Rejection(outcome.id, "the id occurs more than once in the data set; kept the first",
                                 "duplicate-id"))
            continue
        seen.add(outcome.id)
        if outcome.rejection is not None:
            report.add(outcome.rejection)
        else:
            report.accepted += 1
            yield outcome.labelled


def _serial_outcomes(dataset: StructureDataset, settings: LabelSettings, limit: int | None) -> Iterator[Outcome]:
    """Any other data set: its ``records()`` labelled here, one by one."""
    drained = 0
    for record in dataset.records(limit=limit):
        noted = getattr(dataset, "rejected", [])
        yield from (Outcome(r.id, False, rejection=r) for r in noted[drained:])
        drained = len(noted)
        yield label_record(record, settings)
    yield from (Outcome(r.id, False, rejection=r) for r in getattr(dataset, "rejected", [])[drained:])


def _parallel_outcomes(dataset: ReportingDataset, settings: LabelSettings, limit: int | None,
                       checkpoints: str | Path | None, chunk: int, progress: bool) -> Iterator[Outcome]:
    """Every source entry loaded and labelled in the workers, in source order, saved to and
    reused from ``checkpoints`` ``chunk`` entries at a time."""
    load = dataset.loader()
    name = getattr(dataset, "name", type(dataset).__name__)
    for outcomes in checkpointed_map(load_and_label, ((load, s, settings) for s in dataset.sources(limit)),
                                     workers=dataset.workers, chunk=chunk, folder=checkpoints,
                                     encode=lambda o: [x.to_json() for x in o],
                                     decode=lambda o: [Outcome.from_json(x) for x in o],
                                     progress=f"reading and labelling {name}" if progress else None,
                                     total=dataset.size_hint(limit), unit="entry"):
        yield from outcomes


def read_dataset(dataset: StructureDataset, *, name: str | None = None, symprec: float = DEFAULT_SYMPREC,
                 disorder: DisorderPolicy = "skip", limit: int | None = None,
                 checkpoints: str | Path | None = None, progress: bool = False
                 ) -> tuple[list[LabelledRecord], ReadReport]:
    """All valid, labelled records of a data set and the report of what was left out."""
    report = ReadReport(name or getattr(dataset, "name", type(dataset).__name__), symprec, disorder)
    return list(labelled(dataset, report, limit=limit, checkpoints=checkpoints, progress=progress)), report
