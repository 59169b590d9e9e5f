"""Argument checks shared by encoders, schedulers and augmentations, so that a bad value is refused
with the same kind of message everywhere: the argument's name, what it must be, what it got."""

from __future__ import annotations

import math
from typing import Any


def is_real(value: Any) -> bool:
    """A finite int or float, not a bool (JSON numbers as a reader may trust them)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is an int >= 1 (a bool is not)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def int_tuple(name: str, values: Any, *, allow_empty: bool = False) -> tuple[int, ...]:
    """``values`` (one int or a sequence of them) as a tuple of positive ints."""
    if isinstance(values, int) and not isinstance(values, bool):
        values = (values,)
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of positive ints, got {values!r}")
    try:
        out = tuple(values)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of positive ints, got {values!r}") from None
    if not out and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    for value in out:
        positive_int(f"each of {name}", value)
    return out


def fraction(name: str, value: Any) -> float:
    """``value`` as a float in [0, 1), e.g. a dropout probability."""
    if not is_real(value) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def positive_float(name: str, value: Any, unit: str = "") -> float:
    """``value`` as a positive finite float; ``unit`` (e.g. ``"mm"``) is named in the message."""
    if not is_real(value) or value <= 0:
        where = f" in {unit}" if unit else ""
        raise ValueError(f"{name} must be a positive finite number{where}, got {value!r}")
    return float(value)


# --- options that reach C extensions (spglib, gemmi, numpy) or size a computation ---------------------
#
# Every numeric option of the command line and of the Python API it calls goes through one of these
# before any library sees it: spglib, for one, dereferences garbage for a negative or NaN symprec and
# kills the process with a segmentation fault instead of raising.

#: the spglib distance tolerance (Å) accepted: below 1e-6 Å it is under the precision of any stored
#: coordinate; above 1 Å it merges distinct atoms of every real crystal (the closest atoms we accept,
#: xrdcore.data.validation.MIN_DISTANCE, are 0.5 Å apart)
SYMPREC_RANGE = (1e-6, 1.0)
#: the largest seed: seeds are stored in JSON and passed to numpy and torch as 64-bit integers
MAX_SEED = 2**63 - 1


def number_in(name: str, value: Any, low: float | None = None, high: float | None = None, *, unit: str = "",
              low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within [low, high] (an end is excluded where ``*_open``; None: no bound)."""
    below = low is not None and (value <= low if low_open else value < low) if is_real(value) else True
    above = high is not None and (value >= high if high_open else value > high) if is_real(value) else True
    if not is_real(value) or below or above:
        where = f" {unit}" if unit else ""
        left = "any" if low is None else f"{'(' if low_open else '['}{low:g}"
        right = "any" if high is None else f"{high:g}{')' if high_open else ']'}"
        span = (f"in {left}, {right}{where}" if low is not None and high is not None else
                f"{'>' if low_open else '>='} {low:g}{where}" if low is not None else
                f"{'<' if high_open else '<='} {high:g}{where}" if high is not None else "")
        raise ValueError(f"{name} must be a finite number {span}".rstrip() + f", got {value!r}")
    return float(value)


def non_negative_int(name: str, value: Any, high: int | None = None) -> int:
    """``value`` if it is an int >= 0 (and <= ``high``); a bool is not."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (high is not None and value > high):
        bound = f" up to {high}" if high is not None else ""
        raise ValueError(f"{name} must be a non-negative int{bound}, got {value!r}")
    return value


def optional_positive_int(name: str, value: Any) -> int | None:
    """None (no limit) or a positive int: a limit of 0 would build or score nothing."""
    return None if value is None else positive_int(name, value)


def workers(value: Any, name: str = "workers") -> int:
    """A number of worker processes: at least 1, and at most 8 per CPU core (or 64), beyond which
    processes only cost memory: a typo of 100000 would start 100000 interpreters."""
    import os

    high = max(64, 8 * (os.cpu_count() or 1))
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValueError(f"{name} must be a positive int up to {high} (8 per CPU core), got {value!r}")
    return value


def seed(value: Any, name: str = "seed") -> int:
    """A random seed: an int in [0, 2**63): reproducible, storable in JSON, accepted by numpy and torch."""
    return non_negative_int(name, value, MAX_SEED)


def seeds(values: Any, name: str = "seeds") -> tuple[int, ...]:
    """One seed or a non-empty sequence of distinct ones (a string such as ``"0,1"`` is refused:
    it would be read character by character)."""
    if isinstance(values, int) and not isinstance(values, bool):
        values = (values,)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a sequence of ints >= 0 such as (0, 1, 2), got {values!r}")
    out = tuple(seed(value, f"each of {name}") for value in values)
    if not out or len(set(out)) != len(out):
        raise ValueError(f"{name} must be one or more distinct seeds, got {values!r}")
    return out


def symprec(value: Any, name: str = "symprec") -> float:
    """spglib's distance tolerance in Å, within :data:`SYMPREC_RANGE`."""
    return number_in(name, value, *SYMPREC_RANGE, unit="Å")


def angle_tolerance(value: Any, name: str = "angle_tolerance") -> float:
    """spglib's angle tolerance in degrees: -1 (spglib's own default) or in (0, 180)."""
    if is_real(value) and value == -1:
        return -1.0
    if not is_real(value) or not 0 < value < 180:
        raise ValueError(f"{name} must be -1 (spglib's default) or a number of degrees in (0, 180), got {value!r}")
    return float(value)


def choice(name: str, value: Any, choices: Any) -> Any:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, (str, int, float)) or value not in tuple(choices):
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def spglib_cell(lattice: Any, positions: Any, types: Any, name: str = "cell") -> tuple:
    """(lattice, positions, types) as spglib reads them, refused unless spglib can take them: spglib
    crashes the process (segmentation fault) on a NaN or infinite lattice or position."""
    import numpy as np

    lattice, positions = np.asarray(lattice, dtype=float), np.asarray(positions, dtype=float)
    types = np.asarray(types)
    if lattice.shape != (3, 3) or positions.ndim != 2 or positions.shape[1:] != (3,) or not len(positions):
        raise ValueError(f"{name}: spglib needs a 3x3 lattice and at least one position of 3 fractional "
                         f"coordinates, got shapes {lattice.shape} and {positions.shape}")
    if types.shape != (len(positions),):
        raise ValueError(f"{name}: {len(positions)} positions but {types.size} atom types")
    if not np.isfinite(lattice).all() or not np.isfinite(positions).all():
        raise ValueError(f"{name}: the lattice or a position is not finite (NaN or infinity)")
    if not abs(np.linalg.det(lattice)) > 1e-6:
        raise ValueError(f"{name}: the lattice vectors are linearly dependent (cell volume "
                         f"{abs(np.linalg.det(lattice)):.3g} Å³)")
    return lattice, positions, types
