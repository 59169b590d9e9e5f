"""What reading a data set kept and what it turned away, and why.

Reading never stops at one bad entry: a source notes the entries it cannot read, the labelling
step notes the structures it refuses, and both land in one :class:`ReadReport` in source order.
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from xrdcore.data.parallel import ordered_map
from xrdcore.interfaces import StructureDataset, StructureRecord


@dataclass(frozen=True)
class Rejection:
    """One entry left out: its id, a one-line reason naming the file or row, and a short kind
    (``unreadable``, ``empty``, ``non-finite``, ``cell``, ``overlap``, ``disordered``, …) for counts."""

    id: str
    reason: str
    kind: str

    def __str__(self) -> str:
        return f"{self.id}: {self.reason}"


@dataclass(frozen=True)
class Loaded:
    """What loading one source entry gives: its records, or the reason there are none."""

    records: list[StructureRecord] = field(default_factory=list)
    rejection: Rejection | None = None


class ReportingDataset(StructureDataset):
    """A data set read as cheap source entries (CIF text, a pyxtal request) that a module-level
    ``loader`` turns into records, so that the expensive part runs in ``workers`` processes —
    and, in :func:`xrdcore.data.labels.labelled`, is validated and labelled there too.

    Entries that cannot be read are noted in ``self.rejected`` by :meth:`records` (or returned
    as :class:`Rejection` outcomes by the parallel pipeline); reading never stops at one.
    """

    #: the registered name, for reports and split files
    name: str = "dataset"
    workers: int = 1

    @abc.abstractmethod
    def sources(self, limit: int | None = None) -> Iterable[Any]:
        """The raw entries in a stable order (picklable; ``limit`` of them at most)."""

    @abc.abstractmethod
    def loader(self) -> Callable[[Any], Loaded]:
        """A module-level function (it runs in worker processes) from an entry to its records."""

    def size_hint(self, limit: int | None = None) -> int | None:
        """How many entries :meth:`sources` gives, if known cheaply (for progress bars)."""
        return limit

    def records(self, limit: int | None = None) -> Iterator[StructureRecord]:
        self.reset_rejections()
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
        emitted = 0
        for loaded in ordered_map(self.loader(), self.sources(limit), self.workers):
            if limit is not None and emitted >= limit:
                return  # a file with several data blocks gives several records: cap them too
            if loaded.rejection is not None:
                self.rejected.append(loaded.rejection)
            for record in loaded.records:
                if limit is not None and emitted >= limit:
                    return
                emitted += 1
                yield record

    def reset_rejections(self) -> None:
        self.rejected: list[Rejection] = []

    def reject(self, id: str, reason: str, kind: str) -> None:
        if not hasattr(self, "rejected"):
            self.reset_rejections()
        self.rejected.append(rejection(id, reason, kind))


def rejection(id: str, reason: str, kind: str) -> Rejection:
    """A :class:`Rejection` with its reason on one line."""
    return Rejection(id, " ".join(str(reason).split()), kind)


@dataclass
class ReadReport:
    """Counts and reasons for one pass over a data set, with the labelling settings used."""

    dataset: str
    symprec: float
    disorder: str
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    #: filled by de-duplication: number of structures merged into a representative
    duplicates_removed: int | None = None

    @property
    def read(self) -> int:
        return self.accepted + len(self.rejected)

    def add(self, rejection: Rejection) -> None:
        self.rejected.append(rejection)

    def kinds(self) -> dict[str, int]:
        """Rejections per kind, most frequent first."""
        return dict(Counter(r.kind for r in self.rejected).most_common())

    def summary(self) -> str:
        """One line for logs and the CLI."""
        parts = [f"{self.dataset}: {self.read} read, {self.accepted} kept, {len(self.rejected)} rejected"]
        if self.rejected:
            parts[0] += " (" + ", ".join(f"{k}: {n}" for k, n in self.kinds().items()) + ")"
        if self.duplicates_removed is not None:
            parts.append(f"{self.duplicates_removed} duplicates removed")
        return "; ".join(parts) + f" [spglib symprec {self.symprec}, disorder={self.disorder}]"

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "symprec": self.symprec, "disorder": self.disorder,
                "read": self.read, "accepted": self.accepted, "rejected_by_kind": self.kinds(),
                "duplicates_removed": self.duplicates_removed,
                "rejected": [{"id": r.id, "kind": r.kind, "reason": r.reason} for r in self.rejected]}
