"""Measured powder patterns from text files (.xy, .xye, .csv, .txt, .dat) and powder CIFs (pdCIF),
checked, moved to another wavelength, and put on a model's 2θ grid.

Instrument exports differ in header lines, comment marks, delimiters, line ends and byte-order marks;
their content does not: 2θ in degrees, intensity, and sometimes its standard uncertainty. Anything
that is not plainly such a table is refused with the file and the line, because a model fed a misread
pattern still answers, only wrongly.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xrdcore.diffraction.radiation import wavelength as parse_wavelength

if TYPE_CHECKING:
    from xrdcore.diffraction.grid import AngleGrid

#: the column counts each extension may hold: 2θ, intensity, and as a third column the intensity's
#: standard uncertainty (sigma); a .csv/.txt/.dat file takes either, the same on every row
COLUMNS: dict[str, tuple[int, ...]] = {".xy": (2,), ".xye": (3,), ".csv": (2, 3), ".txt": (2, 3),
                                        ".dat": (2, 3)}
#: a line whose first non-blank character is one of these is a comment
COMMENT_MARKS = ("#", "!", ";", "%")
# control characters never found in a text table (tab, line ends, form feeds are allowed)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
# the line end before a blank line or a comment line (line ends made "\n", one put before the text)
_SKIPPED = re.compile(r"\n[^\S\n]*(?=[\n" + re.escape("".join(COMMENT_MARKS)) + r"]|\Z)")
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+\s*$")


class PatternError(ValueError):
    """A pattern file that cannot be read as a pattern; the message starts with the file's path."""


@dataclass(frozen=True, eq=False)
class MeasuredPattern:
    """A measured pattern as read: ``two_theta`` in degrees (float64, strictly increasing, within
    (0, 180)), ``intensity`` in the file's units (counts or arbitrary, non-negative), ``sigma`` the
    intensity's standard uncertainty where the file gives one (third column), else None.

    The arrays are read-only copies, so a pattern can be shared without being changed under a reader.
    """

    two_theta: np.ndarray
    intensity: np.ndarray
    sigma: np.ndarray | None
    source: Path
    wavelength: float | None = None
    #: what the reader did to the file's values, to be shown with any result (a descending scan put
    #: in ascending order, repeated angles averaged); empty when the values are as written
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("two_theta", "intensity", "sigma"):
            value = getattr(self, name)
            if value is not None:
                array = np.array(value, dtype=np.float64)
                array.setflags(write=False)
                object.__setattr__(self, name, array)
        object.__setattr__(self, "source", Path(self.source))
        shapes = {a.shape for a in (self.two_theta, self.intensity, self.sigma) if a is not None}
        if len(shapes) != 1 or self.two_theta.ndim != 1 or len(self.two_theta) < 2:
            raise PatternError(f"{self.source}: a pattern needs 1-D two_theta, intensity (and sigma) of one "
                               f"length of at least 2; got shapes {sorted(shapes)}")
        if not (np.isfinite(self.two_theta).all() and np.isfinite(self.intensity).all()
                and (self.sigma is None or np.isfinite(self.sigma).all()) and (np.diff(self.two_theta) > 0).all()):
            raise PatternError(f"{self.source}: 2θ must be finite and strictly increasing, intensity finite")
        object.__setattr__(self, "notes", tuple(str(note) for note in self.notes))


def read_pattern(path: str | os.PathLike) -> MeasuredPattern:
    """Read a measured pattern: 2θ (degrees) and intensity, with sigma from a third column.

    Accepts a header line (a first line with no number in it), comment lines starting with
    ``# ! ; %``, blank lines, LF/CRLF/CR line ends, a UTF-8 or UTF-16 byte-order mark, and fields
    separated by whitespace, tabs, commas or semicolons. Raises :class:`PatternError` for anything
    else, naming the line where there is one.

    Two rules change the file's values, and each adds a line to the pattern's ``notes`` (printed with
    every prediction): a scan written from high to low angle is read in ascending order, and rows
    that repeat an angle (instruments that restart a step) become one point whose intensity is their
    mean (sigma: the standard uncertainty of that mean, sqrt(Σσ²)/n). Angles that go back and forth
    are refused: such a file holds several scans, and no order of them is the measurement.
    """
    source = Path(path)
    text = _read_text(source)
    if source.suffix.lower() == ".cif":
        return _read_pdcif(source, text)
    allowed = COLUMNS.get(source.suffix.lower())
    if allowed is None:
        what = f"extension {source.suffix!r}" if source.suffix else "no extension"
        raise _error(source, f"{what} is not a pattern format; read_pattern reads {', '.join(COLUMNS)}, .cif")
    table, line_numbers = _parse_table(source, text, allowed)
    two_theta, intensity = table[:, 0], table[:, 1]
    sigma = table[:, 2] if table.shape[1] == 3 else None
    two_theta, intensity, sigma, notes = _check_values(source, two_theta, intensity, sigma, line_numbers)
    return MeasuredPattern(two_theta, intensity, sigma, source, notes=notes)


