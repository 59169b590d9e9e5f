"""De-duplication: one representative per set of equivalent structures, and the units that
splits must keep whole, so no test structure has a twin in training.

Duplicates are structures with the same reduced formula and spglib space group that pymatgen's
``StructureMatcher`` (default tolerances: ltol 0.2, stol 0.3, angle 5°, primitive cells,
volume scaled) finds equivalent. Equivalence is closed transitively (connected components,
every pair in a group compared), and the representative is the smallest id: the result does not
depend on input order.

Matching structures whose spglib labels differ (a slightly distorted copy labelled in a
subgroup) are both kept, since their labels differ, but they are linked: together with every
(formula, space group) group they form the *units* a split assigns as a whole.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from xrdcore.data.labels import LabelledRecord


class _Components:
    """Union–find over ids."""

    def __init__(self, ids: Iterable[str]):
        self.parent = {i: i for i in ids}

    def find(self, i: str) -> str:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[str]]:
        members: dict[str, list[str]] = defaultdict(list)
        for i in self.parent:
            members[self.find(i)].append(i)
        return sorted(sorted(m) for m in members.values())


@dataclass
class Deduplication:
    """The result: representatives, what each removed duplicate merged into, and split units."""

    kept: list[LabelledRecord]
    #: removed id → id of the representative it is equivalent to
    duplicate_of: dict[str, str] = field(default_factory=dict)
    #: ids of kept records that must go to the same split, each sorted, sorted by first id
    units: list[list[str]] = field(default_factory=list)
    #: StructureMatcher comparisons made (the cost)
    comparisons: int = 0

    @property
    def removed(self) -> int:
        return len(self.duplicate_of)

    def to_dict(self) -> dict[str, Any]:
        return {"kept": len(self.kept), "removed": self.removed, "units": len(self.units),
                "comparisons": self.comparisons, "duplicate_of": dict(sorted(self.duplicate_of.items()))}


class _ReducedCells:
    """Each record's Niggli-reduced (and, if the matcher wants it, primitive) cell, computed once.

    StructureMatcher reduces both structures on every ``fit`` and caches the result, but a cache
    hit costs a structure comparison quadratic in the number of sites. For MOFs of hundreds of atoms
    compared with every other entry of their formula, a build of 3,000 CoRE MOF entries was still
    de-duplicating after 28 minutes.
    The steps are the matcher's own (Niggli, then primitive), so the verdicts are the same.
    """

    def __init__(self, primitive_cell: bool):
        self.primitive_cell = primitive_cell
        self.cells: dict[str, Any] = {}

    def __call__(self, record: LabelledRecord) -> Any:
        if record.id not in self.cells:
            cell = record.structure.get_reduced_structure(reduction_algo="niggli")
            self.cells[record.id] = cell.get_primitive_structure() if self.primitive_cell else cell
        return self.cells[record.id]


def deduplicate(records: Iterable[LabelledRecord], matcher: Any | None = None) -> Deduplication:
    """Merge StructureMatcher-equivalent records within each (reduced formula, space group).

    ``matcher`` (a pymatgen ``StructureMatcher``) defaults to ``StructureMatcher()``; only records
    with the same reduced formula are ever compared (the default matcher never matches different
    compositions). Each structure is reduced once (:class:`_ReducedCells`).
    """
    records = list(records)
    by_id: dict[str, LabelledRecord] = {}
    for record in records:
        if record.id in by_id:
            raise ValueError(f"id {record.id!r} occurs twice: de-duplication needs unique ids")
        by_id[record.id] = record
    if matcher is None:
        from pymatgen.analysis.structure_matcher import StructureMatcher

        matcher = StructureMatcher()
    reduced = _ReducedCells(matcher.as_dict().get("primitive_cell", True))
    duplicates, linked = _Components(by_id), _Components(by_id)
    by_formula: dict[str, list[LabelledRecord]] = defaultdict(list)
    for record in records:
        by_formula[record.formula].append(record)
    comparisons = 0
    for bucket in by_formula.values():
        bucket.sort(key=lambda r: (r.space_group, r.id))
        for i, a in enumerate(bucket):
            for b in bucket[i + 1:]:
                same_group = a.space_group == b.space_group
                if same_group:
                    linked.union(a.id, b.id)  # one (formula, space group) group, one split
                components = duplicates if same_group else linked
                if components.find(a.id) == components.find(b.id):
                    continue
                comparisons += 1
                if matcher.fit(reduced(a), reduced(b), skip_structure_reduction=True):
                    linked.union(a.id, b.id)
                    if same_group:
                        duplicates.union(a.id, b.id)
    duplicate_of = {}
    for members in duplicates.groups():
        for member in members[1:]:
            duplicate_of[member] = members[0]
    kept = [r for r in records if r.id not in duplicate_of]
    units = [[i for i in members if i not in duplicate_of] for members in linked.groups()]
    return Deduplication(kept, duplicate_of, units, comparisons)
