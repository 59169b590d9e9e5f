"""Where structures come from: raw entries of each source, in a stable order with stable ids.

A source yields :class:`CIFEntry` items (id, CIF text, where it came from) or, for sources that
ship structures as data, ready entries; parsing happens in :func:`parse_entry`, which runs in
worker processes when asked and turns every failure into a reason instead of an exception.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import itertools
import json
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xrdcore.data.cif import UnreadableCIF, parse_cif

if TYPE_CHECKING:
    from pymatgen.core import Structure

#: the CoRE MOF subsets the core-mof package ships (archive names in CoRE_MOF/data)
COREMOF_SUBSETS = ("2019-ASR", "2019-FSR", "2014")


@dataclass(frozen=True)
class CIFEntry:
    """One CIF to parse: its id, its text (None if it could not be read), and where it came from."""

    id: str
    text: str | None
    source: str
    meta: dict[str, Any] = field(default_factory=dict)
    #: why ``text`` is None
    problem: str = ""


@dataclass(frozen=True)
class ParsedEntry:
    """What :func:`parse_entry` returns: (id, structure) pairs, or the reason there are none."""

    entry: CIFEntry
    structures: list[tuple[str, Structure]]
    reason: str = ""
    kind: str = ""


def parse_entry(entry: CIFEntry) -> ParsedEntry:
    """Parse one entry; a file holding several data blocks gives ids ``id#1``, ``id#2``, …

    The entry's ``source`` is added to its meta as ``location``, for later error messages.
    """
    if entry.text is None:
        return ParsedEntry(entry, [], f"{entry.source}: {entry.problem}", "unreadable")
    try:
        structures = parse_cif(entry.text, entry.source)
    except UnreadableCIF as exc:
        kind = "empty" if "is empty" in str(exc) else "unreadable"
        return ParsedEntry(entry, [], str(exc), kind)
    except Exception as exc:  # pymatgen bugs on odd files must not stop a 12,000-file run
        return ParsedEntry(entry, [], f"{entry.source}: {type(exc).__name__}: {exc}", "unreadable")
    entry.meta.setdefault("location", entry.source)
    if len(structures) == 1:
        return ParsedEntry(entry, [(entry.id, structures[0])])
    return ParsedEntry(entry, [(f"{entry.id}#{i}", s) for i, s in enumerate(structures, 1)])


def decode(data: bytes) -> str:
    """CIF bytes as text: UTF-8, else Latin-1 (old CIFs), which cannot fail."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# --- a folder of CIF files ------------------------------------------------------------------


def check_directory(path: str | Path) -> Path:
    """The folder as a Path, or a clear error if it is missing or not a folder."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"CIF folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"{str(folder)!r} is not a folder of CIF files")
    return folder


def cif_directory(path: str | Path, recursive: bool = False) -> Iterator[CIFEntry]:
    """Every ``*.cif`` (any case) in a folder, sorted by relative path; id = path without suffix.

    In a flat folder the id is the file stem; in recursive mode sub-folders stay in the id
    (``sub/name``), so equal stems in different folders remain distinct.
    """
    folder = check_directory(path)
    files = folder.rglob("*") if recursive else folder.glob("*")
    cifs = sorted((f for f in files if f.suffix.lower() == ".cif" and f.is_file()),
                  key=lambda f: f.relative_to(folder).as_posix())
    for file in cifs:
        ident = file.relative_to(folder).with_suffix("").as_posix()
        try:
            text, problem = decode(file.read_bytes()), ""
        except OSError as exc:
            text, problem = None, f"cannot read the file ({exc.strerror or exc})"
        yield CIFEntry(ident, text, str(file), {"file": str(file)}, problem)


# --- a CSV table with a CIF column ------------------------------------------------------------


def check_csv(path: str | Path, cif_column: str, id_column: str) -> Path:
    """The table's path, or a clear error naming what is missing (file, header, column)."""
    table = Path(path).expanduser()
    if not table.is_file():
        raise FileNotFoundError(f"CSV file {str(table)!r} does not exist")
    with table.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise ValueError(f"{table}: the CSV file is empty (no header row)")
    for role, column in (("CIF", cif_column), ("id", id_column)):
        if column not in header:
            raise ValueError(f"{table}: no {role} column {column!r}; columns are: {', '.join(header)}")
    return table


