"""What reading a data set kept and what it turned away, and why.

Reading never stops at one bad entry: a source notes the entries it cannot read, the labelling
step notes the structures it refuses, and both land in one :class:`ReadReport` in source order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from xrdcore.interfaces import StructureDataset


@dataclass(frozen=True)
class Rejection:
    """One entry left out: its id, a one-line reason naming the file or row, and a short kind
    (``unreadable``, ``empty``, ``non-finite``, ``cell``, ``overlap``, ``disordered``, …) for counts."""

    id: str
    reason: str
    kind: str

    def __str__(self) -> str:
        return f"{self.id}: {self.reason}"


class ReportingDataset(StructureDataset):
    """A data set that notes unreadable entries in ``self.rejected`` and goes on.

    ``records()`` implementations call :meth:`reset_rejections` when they start and
    :meth:`reject` for each entry they skip; :func:`xrdcore.data.labels.labelled` collects them.
    """

    #: the registered name, for reports and split files
    name: str = "dataset"

    def reset_rejections(self) -> None:
        self.rejected: list[Rejection] = []

    def reject(self, id: str, reason: str, kind: str) -> None:
        if not hasattr(self, "rejected"):
            self.reset_rejections()
        self.rejected.append(Rejection(id, " ".join(str(reason).split()), kind))


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