def at_wavelength(pattern: MeasuredPattern, wavelength: str | float) -> MeasuredPattern:
    """The pattern as it would be measured at ``wavelength`` (Å or a line name), from its own (``pattern.wavelength``).

    Each point keeps its d-spacing (2θ' = 2 asin(λ'/λ · sin θ)); intensities are rescaled by the ratio
    of the Lorentz-polarisation factors, as simulated patterns carry that factor. Points beyond 180°
    at the new wavelength are dropped. Absorption and instrument broadening are not converted.
    """
    if pattern.wavelength is None:
        raise _error(pattern.source, "the file does not state its wavelength; give it (e.g. --wavelength MoKa1)")
    wavelength = parse_wavelength(wavelength)
    sin_theta = np.sin(np.radians(pattern.two_theta / 2)) * wavelength / pattern.wavelength
    keep = sin_theta < 1
    if keep.sum() < 2:
        raise _error(pattern.source, f"no part of the pattern is reachable at {wavelength} Å")
    import torch

    from xrdcore.diffraction.pxrd import lorentz_polarisation  # the simulator's, so the two agree

    theta_old = torch.from_numpy(np.radians(pattern.two_theta[keep] / 2))
    theta_new = torch.asin(torch.from_numpy(sin_theta[keep]))
    factor = (lorentz_polarisation(theta_new) / lorentz_polarisation(theta_old)).numpy()
    sigma = None if pattern.sigma is None else pattern.sigma[keep] * factor
    return MeasuredPattern(np.degrees(2 * theta_new.numpy()), pattern.intensity[keep] * factor, sigma,
                           pattern.source, wavelength, pattern.notes)


#: pdCIF tags, in order of preference: 2θ of each point, and the intensity of each point
_PD_TWO_THETA = ("_pd_meas_2theta_scan", "_pd_proc_2theta_corrected")
_PD_RANGE = ("_pd_meas_2theta_range_min", "_pd_meas_2theta_range_max", "_pd_meas_2theta_range_inc")
_PD_INTENSITY = ("_pd_meas_counts_total", "_pd_meas_intensity_total", "_pd_proc_intensity_total",
                 "_pd_proc_intensity_net")


def _read_pdcif(source: Path, text: str) -> MeasuredPattern:
    """A powder CIF: 2θ from a scan loop or from range min/max/inc, the first intensity column that
    the file has (counts, measured, processed total, net), su in parentheses as sigma, and the
    wavelength from ``_diffrn_radiation_wavelength`` (the first one listed)."""
    import gemmi

    try:
        document = gemmi.cif.read_string(text)
    except Exception as exc:  # noqa: BLE001 - gemmi's parse errors carry the line
        raise _error(source, f"not a readable CIF: {exc}") from None
    block = next((b for b in document if any(b.find_values(t) for t in _PD_INTENSITY)), None)
    if block is None:
        raise _error(source, f"no powder pattern in the CIF: none of {', '.join(_PD_INTENSITY)} is there")
    name = next(t for t in _PD_INTENSITY if block.find_values(t))
    intensity, sigma = _cif_numbers(source, block.find_values(name), name)
    scan = next((t for t in _PD_TWO_THETA if block.find_values(t)), None)
    if scan is not None:
        two_theta, _ = _cif_numbers(source, block.find_values(scan), scan)
    elif all(block.find_value(t) for t in _PD_RANGE):
        low, high, step = (gemmi.cif.as_number(block.find_value(t)) for t in _PD_RANGE)
        if not all(math.isfinite(v) for v in (low, high, step)) or step == 0 or not len(intensity):
            raise _error(source, f"{', '.join(_PD_RANGE)} must be numbers, the step not 0, and intensities "
                                 f"given; got {low:g}, {high:g}, {step:g} and {len(intensity)} intensities")
        two_theta = low + step * np.arange(len(intensity))
        if not math.isclose(two_theta[-1], high, abs_tol=abs(step) / 2):
            raise _error(source, f"{len(intensity)} intensities from {low:g} in steps of {step:g} end at "
                                 f"{two_theta[-1]:g}, not at _pd_meas_2theta_range_max {high:g}")
    else:
        raise _error(source, f"no 2θ in the CIF: neither {' nor '.join(_PD_TWO_THETA)} nor {', '.join(_PD_RANGE)}")
    if len(two_theta) != len(intensity):
        raise _error(source, f"{len(two_theta)} 2θ values but {len(intensity)} intensities")
    two_theta, intensity, sigma, notes = _check_values(source, two_theta, intensity, sigma,
                                                       np.arange(1, len(two_theta) + 1), "point")
    stated = block.find_values("_diffrn_radiation_wavelength")
    try:
        wavelength = parse_wavelength(gemmi.cif.as_number(stated[0])) if stated else None
    except ValueError as exc:
        raise _error(source, f"_diffrn_radiation_wavelength {stated[0]}: {exc}") from None
    return MeasuredPattern(two_theta, intensity, sigma, source, wavelength, notes)