def csv_cifs(path: str | Path, cif_column: str = "cif", id_column: str = "material_id") -> Iterator[CIFEntry]:
    """One entry per row, in file order; the row's other columns go to ``meta``.

    A row without an id gets the id ``row-<n>`` (n = 1-based data row) and is rejected, as is a
    row the csv module cannot split, so the report says which row; reading goes on after both.
    Bytes that are not UTF-8 become U+FFFD: a CIF damaged that way fails to parse, visibly.
    """
    table = check_csv(path, cif_column, id_column)
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))  # CIFs are long
    with table.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.DictReader(handle)
        for row_number in itertools.count(1):
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield CIFEntry(f"row-{row_number}", None, f"{table} row {row_number}", {"row": row_number},
                               f"malformed CSV row ({exc})")
                continue
            ident = (row.get(id_column) or "").strip()
            source = f"{table} row {row_number}" + (f" ({id_column}={ident})" if ident else "")
            meta = {k: v for k, v in row.items() if k not in (cif_column, None)}
            meta["row"] = row_number
            text = row.get(cif_column)
            if not ident:
                yield CIFEntry(f"row-{row_number}", None, source, meta, f"empty {id_column!r} column")
            elif not (text or "").strip():
                yield CIFEntry(ident, None, source, meta, f"empty {cif_column!r} column")
            else:
                yield CIFEntry(ident, text, source, meta)


# --- CoRE MOF (the core-mof package) ------------------------------------------------------------


def coremof_archive(subset: str = "2019-ASR") -> Path:
    """The archive of a CoRE MOF subset inside the installed core-mof package."""
    if subset not in COREMOF_SUBSETS:
        raise ValueError(f"unknown CoRE MOF subset {subset!r}; the core-mof package ships "
                         f"{', '.join(COREMOF_SUBSETS)}")
    try:
        import CoRE_MOF.data
    except ImportError:
        raise ImportError("the coremof data set needs the core-mof package: pip install core-mof") from None
    archive = Path(str(resources.files(CoRE_MOF.data) / f"{subset}.tar.xz"))
    if not archive.is_file():
        raise FileNotFoundError(f"core-mof is installed but has no {archive.name} ({archive})")
    return archive


def coremof_size(subset: str = "2019-ASR") -> int | None:
    """The number of CIFs in a subset, from the property table the package ships beside the
    archive (one row per CIF), without decompressing the archive; None if the table is missing."""
    table = coremof_archive(subset).with_suffix("").with_suffix(".csv")
    if not table.is_file():
        return None
    with table.open(newline="", encoding="utf-8", errors="replace") as handle:
        return max(0, sum(1 for _ in csv.reader(handle)) - 1)


def coremof_cifs(subset: str = "2019-ASR") -> Iterator[CIFEntry]:
    """CIFs of a CoRE MOF subset in archive order (sorted by name), streamed: no index of the
    whole archive is built, so the first entries come at once. id = CIF name without ``.cif``."""
    archive = coremof_archive(subset)
    with tarfile.open(archive, "r|xz") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or not name.lower().endswith(".cif") or name.startswith("."):
                continue
            handle = tar.extractfile(member)
            text = decode(handle.read()) if handle is not None else None
            yield CIFEntry(name[:-4], text, f"{archive.name}:{member.name}",
                           {"source": f"CoRE MOF {subset}", "file": member.name},
                           "" if text is not None else "the archive member cannot be read")


# --- AFLOW prototypes shipped with pymatgen ------------------------------------------------------


def aflow_prototype_file() -> Path:
    """pymatgen's copy of the AFLOW prototype library (288 structures).

    Found on disk without importing ``pymatgen.analysis.prototypes``, whose import builds
    every prototype and a matcher (~7 s).
    """
    spec = importlib.util.find_spec("pymatgen")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "analysis" / "prototypes" / "aflow_prototypes.json.gz"
        if path.is_file():
            return path
    raise FileNotFoundError("pymatgen's analysis/prototypes/aflow_prototypes.json.gz was not found: "
                            "the prototypes data set needs a pymatgen release that ships it")


def aflow_prototypes() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(id, structure dict, meta) per prototype, in file order.

    id = ``aflow-<AFLOW label>``; the 15 labels that occur more than once (same Wyckoff
    pattern, different parameters: marcasite and hydrophilite, …) get ``-2``, ``-3`` in file
    order. ``meta`` keeps the AFLOW label, Pearson symbol, Strukturbericht designation and
    mineral name, and the space group the AFLOW label claims (``aflow_space_group``).
    """
    path = aflow_prototype_file()
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        entries = json.load(handle)
    seen: Counter[str] = Counter()
    for number, entry in enumerate(entries):
        tags = dict(entry.get("tags", {}))
        label = str(tags.get("aflow") or f"entry{number}")
        seen[label] += 1
        ident = f"aflow-{label}" + (f"-{seen[label]}" if seen[label] > 1 else "")
        parts = label.split("_")
        claimed = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
        meta = {"source": "aflow", "aflow": label, "pearson": tags.get("pearson"),
                "strukturbericht": tags.get("strukturbericht"), "mineral": tags.get("mineral"),
                "aflow_space_group": claimed}
        yield ident, entry.get("snl") or entry.get("structure") or {}, meta


def structure_from_dict(data: dict[str, Any]) -> Structure:
    """A pymatgen Structure from a Structure or StructureNL dict."""
    from pymatgen.core import Structure

    return Structure.from_dict(data)

