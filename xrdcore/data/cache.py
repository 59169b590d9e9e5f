"""On-disk cache of a built data set: its structures, labels, split and peak lists.

Peak lists are what is expensive and compact, so they are what is stored; profiles are
rendered (and augmented) at load time on the training device. A build is keyed by a hash of
its inputs and simulator settings: rerunning with the same ones reuses it, an interrupted build
resumes at the first missing chunk, and a directory holding another build is never overwritten.
Every file is written atomically; ``manifest.json`` says ``complete`` only once all are there.
A build holds ``.lock`` in its directory (xrdcore.storage.directory_lock): a second build
pointed at it is refused while the first runs; a complete cache is read without it.

Layout of a cache directory::

    manifest.json            key, inputs, simulator settings, counts, status
    structures.jsonl.gz      one line per kept structure: id, space group, formula, structure
    index.json               ids, space groups and formulas in that order (read by training)
    split.json               the frozen, hashed split (xrdcore.data.splits)
    report.json              entries rejected and why, duplicates removed
    peaks/00000/*.npy        peak lists of structures 0..chunk-1, memory-mappable
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xrdcore.data.compact import CompactStructure, structure_from_stored
from xrdcore.data.labels import DEFAULT_SYMPREC
from xrdcore.data.parallel import check_workers, unordered_map
from xrdcore.data.splits import DEFAULT_FRACTIONS, SPLITS, Split
from xrdcore.diffraction.grid import DEFAULT_GRID
from xrdcore.storage import (TEMPORARY_SUFFIX, atomic_write_json, directory_lock, holds_other_files,
                             write_errors)

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from xrdcore.diffraction.pxrd import PeakList

CACHE_FORMAT = "xrdcore-cache/1"
#: checkpoints of reading, labelling and de-duplication while a build runs (removed when complete)
_WORK = "work"
_MAX_ROTATIONS = 48  # the largest Laue group, m-3m


class CacheError(ValueError):
    """A cache directory that cannot be used as asked; the message says which and why."""


@dataclass(frozen=True)
class BuildSpec:
    """Everything that determines a build's content; its hash is the cache key."""

    dataset: str
    options: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    symprec: float = DEFAULT_SYMPREC
    disorder: str = "skip"
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    seed: int = 0
    wavelength: str | float = "CuKa1"
    two_theta_range: tuple[float, float] = (DEFAULT_GRID.start, DEFAULT_GRID.stop)
    debye_waller: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        """Every value checked where the Python API takes it, before a file is read or spglib runs
        (a negative or NaN symprec crashes spglib; a bad range or wavelength would fail only after
        the expensive reading and labelling)."""
        from xrdcore import validate
        from xrdcore.data.splits import check_fractions
        from xrdcore.data.validation import DISORDER_POLICIES
        from xrdcore.diffraction.radiation import check_two_theta_range, wavelength

        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ValueError(f"dataset must be a data set name, got {self.dataset!r}")
        if not isinstance(self.options, Mapping):
            raise ValueError(f"options must be a mapping of the data set's arguments, got {self.options!r}")
        if "workers" in self.options:  # a data set's own processes: bounded like --workers
            validate.workers(self.options["workers"], "the data set's workers option")
        validate.optional_positive_int("limit", self.limit)
        validate.symprec(self.symprec)
        validate.choice("disorder", self.disorder, DISORDER_POLICIES)
        check_fractions(self.fractions)
        validate.seed(self.seed)
        wavelength(self.wavelength)
        check_two_theta_range(self.two_theta_range)
        if not isinstance(self.debye_waller, Mapping):
            raise ValueError(f"debye_waller must map element symbols to B factors in Å², got {self.debye_waller!r}")
        for element, b in self.debye_waller.items():
            validate.number_in(f"Debye-Waller factor B of {element}", b, 0, 100, unit="Å²")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["options"] = {k: v for k, v in data["options"].items() if k != "workers"}  # not content
        data["fractions"], data["two_theta_range"] = list(self.fractions), list(self.two_theta_range)
        return data

    @property
    def key(self) -> str:
        """Hash of the spec and of the input files it names (so an edited CIF is not served stale)."""
        content = {"format": CACHE_FORMAT, **self.to_dict(), "inputs": _fingerprint(self.options.get("path"))}
        text = json.dumps(content, sort_keys=True, default=str)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def check(self) -> None:
        """Fail on Debye-Waller factors of elements the simulator does not know, before the expensive
        reading and labelling (every other value is checked on construction)."""
        from xrdcore.diffraction.scattering import scattering_parameters

        unknown = sorted(set(self.debye_waller) - set(scattering_parameters()))
        if unknown:
            raise ValueError(f"Debye-Waller factors given for unknown elements: {', '.join(unknown)}")


