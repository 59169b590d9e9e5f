"""The whole data chain for a registered data set: read → label → de-duplicate → split.

One call gives everything a training run or the CLI needs to record: the kept records, the
report of what was rejected and why, the duplicates merged, and the frozen split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xrdcore.data.dedup import Deduplication, deduplicate
from xrdcore.data.labels import DEFAULT_SYMPREC, LabelledRecord, read_dataset
from xrdcore.data.report import ReadReport
from xrdcore.data.splits import DEFAULT_FRACTIONS, Split, make_split
from xrdcore.data.validation import DisorderPolicy


@dataclass
class Prepared:
    """Everything produced from one data set; ``records`` are the de-duplicated ones."""

    records: list[LabelledRecord]
    report: ReadReport
    dedup: Deduplication
    split: Split
    #: wall time of each stage: reading and labelling, de-duplication
    seconds: dict[str, float] = field(default_factory=dict)


def prepare(name: str, options: Mapping[str, Any] | None = None, *, symprec: float = DEFAULT_SYMPREC,
            disorder: DisorderPolicy = "skip", limit: int | None = None,
            fractions: Sequence[float] | Mapping[str, float] = DEFAULT_FRACTIONS, seed: int = 0,
            registry: Any | None = None, checkpoints: str | Path | None = None, progress: bool = False) -> Prepared:
    """Build the registered data set ``name`` with ``options`` and run the chain on it.

    The data set's ``workers`` option (processes) serves reading, labelling and de-duplication;
    ``checkpoints`` (a folder) keeps finished chunks of both so that an interrupted run resumes.
    """
    if registry is None:
        from xrdcore import get_registry

        registry = get_registry()
    dataset = registry.create("dataset", name, **dict(options or {}))
    folder = Path(checkpoints) if checkpoints is not None else None
    started = time.perf_counter()
    records, report = read_dataset(dataset, name=name, symprec=symprec, disorder=disorder, limit=limit,
                                   checkpoints=folder / "read" if folder else None, progress=progress)
    read = time.perf_counter()
    dedup = deduplicate(records, workers=int(getattr(dataset, "workers", 1)),
                        checkpoints=folder / "dedup" if folder else None, progress=progress)
    report.duplicates_removed = dedup.removed
    stored = {**dict(options or {}), "limit": limit, "disorder": disorder}
    split = make_split(dedup, dataset=name, symprec=symprec, fractions=fractions, seed=seed, options=stored)
    seconds = {"read_and_label": round(read - started, 2), "deduplicate": round(time.perf_counter() - read, 2)}
    return Prepared(dedup.kept, report, dedup, split, seconds)
