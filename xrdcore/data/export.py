"""A built peak cache as one compact file, and back: data that travels to a machine without
pymatgen (a GPU node; spglib is still imported for its space-group tables) and trains there as it trains here.

What travels: the manifest, the frozen split (its hash is checked on import), the read report,
every entry's id, spglib space group and reduced formula, and every peak list: 2θ to 1e-4°
(delta-coded per pattern) and relative intensities on a 12-bit logarithmic scale between the
simulator's cut-off (0.1% of the strongest) and 100 (at most 0.14% off), plus each pattern's
wavelength and lattice. What does not: the structures (they are only used with pymatgen, for
images and structure generation), the Miller indices and multiplicities of the peaks (only
preferred-orientation augmentation needs them; it refuses an imported cache), and rendered
images. The 12,020-entry CoRE MOF build (9,268 structures, 21 million peaks) exports to 51 MiB.

Layout: the magic line, an 8-byte little-endian header length, a JSON header, then
LZMA-compressed arrays; the header gives each array's dtype, shape, position, length and SHA-256.
Reading parses JSON and decompresses bytes into numpy arrays, nothing else: no pickle, no code.
Sizes are checked against the file before anything is allocated.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import math
import os
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xrdcore.data.cache import CACHE_FORMAT, PeakCache, write_peak_chunk
from xrdcore.data.splits import Split
from xrdcore.storage import atomic_write_bytes, atomic_write_json, directory_lock, holds_other_files

EXPORT_FORMAT = "xrdcore-export/1"
MAGIC = b"XRDCORE-EXPORT\n"
#: 2θ resolution of an export, degrees: 1% of the finest grid step in use (0.01°)
TWO_THETA_QUANTUM = 1e-4
#: relative intensities are stored as round(4095 · log(I / low) / log(high / low))
INTENSITY_RANGE = (1e-3, 100.0)
_LEVELS = 4095
_MAX_HEADER = 64 << 20
_MAX_ARRAY = 4 << 30


class ExportError(ValueError):
    """A file that is not a usable export, or an export that cannot be written; says which and why."""


def export_cache(cache_dir: str | Path, file: str | Path, min_intensity: float | None = None) -> dict[str, Any]:
    """Write the peak cache in ``cache_dir`` to ``file`` (atomically); returns a summary.

    ``min_intensity`` (percent of each pattern's strongest peak) leaves out weaker peaks: a smaller
    file (MOF patterns are mostly peaks below 0.1%, invisible on a linear scale) that is no longer
    the same data: the imported cache's key says so, and runs on it record that key."""
    cache = PeakCache(cache_dir)
    chunks = [cache.chunk(k) for k in range(int(cache.manifest["chunks"]))]
    joined = lambda name, dtype=None: np.concatenate([np.asarray(c[name], dtype=dtype) for c in chunks])  # noqa: E731
    counts = np.concatenate([np.diff(c["offsets"]) for c in chunks]).astype(np.uint32)
    two_theta, intensity = joined("two_theta", np.float64), joined("intensity", np.float64)
    if min_intensity is not None:
        if not _is_percentage(min_intensity):
            raise ExportError(f"min_intensity must be a percentage of the strongest peak in (0, 100), got {min_intensity!r}")
        kept = intensity >= min_intensity
        pattern = np.repeat(np.arange(len(counts)), counts)
        counts = np.bincount(pattern[kept], minlength=len(counts)).astype(np.uint32)
        two_theta, intensity = two_theta[kept], intensity[kept]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    steps = np.round(two_theta / TWO_THETA_QUANTUM).astype(np.int64)
    deltas = np.diff(steps, prepend=0)
    deltas[starts[counts > 0]] = steps[starts[counts > 0]]  # each pattern starts from 0°
    if len(deltas) and (deltas.min() < 0 or deltas.max() >= 2**32):
        raise ExportError(f"{cache.path}: peak positions are not sorted within patterns; not a peak cache")
    arrays: dict[str, np.ndarray] = {"counts": counts}
    arrays["two_theta_steps"] = _byte_planes(deltas.astype(np.uint32))
    arrays["intensity_log"] = _byte_planes(_encode_intensity(intensity))
    arrays["wavelength"] = joined("wavelength", np.float64)
    arrays["lattice"] = joined("lattice", np.float64)
    arrays["ok"] = joined("ok").astype(np.uint8)
    entries = [{"id": i, "space_group": int(g), "formula": f} for i, g, f in zip(cache.ids, cache.space_groups,
                                                                                 cache.formulas)]
    # the cache's completion time (or SOURCE_DATE_EPOCH), not the export's: exporting the same
    # cache again writes the same bytes (an export killed and rerun included)
    created = float(os.environ.get("SOURCE_DATE_EPOCH") or (cache.path / "manifest.json").stat().st_mtime)
    header = {"format": EXPORT_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
              "manifest": cache.manifest, "split": json.loads((cache.path / "split.json").read_text()),
              "report": json.loads((cache.path / "report.json").read_text()), "entries": entries,
              "encoding": {"two_theta_quantum": TWO_THETA_QUANTUM, "intensity_range": list(INTENSITY_RANGE),
                           "intensity_levels": _LEVELS, "min_intensity": min_intensity}, "arrays": {}}
    blobs, position = [], 0
    for name, array in arrays.items():
        blob = lzma.compress(np.ascontiguousarray(array).tobytes(), preset=6)
        header["arrays"][name] = {"dtype": array.dtype.str, "shape": list(array.shape), "offset": position,
                                  "length": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
        blobs.append(blob)
        position += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    data = MAGIC + struct.pack("<Q", len(text)) + text + b"".join(blobs)
    atomic_write_bytes(file, data)
    return {"file": str(file), "bytes": len(data), "structures": len(entries), "peaks": int(counts.sum()),
            "sha256": hashlib.sha256(data).hexdigest()}


def import_cache(file: str | Path, cache_dir: str | Path) -> PeakCache:
    """Unpack an export into a new cache directory ``cache_dir`` and return it as a PeakCache."""
    file, out = Path(file), Path(cache_dir)
    header, arrays = read_export(file)
    with directory_lock(out):  # two imports into one directory: the second is refused
        identity = {"key": _imported_key(header), "created": header.get("created")}
        marker = out / _IMPORTING
        resuming = marker.is_file() and _json_or_none(marker) == identity  # an import of this file, killed
        done = _json_or_none(out / "manifest.json")
        if not resuming and isinstance(done, dict) and done.get("key") == identity["key"] and (
                done.get("imported_from") or {}).get("created") == identity["created"]:
            return PeakCache(out)  # this file was imported here already: the rerun has nothing to do
        if holds_other_files(out) and not resuming:
            raise ExportError(f"{out}: exists and is not empty; import into a new directory")
        atomic_write_json(marker, identity)
        cache = _unpack(file, out, header, arrays)
        marker.unlink()
        return cache


def _imported_key(header: dict[str, Any]) -> Any:
    """The data key of the cache an export unpacks to: the exported cache's, marked when weak peaks
    were left out (other data, which runs must not mistake for the full cache)."""
    key = (header.get("manifest") or {}).get("key")
    weakest = (header.get("encoding") or {}).get("min_intensity")
    return key if weakest is None else f"{key}+peaks>={weakest}%"


#: written first and removed last by an import: a directory holding it and part of the cache is an
#: import of the same file that was killed, which the same command resumes
_IMPORTING = ".importing.json"


def _json_or_none(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _unpack(file: Path, out: Path, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> PeakCache:
    """:func:`import_cache` once ``out`` is locked, on what :func:`read_export` checked: chunks
    already unpacked (all or nothing each) are kept, the manifest is written last."""
    manifest = {**header["manifest"], "key": _imported_key(header)}
    if header["encoding"].get("min_intensity") is not None:
        manifest["min_intensity"] = header["encoding"]["min_intensity"]
    entries, split = header["entries"], header["split"]
    counts = arrays["counts"].astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    two_theta = _two_theta(_from_planes(arrays["two_theta_steps"]).astype(np.int64), counts)
    intensity = _decode_intensity(_from_planes(arrays["intensity_log"]))
    chunk_size = int(manifest["chunk_size"])
    out.mkdir(parents=True, exist_ok=True)
    for k in range(math.ceil(len(entries) / chunk_size)):
        if (out / "peaks" / f"{k:05d}").is_dir():
            continue
        rows = slice(k * chunk_size, (k + 1) * chunk_size)
        n = len(counts[rows])
        lo, hi = int(starts[rows][0]), int(starts[rows][-1] + counts[rows][-1])
        wavelength = arrays["wavelength"][rows]
        theta = np.radians(two_theta[lo:hi] / 2)
        lam = np.repeat(wavelength, counts[rows])
        write_peak_chunk(out / "peaks" / f"{k:05d}", {
            "offsets": np.concatenate([[0], np.cumsum(counts[rows])]).astype(np.int64),
            "two_theta": two_theta[lo:hi].astype(np.float32),
            "d": (lam / (2 * np.sin(theta))).astype(np.float32),
            "intensity": intensity[lo:hi].astype(np.float32),
            "hkl": np.zeros((hi - lo, 3), dtype=np.int16), "multiplicity": np.zeros(hi - lo, dtype=np.int32),
            "lattice": arrays["lattice"][rows], "wavelength": wavelength,
            "rotations": np.tile(np.eye(3, dtype=np.int8), (n, 48, 1, 1)), "n_rotations": np.ones(n, dtype=np.int8),
            "ok": arrays["ok"][rows].astype(bool)})
    atomic_write_json(out / "index.json", {"ids": [e["id"] for e in entries],
                                           "space_groups": [e["space_group"] for e in entries],
                                           "formulas": [e["formula"] for e in entries]})
    atomic_write_bytes(out / "split.json", (json.dumps(split, indent=1) + "\n").encode())
    atomic_write_json(out / "report.json", header["report"])
    manifest["imported_from"] = {"file": str(file), "format": header["format"], "created": header.get("created"),
                                 "encoding": header["encoding"]}
    manifest["peak_indices"] = False
    manifest["structures_included"] = False
    atomic_write_json(out / "manifest.json", manifest)
    return PeakCache(out)


def read_export(file: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and the arrays of an export, every size and checksum verified first."""
    file = Path(file)
    if not file.is_file():
        raise ExportError(f"{file}: no such file")
    size = file.stat().st_size
    with file.open("rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            raise ExportError(f"{file}: not an xrdcore export (it does not start with {MAGIC!r})")
        raw = handle.read(8)
        if len(raw) != 8:
            raise ExportError(f"{file}: truncated before its header")
        (length,) = struct.unpack("<Q", raw)
        if length > min(_MAX_HEADER, size - len(MAGIC) - 8):
            raise ExportError(f"{file}: header of {length} bytes does not fit the file ({size} bytes) or the "
                              f"{_MAX_HEADER >> 20} MiB limit")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
            raise ExportError(f"{file}: the header is not JSON ({exc})") from None
        if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
            raise ExportError(f"{file}: format {header.get('format') if isinstance(header, dict) else None!r}, "
                              f"expected {EXPORT_FORMAT!r}")
        if not isinstance(header.get("manifest"), dict) or header["manifest"].get("format") != CACHE_FORMAT:
            raise ExportError(f"{file}: holds no {CACHE_FORMAT} manifest")
        body = len(MAGIC) + 8 + length
        arrays = {}
        described = header.get("arrays") if isinstance(header.get("arrays"), dict) else {}
        for name in ("counts", "two_theta_steps", "intensity_log", "wavelength", "lattice", "ok"):
            arrays[name] = _read_array(handle, file, name, described.get(name), body, size)
    _check_contents(file, header, arrays)
    return header, arrays


def _check_contents(file: Path, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Everything an import and the imported cache read, checked against each other before anything
    is written: a header edited or damaged in a way JSON allows is refused here, naming what is wrong,
    instead of failing halfway through an import or later in training."""
    def refuse(problem: str) -> ExportError:
        return ExportError(f"{file}: {problem}")

    manifest, entries = header["manifest"], header.get("entries")
    for key in ("split", "report", "encoding"):
        if not isinstance(header.get(key), dict):
            raise refuse(f"the header's {key!r} is missing or not an object")
    encoding = dict(header["encoding"])
    weakest = encoding.pop("min_intensity", None)
    if encoding != {"two_theta_quantum": TWO_THETA_QUANTUM, "intensity_range": list(INTENSITY_RANGE),
                    "intensity_levels": _LEVELS}:
        raise refuse(f"encoded as {header['encoding']}, which this xrdcore does not decode")
    if weakest is not None and not _is_percentage(weakest):
        raise refuse(f"its min_intensity {weakest!r} is not a percentage in (0, 100)")
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("id"), str) and isinstance(e.get("formula"), str)
            and _is_int(e.get("space_group")) and 1 <= e["space_group"] <= 230 for e in entries):
        raise refuse("'entries' must list {id, space_group (1-230), formula} for every structure")
    ids = [e["id"] for e in entries]
    if len(set(ids)) != len(ids):
        raise refuse("an id occurs more than once in 'entries'")
    n = len(entries)
    chunk_size = manifest.get("chunk_size")
    if not (_is_int(chunk_size) and chunk_size > 0) or manifest.get("structures") != n or isinstance(
            manifest.get("structures"), bool) or manifest.get("chunks") != math.ceil(n / chunk_size):
        raise refuse(f"the manifest's structures {manifest.get('structures')!r}, chunk_size {chunk_size!r} and "
                     f"chunks {manifest.get('chunks')!r} do not describe {n} entries")
    if manifest.get("status") != "complete" or not isinstance(manifest.get("spec"), dict) or not isinstance(
            manifest["spec"].get("dataset"), str) or not isinstance(manifest.get("key"), str):
        raise refuse("the manifest is not that of a complete build (status, spec.dataset, key)")
    for key in ("duplicates_removed", "rejected", "simulation_failures"):
        if manifest.get(key) is not None and not _is_int(manifest[key]):
            raise refuse(f"the manifest's {key} must be a count, got {manifest[key]!r}")
    try:
        split = Split.from_dict(header["split"], str(file))
    except ValueError as exc:
        raise refuse(f"the split inside does not verify ({exc})") from None
    if header["split"].get("hash") != manifest.get("split_hash"):
        raise refuse(f"the split hash {header['split'].get('hash')} is not the manifest's {manifest.get('split_hash')}")
    unknown = {i for ids_ in split.ids.values() for i in ids_} - set(ids)
    if unknown:
        raise refuse(f"the split names {len(unknown)} ids that no entry has, e.g. {sorted(unknown)[0]!r}")
    shapes = {"counts": (n,), "wavelength": (n,), "lattice": (n, 3, 3), "ok": (n,)}
    for name, shape in shapes.items():
        if arrays[name].shape != shape:
            raise refuse(f"array {name!r} has shape {arrays[name].shape}, expected {shape} for {n} entries")
    planes = {"two_theta_steps": (4, np.uint8), "intensity_log": (2, np.uint8)}
    for name, (width, dtype) in planes.items():
        if arrays[name].ndim != 2 or arrays[name].shape[0] != width or arrays[name].dtype != dtype:
            raise refuse(f"array {name!r} is {arrays[name].dtype} of shape {arrays[name].shape}, expected "
                         f"{width} byte planes")
    counts = arrays["counts"].astype(np.int64)
    if arrays["counts"].dtype.kind not in "iu" or (counts < 0).any():
        raise refuse("array 'counts' must hold non-negative integers")
    if arrays["two_theta_steps"].shape[1] != counts.sum() or arrays["intensity_log"].shape[1] != counts.sum():
        raise refuse(f"{counts.sum()} peaks listed, {arrays['two_theta_steps'].shape[1]} positions and "
                     f"{arrays['intensity_log'].shape[1]} intensities")
    wavelength, lattice = arrays["wavelength"], arrays["lattice"]
    ok = arrays["ok"].astype(bool)
    if not (np.isfinite(wavelength[ok]).all() and ((wavelength[ok] >= 0.01) & (wavelength[ok] <= 20)).all()
            and np.isfinite(lattice).all() and set(np.unique(arrays["ok"]).tolist()) <= {0, 1}):
        raise refuse("wavelengths (0.01-20 Å), lattices (finite) or the 'ok' flags (0 or 1) are out of range")
    two_theta = _two_theta(_from_planes(arrays["two_theta_steps"]).astype(np.int64), counts)
    if len(two_theta) and not ((two_theta > 0) & (two_theta < 180)).all():
        raise refuse("peak positions outside (0, 180) degrees 2θ: the positions are damaged")
    if (counts[~ok] != 0).any():
        raise refuse("a structure marked as not simulated has peaks")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_percentage(value: Any) -> bool:
    """A ``min_intensity``: a number (not a bool) in (0, 100), checked alike on export and import."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 100


def _two_theta(steps: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """2θ of every peak from the delta-coded steps: cumulative sums restarted at every pattern."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    totals = np.cumsum(steps)
    restart = np.repeat(totals[starts[counts > 0]] - steps[starts[counts > 0]], counts[counts > 0])
    return (totals - restart) * TWO_THETA_QUANTUM


def _read_array(handle: io.BufferedReader, file: Path, name: str, spec: Mapping[str, Any] | None, body: int,
                size: int) -> np.ndarray:
    if not isinstance(spec, Mapping):
        raise ExportError(f"{file}: array {name!r} is missing from the header")
    try:
        dtype, shape = np.dtype(spec["dtype"]), tuple(int(n) for n in spec["shape"])
        offset, length = int(spec["offset"]), int(spec["length"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ExportError(f"{file}: array {name!r} is described badly ({exc})") from None
    if dtype.hasobject or dtype.kind not in "biuf" or any(n < 0 for n in shape) or len(shape) > 8:
        raise ExportError(f"{file}: array {name!r} has dtype {dtype} and shape {shape}: not a plain numeric array")
    expected = math.prod(shape) * dtype.itemsize  # Python integers: no overflow from a forged shape
    if offset < 0 or length < 0 or body + offset + length > size or expected > _MAX_ARRAY:
        raise ExportError(f"{file}: array {name!r} ({length} bytes at {offset}, {expected} unpacked) lies outside "
                          f"the file or above the {_MAX_ARRAY >> 30} GiB limit: the file is truncated or damaged")
    handle.seek(body + offset)
    blob = handle.read(length)
    if hashlib.sha256(blob).hexdigest() != spec.get("sha256"):
        raise ExportError(f"{file}: array {name!r} does not match its SHA-256: the file is damaged")
    decompressor = lzma.LZMADecompressor()
    try:
        data = decompressor.decompress(blob, max_length=expected + 1)
    except lzma.LZMAError as exc:
        raise ExportError(f"{file}: array {name!r} cannot be decompressed ({exc})") from None
    if len(data) != expected or not decompressor.eof:
        raise ExportError(f"{file}: array {name!r} unpacks to {len(data)} bytes, expected {expected}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _byte_planes(values: np.ndarray) -> np.ndarray:
    """(bytes, n) uint8: byte j of every value in row j; runs of equal high bytes compress well."""
    raw = values.astype(values.dtype.newbyteorder("<")).view(np.uint8).reshape(-1, values.dtype.itemsize)
    return np.ascontiguousarray(raw.T)


def _from_planes(planes: np.ndarray) -> np.ndarray:
    width = planes.shape[0]
    dtype = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}[width]
    return np.ascontiguousarray(planes.T).view(dtype).reshape(-1)


def _encode_intensity(values: np.ndarray) -> np.ndarray:
    low, high = INTENSITY_RANGE
    scaled = np.log(np.clip(values, low, high) / low) / math.log(high / low)
    return np.round(scaled * _LEVELS).astype(np.uint16)


def _decode_intensity(levels: np.ndarray) -> np.ndarray:
    low, high = INTENSITY_RANGE
    return low * np.exp(levels.astype(np.float64) / _LEVELS * math.log(high / low))