def _fingerprint(path: Any) -> list[tuple[str, int, int]] | None:
    """(name, size, modification time) of an input file, or of every file under an input folder."""
    if not isinstance(path, (str, os.PathLike)) or not Path(path).exists():
        return None
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return [(str(p.relative_to(root) if p != root else p.name), p.stat().st_size, p.stat().st_mtime_ns)
            for p in files]


def build_cache(out: str | Path, spec: BuildSpec, *, workers: int = 1, chunk_size: int = 256,
                progress: bool = True, registry: Any | None = None) -> PeakCache:
    """Build (or resume, or reuse) the cache of ``spec`` in ``out``; see the module docstring.

    ``workers`` processes parse the data set's files and simulate its peaks; results do not
    depend on their number.
    """
    from xrdcore import validate

    out, workers = Path(out), check_workers(workers)
    validate.positive_int("chunk_size", chunk_size)
    spec.check()
    if (out / "manifest.json").is_file() and _is_complete(out, spec):
        return PeakCache(out)  # a finished build is read without the lock: readers never wait or fail
    with directory_lock(out):  # one build at a time in ``out``; the OS drops the lock when we die
        return _build_locked(out, spec, workers, chunk_size, progress, registry)


def _is_complete(out: Path, spec: BuildSpec) -> bool:
    try:
        manifest = _read_manifest(out)
    except CacheError:
        return False
    return manifest.get("key") == spec.key and manifest.get("status") == "complete"


def _build_locked(out: Path, spec: BuildSpec, workers: int, chunk_size: int, progress: bool,
                  registry: Any | None) -> PeakCache:
    """:func:`build_cache` once ``out`` is locked."""
    from xrdcore.data.prepare import prepare

    manifest = _read_manifest(out) if (out / "manifest.json").exists() else None
    if manifest is not None and not any((out / name).exists() for name in ("structures.jsonl.gz", _WORK)):
        manifest = None  # a build that stopped before it produced anything: nothing to keep
    if manifest is not None:
        if manifest.get("key") != spec.key:
            raise CacheError(f"{out}: holds a build of other inputs ({manifest.get('spec', {}).get('dataset')!r}, "
                             f"key {str(manifest.get('key'))[:19]}...); choose another directory or delete it")
        if manifest.get("status") == "complete":
            return PeakCache(out)
        chunk_size = int(manifest.get("chunk_size", chunk_size))  # a resumed build keeps its layout
    elif holds_other_files(out, ours=("manifest.json",)):
        raise CacheError(f"{out}: exists and is not an xrdcore cache; choose an empty or new directory")
    started = time.perf_counter()
    source = _source(spec.dataset, registry)
    atomic_write_json(out / "manifest.json", {"format": CACHE_FORMAT, "key": spec.key, "spec": spec.to_dict(),
                                              "status": "building", "chunk_size": chunk_size, **source})
    if not (out / "structures.jsonl.gz").exists():
        prepared = prepare(spec.dataset, {**spec.options, **({"workers": workers} if workers > 1 else {})},
                           symprec=spec.symprec, disorder=spec.disorder, limit=spec.limit,
                           fractions=spec.fractions, seed=spec.seed, registry=registry,
                           checkpoints=out / _WORK, progress=progress)
        prepared.split.save(out / "split.json")
        atomic_write_json(out / "report.json", {"read": prepared.report.to_dict(),
                                                "duplicates": prepared.dedup.to_dict(), "seconds": prepared.seconds})
        _write_structures(out, prepared.records)
        del prepared
    shutil.rmtree(out / _WORK, ignore_errors=True)  # the checkpoints of what structures.jsonl.gz now holds
    simulating = time.perf_counter()
    structures = [CompactStructure.from_stored(e["structure"]) for e in _stream_structures(out)]
    chunks = math.ceil(len(structures) / chunk_size)
    missing = [k for k in range(chunks) if not (out / "peaks" / f"{k:05d}").is_dir()]
    settings = {"wavelength": spec.wavelength, "two_theta_range": tuple(spec.two_theta_range),
                "debye_waller": spec.debye_waller}
    _simulate(out, structures, chunk_size, missing, settings, workers,
              f"simulating {spec.dataset}" if progress else None)
    split = Split.load(out / "split.json")
    report = json.loads((out / "report.json").read_text())
    failed = _failed_simulations(out, chunks)
    atomic_write_json(out / "manifest.json", {
        "format": CACHE_FORMAT, "key": spec.key, "spec": spec.to_dict(), "status": "complete", **source,
        "structures": len(structures), "chunk_size": chunk_size, "chunks": chunks, "split_hash": split.hash,
        "split_counts": split.counts, "duplicates_removed": report["duplicates"].get("removed"),
        "rejected": len(report["read"]["rejected"]), "simulation_failures": failed,
        "build_seconds": round(time.perf_counter() - started, 2),
        "stage_seconds": {**report.get("seconds", {}), "simulate": round(time.perf_counter() - simulating, 2)},
    })
    return PeakCache(out)


