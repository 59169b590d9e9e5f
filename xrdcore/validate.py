"""Argument checks shared by encoders, schedulers and augmentations, so that a bad value is refused
with the same kind of message everywhere: the argument's name, what it must be, what it got."""

from __future__ import annotations

import math
from typing import Any


def _is_real(value: Any) -> bool:
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
    if not _is_real(value) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def positive_float(name: str, value: Any, unit: str = "") -> float:
    """``value`` as a positive finite float; ``unit`` (e.g. ``"mm"``) is named in the message."""
    if not _is_real(value) or value <= 0:
        where = f" in {unit}" if unit else ""
        raise ValueError(f"{name} must be a positive finite number{where}, got {value!r}")
    return float(value)