def _cif_numbers(source: Path, values, tag: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Numbers of a CIF column and their standard uncertainties ("123(4)" → 123, 4) where given."""
    import gemmi

    numbers, uncertainties = [], []
    for value in values:
        number = gemmi.cif.as_number(value)
        if math.isnan(number):
            raise _error(source, f"{tag}: {value!r} is not a number")
        numbers.append(number)
        match = re.fullmatch(r"[-+]?(\d*)\.?(\d*)(?:[eE][-+]?\d+)?\((\d+)\)", value.strip())
        if match:
            uncertainties.append(int(match.group(3)) * 10.0 ** -len(match.group(2)))
    sigma = np.array(uncertainties) if len(uncertainties) == len(numbers) else None
    return np.array(numbers, dtype=np.float64), sigma


def resample(pattern: MeasuredPattern, grid: AngleGrid, *, outside: str = "error") -> np.ndarray:
    """The pattern's intensity on ``grid.values`` as float32 relative intensity, maximum 1 (divided by
    the maximum only: zero stays zero, no background is subtracted).

    Where the measurement is as coarse as the grid or coarser, intensity is interpolated linearly.
    Where it is finer (more than 2 measured points per grid step), each grid point takes the mean of
    the measured points within half a step of it: interpolation would sample one noisy reading per
    cell and alias the counting noise into the profile, while the mean uses every count.

    The pattern must cover the grid to within half a grid step at each end, else PatternError; with
    ``outside="zero"`` grid points beyond the measured range are 0 instead (a film measured from 10°
    fed to a model trained on 5–90°).
    """
    if outside not in ("error", "zero"):
        raise ValueError(f"outside must be 'error' or 'zero', got {outside!r}")
    x, y = pattern.two_theta, pattern.intensity
    angles = grid.values
    half = grid.step / 2
    covered = (angles >= x[0] - half) & (angles <= x[-1] + half)
    needs = f"{angles[0]:.2f}-{angles[-1]:.2f}"
    if outside == "error" and not covered.all():
        raise _error(pattern.source, f"pattern covers {x[0]:.2f}-{x[-1]:.2f} deg 2theta, the model's grid "
                                     f"needs {needs} (outside='zero' pads it with 0)")
    values = np.interp(angles, x, y)
    if grid.axis == "two_theta" and grid.step * (len(x) - 1) / (x[-1] - x[0]) > 2:
        cell = np.floor((x - grid.start) / grid.step + 0.5).astype(np.int64)  # nearest grid point
        inside = (cell >= 0) & (cell < grid.length)
        counts = np.bincount(cell[inside], minlength=grid.length)
        sums = np.bincount(cell[inside], weights=y[inside], minlength=grid.length)
        filled = counts > 0
        values[filled] = sums[filled] / counts[filled]
    values[~covered] = 0.0
    top = values.max()
    if not top > 0:
        raise _error(pattern.source, f"intensity is zero everywhere on the grid {needs} deg 2theta; there "
                                     "is nothing to scale to a maximum of 1")
    return (values / top).astype(np.float32)


def _error(source: Path, problem: str) -> PatternError:
    return PatternError(f"{source}: {problem}")


def _read_text(source: Path) -> str:
    """The file's text: UTF-8 (BOM optional), UTF-16 with a BOM, or Latin-1 when it is not UTF-8
    (Windows instrument software writes a header's ° that way)."""
    if source.is_dir():
        raise _error(source, "is a directory, not a pattern file")
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise _error(source, "no such file") from None
    except PermissionError:
        raise _error(source, "cannot be read (permission denied)") from None
    except OSError as exc:
        raise _error(source, f"cannot be read ({exc.strerror or exc})") from None
    if not raw.strip():
        raise _error(source, "file is empty" if not raw else "file is empty (only whitespace)")
    try:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = raw.decode("utf-16")
        else:
            text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise _error(source, "starts with a UTF-16 byte-order mark but is not UTF-16 text") from None
        text = raw.decode("latin-1")
    control = _CONTROL.search(text)
    if control:
        line = text.count("\n", 0, control.start()) + 1
        code = ord(control.group())
        raise _error(source, f"not a text file: control character 0x{code:02x} on line {line}")
    return text


def _parse_table(source: Path, text: str, allowed: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The numeric rows as a (rows, columns) float64 array and each row's line number (from 1)."""
    text = "\n" + text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")[1:]
    keep = [True] * len(lines)
    line, position = 1, 0
    for match in _SKIPPED.finditer(text):  # a regex: a Python test of each of 100k lines is slow
        line += text.count("\n", position, match.start())
        position, keep[line - 1] = match.start(), False
    line_numbers = list(compress(range(1, len(lines) + 1), keep))
    contents = list(compress(lines, keep))
    if contents and not any(_is_number(field) for field in contents[0].split(_delimiter(contents[0]))):
        del line_numbers[0], contents[0]  # a header: the first content line, holding no number at all
    if not contents:
        raise _error(source, "no data rows (only comments, blank lines or a header)")
    if len(contents) == 1:
        raise _error(source, f"only one data row (line {line_numbers[0]}); a pattern needs at least two")
    delimiter = _delimiter(contents[0])
    try:  # numpy's C parser for speed; the loop below is the definition and says what is wrong
        table = np.loadtxt(contents, dtype=np.float64, delimiter=delimiter, comments=None, ndmin=2)
        if table.shape[1] in allowed:
            return table, np.array(line_numbers)
    except ValueError:
        pass
    return _parse_rows(source, line_numbers, contents, delimiter, allowed), np.array(line_numbers)


def _parse_rows(source: Path, line_numbers: list[int], contents: list[str], delimiter: str | None,
                allowed: tuple[int, ...]) -> np.ndarray:
    """Row by row, raising PatternError at the first row with the wrong width or a non-number."""
    width, first_line = None, None
    values: list[float] = []
    for number, content in zip(line_numbers, contents):
        content = content.strip()
        fields = content.split(delimiter)
        if width is None:
            if len(fields) not in allowed:
                raise _error(source, f"line {number} has {_columns(len(fields))}, expected "
                                     f"{_expected(allowed)}: {content[:60]!r}")
            width, first_line = len(fields), number
        elif len(fields) != width:
            like = f" like line {first_line}" if len(allowed) > 1 else ""
            raise _error(source, f"line {number} has {_columns(len(fields))}, expected {width}{like}: "
                                 f"{content[:60]!r}")
        for field in fields:
            if not _is_number(field):
                raise _error(source, _bad_field(number, field))
            values.append(float(field))
    return np.array(values, dtype=np.float64).reshape(-1, width)


def _check_values(source: Path, two_theta: np.ndarray, intensity: np.ndarray, sigma: np.ndarray | None,
                  line_numbers, unit: str = "line"):
    """Refuse values no diffractometer records, naming the first line (``unit``: "line", or "point"
    of a pdCIF) of each kind of fault; then the rules of :func:`read_pattern` for descending scans and
    repeated angles. Returns (two_theta, intensity, sigma, notes), ascending and distinct."""
    line_numbers = np.asarray(line_numbers)
    columns = (two_theta, intensity) if sigma is None else (two_theta, intensity, sigma)
    bad = ~np.isfinite(np.stack(columns, axis=1)).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        shown = " ".join(repr(float(c[row])) for c in columns)
        raise _error(source, f"{unit} {line_numbers[row]} has a non-finite value (NaN or infinity): {shown}")
    bad = (two_theta <= 0) | (two_theta >= 180)
    if bad.any():
        row = int(np.argmax(bad))
        raise _error(source, f"{unit} {line_numbers[row]}: 2θ = {two_theta[row]:g} deg is outside (0, 180) "
                             f"degrees ({int(bad.sum())} such {unit}s)")
    step = np.diff(two_theta)
    descending = bool(step[np.flatnonzero(step)[0]] < 0) if step.any() else False
    backwards = step > 0 if descending else step < 0
    if backwards.any():
        row = int(np.argmax(backwards))
        line, previous = line_numbers[row + 1], line_numbers[row]
        way = ("increases", "descending") if descending else ("decreases", "ascending")
        raise _error(source, f"2θ {way[0]} at {unit} {line} ({two_theta[row + 1]:g} after {two_theta[row]:g} "
                             f"deg on {unit} {previous}) in a scan that is otherwise {way[1]}; a pattern's "
                             "angles run one way (several scans in one file?)")
    for name, column in (("intensities", intensity), ("sigma values", sigma)):
        if column is not None and (column < 0).any():
            negative = column < 0
            row = int(np.argmax(negative))
            raise _error(source, f"{int(negative.sum())} negative {name}, the first on {unit} "
                                 f"{line_numbers[row]} ({column[row]:g})")
    notes = []
    if descending:
        notes.append(f"the file runs from high to low angle ({two_theta[0]:g} to {two_theta[-1]:g} deg 2θ); "
                     "read in ascending order")
        two_theta, intensity, line_numbers = two_theta[::-1], intensity[::-1], line_numbers[::-1]
        sigma = None if sigma is None else sigma[::-1]
    repeated = np.diff(two_theta) == 0
    if repeated.any():
        first = int(np.argmax(repeated))
        starts = np.flatnonzero(np.concatenate([[True], ~repeated]))  # the first row of each angle
        counts = np.diff(np.concatenate([starts, [len(two_theta)]]))
        if len(starts) < 2:
            raise _error(source, f"all {len(two_theta)} rows have the same 2θ ({two_theta[0]:g} deg); a pattern "
                                 "needs at least two angles")
        repeats = int((counts > 1).sum())
        notes.append(f"{repeats} {'angle appears' if repeats == 1 else 'angles appear'} more than once (the first, "
                     f"{two_theta[first]:g} deg, on {unit}s {min(line_numbers[first:first + 2])} and "
                     f"{max(line_numbers[first:first + 2])}); the intensities of equal angles are averaged")
        two_theta = two_theta[starts]
        intensity = np.add.reduceat(intensity, starts) / counts
        if sigma is not None:  # the standard uncertainty of a mean of independent readings
            sigma = np.sqrt(np.add.reduceat(sigma ** 2, starts)) / counts
    if intensity.min() == intensity.max():
        raise _error(source, f"all {len(intensity)} intensities are equal ({intensity[0]:g}); a constant "
                             "is not a diffraction pattern")
    return two_theta, intensity, sigma, tuple(notes)


def _delimiter(content: str) -> str | None:
    """The field separator of a data line: semicolon, else comma, else (None) whitespace."""
    return ";" if ";" in content else "," if "," in content else None


def _is_number(field: str) -> bool:
    """Whether a field is a plain decimal number (ASCII, no ``_`` separators, which float() allows
    but no instrument writes), or nan/inf (refused later, with their line)."""
    core = field.strip()
    if not core.isascii() or "_" in core:
        return False
    try:
        float(field)
    except ValueError:
        return False
    return True


def _bad_field(number: int, field: str) -> str:
    if not field.strip():
        return f"line {number} has an empty value"
    hint = " (a decimal comma? use '.')" if _DECIMAL_COMMA.match(field) else ""
    return f"line {number} has a non-numeric value {field.strip()!r}{hint}"


def _columns(count: int) -> str:
    return f"{count} column" if count == 1 else f"{count} columns"


def _expected(allowed: tuple[int, ...]) -> str:
    return " or ".join(map(str, allowed)) + " (2θ, intensity" + (", sigma)" if 3 in allowed else ")")