def resolve_dataset(name: str, options: Mapping[str, Any] | None = None,
                    registry: Any | None = None) -> tuple[str, dict[str, Any]]:
    """A registered data set name as is; a folder of CIFs or a ``.csv`` file of CIFs as the
    ``cif-dir`` or ``csv`` data set with its absolute path (a registered name wins over a folder
    called the same)."""
    if registry is None:
        from xrdcore import get_registry

        registry = get_registry()
    options = dict(options or {})
    if name in registry.names("dataset"):
        return name, options
    path = Path(name)
    if path.is_dir():
        return "cif-dir", {"path": str(path.resolve()), **options}
    if path.suffix.lower() == ".csv" and path.is_file():
        return "csv", {"path": str(path.resolve()), **options}
    registry.get("dataset", name)  # unknown: raises with did-you-mean and the list
    return name, options


def open_dataset(dataset: str, data_dir: str | Path = "data", *, limit: int | None = None, workers: int = 1,
                 progress: bool = True, options: Mapping[str, Any] | None = None) -> PeakCache:
    """The peak cache of ``dataset``: a cache directory as is, else a registered data set, CIF
    folder or CSV built (or reused, or resumed) under ``data_dir`` with default settings.
    ``limit`` and ``workers`` are checked even where a built cache makes them moot."""
    from xrdcore import validate

    validate.optional_positive_int("limit", limit)
    check_workers(workers)
    if (Path(dataset) / "manifest.json").is_file():
        return PeakCache(dataset)
    name, options = resolve_dataset(dataset, options)
    spec = BuildSpec(name, options, limit=limit)
    return build_cache(Path(data_dir) / f"{name}-{spec.key.split(':')[1][:10]}", spec, workers=workers,
                       progress=progress)


class PeakCache:
    """A complete cache directory, read lazily: chunk arrays are memory-mapped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        if self.manifest.get("status") != "complete":
            raise CacheError(f"{self.path}: the build is not complete; run `xrdcore data build` again to resume it")
        self.split = Split.load(self.path / "split.json")
        if self.split.hash != self.manifest["split_hash"]:
            raise CacheError(f"{self.path}: split.json does not match the manifest's split hash")
        self.chunk_size = int(self.manifest["chunk_size"])
        self._chunks: dict[int, dict[str, np.ndarray]] = {}

    @cached_property
    def _index(self) -> dict[str, list]:
        """ids, space groups and formulas, from index.json (or, in caches built before it
        existed, from the structures)."""
        index = self.path / "index.json"
        if index.is_file():
            try:
                data = json.loads(index.read_text())
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise CacheError(f"{index}: not readable as the cache's index ({exc}); rebuild the cache") from None
            lengths = {len(data[k]) if isinstance(data, dict) and isinstance(data.get(k), list) else -1
                       for k in ("ids", "space_groups", "formulas")}
            expected = self.manifest.get("structures")
            if len(lengths) != 1 or -1 in lengths or (isinstance(expected, int) and lengths != {expected}):
                raise CacheError(f"{index}: ids, space groups and formulas do not list the manifest's "
                                 f"{self.manifest.get('structures')} structures; rebuild the cache")
            return data
        entries = list(_stream_structures(self.path))
        return {key: [e[name] for e in entries] for key, name in
                (("ids", "id"), ("space_groups", "space_group"), ("formulas", "formula"))}

    @cached_property
    def _structures(self) -> list[dict[str, Any]]:
        if not (self.path / "structures.jsonl.gz").is_file():
            raise CacheError(f"{self.path}: imported from a compact export, which carries peak lists but no "
                             "structures; build the data set from its source for structures (images, generators)")
        return [e["structure"] for e in _stream_structures(self.path)]

    @cached_property
    def ids(self) -> list[str]:
        return list(self._index["ids"])

    @cached_property
    def formulas(self) -> list[str]:
        return list(self._index["formulas"])

    @cached_property
    def space_groups(self) -> np.ndarray:
        return np.array(self._index["space_groups"], dtype=np.int64)

    @cached_property
    def simulated(self) -> np.ndarray:
        """True for structures whose peaks exist (a failed simulation is listed in the manifest)."""
        ok = np.zeros(len(self), dtype=bool)
        for k in range(self.manifest["chunks"]):
            ok[k * self.chunk_size:(k + 1) * self.chunk_size] = self.chunk(k)["ok"]
        return ok

    def __len__(self) -> int:
        return len(self.ids)

    def indices(self, split: str) -> np.ndarray:
        """Positions of the structures of one split (``train``, ``val``, ``test``) that have peaks."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        wanted = set(self.split.ids[split])
        return np.array([i for i, id_ in enumerate(self.ids) if id_ in wanted and self.simulated[i]], dtype=np.int64)

    def describe(self) -> dict[str, Any]:
        """What runs and results record about the data they used: where, which build, which split."""
        return {"path": str(self.path.resolve()), "dataset": self.manifest["spec"]["dataset"],
                "key": self.manifest["key"], "split_hash": self.manifest["split_hash"],
                "split_counts": {s: len(self.indices(s)) for s in SPLITS}}

    def peaks(self, index: int) -> PeakList:
        return peak_list_at(self.chunk(index // self.chunk_size), index % self.chunk_size)

    def structure(self, index: int) -> Structure:
        return structure_from_stored(self._structures[index])

    def chunk(self, k: int) -> dict[str, np.ndarray]:
        if k not in self._chunks:
            folder = self.path / "peaks" / f"{k:05d}"
            self._chunks[k] = {p.stem: np.load(p, mmap_mode="r") for p in folder.glob("*.npy")}
        return self._chunks[k]


# --- chunks ------------------------------------------------------------------------------------


def peak_list_at(arrays: Mapping[str, np.ndarray], j: int) -> PeakList:
    """Peak list ``j`` of arrays laid out as a chunk is (:func:`write_peak_chunk`: ``offsets`` into
    the peak arrays, one row per structure of the others), as float64/int64 copies."""
    from xrdcore.diffraction.pxrd import PeakList

    lo, hi = int(arrays["offsets"][j]), int(arrays["offsets"][j + 1])
    return PeakList(arrays["two_theta"][lo:hi].astype(np.float64), arrays["d"][lo:hi].astype(np.float64),
                    arrays["intensity"][lo:hi].astype(np.float64), arrays["hkl"][lo:hi].astype(np.int64),
                    arrays["multiplicity"][lo:hi].astype(np.int64), float(arrays["wavelength"][j]),
                    np.array(arrays["lattice"][j]), np.array(arrays["rotations"][j, :arrays["n_rotations"][j]],
                                                             dtype=np.int64))


#: work per simulation job, in atoms x Å³ (about 16 MOFs): small enough that one huge cell does
#: not leave a worker alone with a long queue behind it. Small cells cost mostly per call, so they
#: are simulated many at once (pxrd.peak_lists): a job of them holds its whole chunk
_SIMULATION_PART_COST = 1e8


def _simulate(out: Path, structures: Sequence[CompactStructure], chunk_size: int, missing: Sequence[int],
              settings: Mapping[str, Any], workers: int, progress: str | None) -> None:
    """Peak lists of the ``missing`` chunks, written as each chunk completes. Jobs of consecutive
    structures (cost ~ atoms x volume, at most about _SIMULATION_PART_COST each) go out in chunk
    order, except the costliest (a handful of giant cells take longer than whole chunks), which go
    first so that they do not finish last."""
    from tqdm import tqdm

    jobs, parts = [], {}
    for k in missing:
        begin, stop = k * chunk_size, min((k + 1) * chunk_size, len(structures))
        cost = np.array([len(c) * abs(np.linalg.det(c.lattice)) for c in structures[begin:stop]])
        # a job starts wherever the running cost passes another multiple of _SIMULATION_PART_COST
        starts = (begin + np.flatnonzero(np.diff(np.cumsum(cost) // _SIMULATION_PART_COST, prepend=-1))).tolist()
        parts[k] = {start: None for start in starts}
        for start, end in zip(starts, starts[1:] + [stop]):
            jobs.append(((k, start, list(structures[start:end]), settings), cost[start - begin:end - begin].sum()))
    costs = np.array([cost for _, cost in jobs])
    first = set(np.argsort(-costs)[:max(1, len(jobs) // 50)].tolist()) if jobs else set()
    jobs = [jobs[i][0] for i in sorted(range(len(jobs)), key=lambda i: (i not in first, i))]
    with tqdm(total=sum(len(job[2]) for job in jobs), unit="pattern", desc=progress, disable=progress is None,
              smoothing=0.05) as bar:
        for k, start, arrays in unordered_map(_simulate_part, jobs, workers):
            parts[k][start] = arrays
            bar.update(len(arrays["offsets"]) - 1)
            if all(v is not None for v in parts[k].values()):
                write_peak_chunk(out / "peaks" / f"{k:05d}", _join_parts([parts[k][s] for s in sorted(parts[k])]))
                del parts[k]


def _simulate_part(job: tuple[int, int, list[CompactStructure], dict]) -> tuple[int, int, dict[str, np.ndarray]]:
    """Peak lists of some structures as flat arrays (module level: it runs in worker processes).
    They are simulated together; if one cannot be, one at a time, to keep the others."""
    from xrdcore.diffraction.pxrd import StructureError, peak_list, peak_lists

    k, start, compacts, settings = job
    structures = [compact.to_structure() for compact in compacts]
    try:
        lists: list[PeakList | None] = list(peak_lists(structures, **settings))
    except StructureError:
        lists = []
        for structure in structures:
            try:
                lists.append(peak_list(structure, **settings))
            except StructureError:
                lists.append(None)
    counts = [0 if p is None else len(p) for p in lists]
    cat = lambda name, dtype, shape=(0,): np.concatenate(  # noqa: E731
        [np.asarray(getattr(p, name), dtype=dtype) for p in lists if p is not None] or [np.zeros(shape, dtype)])
    rotations = np.zeros((len(lists), _MAX_ROTATIONS, 3, 3), dtype=np.int8)
    n_rotations = np.zeros(len(lists), dtype=np.int8)
    for i, p in enumerate(lists):
        if p is not None:
            rotations[i, :len(p.rotations)], n_rotations[i] = p.rotations, len(p.rotations)
    return k, start, {
        "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "two_theta": cat("two_theta", np.float32), "d": cat("d", np.float32),
        "intensity": cat("intensity", np.float32), "hkl": cat("hkl", np.int16, (0, 3)),
        "multiplicity": cat("multiplicity", np.int32),
        "lattice": np.stack([np.zeros((3, 3)) if p is None else p.lattice for p in lists]),
        "wavelength": np.array([0.0 if p is None else p.wavelength for p in lists]),
        "rotations": rotations, "n_rotations": n_rotations, "ok": np.array([p is not None for p in lists]),
    }


def _join_parts(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One chunk's arrays from its parts, in order (peak offsets shifted)."""
    joined = {name: np.concatenate([p[name] for p in parts]) for name in parts[0] if name != "offsets"}
    counts = np.concatenate([np.diff(p["offsets"]) for p in parts])
    joined["offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return joined


def write_peak_chunk(folder: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write every array into a temporary folder, then rename it into place: all or nothing."""
    with write_errors(folder):
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            for name, array in arrays.items():
                with open(tmp / f"{name}.npy", "wb") as handle:
                    np.save(handle, array)
                    handle.flush()
                    os.fsync(handle.fileno())
            os.rename(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _source(name: str, registry: Any | None) -> dict[str, str]:
    """Provenance and licence of a registered data set, for the manifest."""
    if registry is None:
        from xrdcore import get_registry

        registry = get_registry()
    factory = registry.get("dataset", name).load()
    return {"provenance": str(getattr(factory, "provenance", "")), "licence": str(getattr(factory, "licence", ""))}


def _failed_simulations(out: Path, chunks: int) -> int:
    return int(sum((~np.load(out / "peaks" / f"{k:05d}" / "ok.npy")).sum() for k in range(chunks)))


# --- structures and manifest ---------------------------------------------------------------------


def _write_structures(out: Path, records: Sequence[Any]) -> None:
    """index.json (ids, space groups, formulas: what training needs, without reading structures),
    then structures.jsonl.gz (one record per line, streamed: never the whole text in memory).

    structures.jsonl.gz comes last: a rerun takes its presence to mean that reading, labelling and
    de-duplication are done, so everything they produce must already be in place when it appears."""
    atomic_write_json(out / "index.json", {"ids": [r.id for r in records],
                                           "space_groups": [r.space_group for r in records],
                                           "formulas": [r.formula for r in records]})
    tmp = out / f".structures.jsonl.gz{TEMPORARY_SUFFIX}"
    with write_errors(out / "structures.jsonl.gz"):
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, filename="",
                                                   mtime=0) as handle:
            for i, r in enumerate(records):
                line = json.dumps({"id": r.id, "space_group": r.space_group, "formula": r.formula,
                                   "structure": r.compact.stored()})
                handle.write((("\n" if i else "") + line).encode())
        os.replace(tmp, out / "structures.jsonl.gz")


def _stream_structures(out: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(out / "structures.jsonl.gz", "rt") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _read_manifest(path: Path) -> dict[str, Any]:
    file = path / "manifest.json"
    if not file.is_file():
        raise CacheError(f"{path}: not an xrdcore cache (no manifest.json)")
    try:
        manifest = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise CacheError(f"{file}: not valid JSON ({exc})") from None
    if manifest.get("format") != CACHE_FORMAT:
        raise CacheError(f"{file}: format {manifest.get('format')!r}, expected {CACHE_FORMAT!r}")
    return manifest


def summarise(cache: PeakCache, levels: Sequence[str] = ("crystal_system", "bravais", "point_group")) -> dict[str, Any]:
    """Counts per split, space group and level: what `xrdcore data info` prints."""
    from xrdcore.crystal import level, space_group

    summary: dict[str, Any] = {"path": str(cache.path), "dataset": cache.manifest["spec"]["dataset"],
                               "structures": len(cache), "split_hash": cache.manifest["split_hash"],
                               "duplicates_removed": cache.manifest["duplicates_removed"],
                               "rejected": cache.manifest["rejected"],
                               "simulation_failures": cache.manifest["simulation_failures"],
                               "splits": {s: int(len(cache.indices(s))) for s in SPLITS}}
    numbers, counts = np.unique(cache.space_groups, return_counts=True)
    summary["space_groups"] = {f"{n} {space_group(int(n)).symbol}": int(c) for n, c in zip(numbers, counts)}
    for name in levels:
        lv = level(name)
        per_class = np.bincount(lv.index(cache.space_groups), minlength=len(lv))
        summary[name] = {lv.classes[i]: int(c) for i, c in enumerate(per_class) if c}
    return summary
