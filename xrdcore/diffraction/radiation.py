"""X-ray wavelengths by emission-line name (Å), parsing of a user's wavelength, and the 2θ range
a diffractometer can scan."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

#: characteristic lines of the usual anode materials, in Å; "Ka" is the 2:1 weighted Kα1/Kα2
#: mean. Values as in pymatgen's XRD calculator (tests check that they agree).
WAVELENGTHS: dict[str, float] = {
    "CuKa": 1.54184, "CuKa1": 1.54056, "CuKa2": 1.54439, "CuKb1": 1.39222,
    "MoKa": 0.71073, "MoKa1": 0.70930, "MoKa2": 0.71359, "MoKb1": 0.63229,
    "CrKa": 2.29100, "CrKa1": 2.28970, "CrKa2": 2.29361, "CrKb1": 2.08487,
    "FeKa": 1.93735, "FeKa1": 1.93604, "FeKa2": 1.93998, "FeKb1": 1.75661,
    "CoKa": 1.79026, "CoKa1": 1.78896, "CoKa2": 1.79285, "CoKb1": 1.63079,
    "AgKa": 0.560885, "AgKa1": 0.559421, "AgKa2": 0.563813, "AgKb1": 0.497082,
}


def _is_number(value) -> bool:
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def wavelength(spec: str | float) -> float:
    """Wavelength in Å from a line name (``"CuKa1"``, case-insensitive, ``α`` allowed) or a number."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        value = float(spec)
    else:
        text = str(spec).strip().replace("α", "a").replace("β", "b")
        try:
            value = float(text)
        except ValueError:
            names = {name.lower(): name for name in WAVELENGTHS}
            if text.lower() not in names:
                close = difflib.get_close_matches(text, WAVELENGTHS, n=3, cutoff=0.5) if len(text) < 40 else []
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                shown = repr(spec) if len(repr(spec)) < 60 else repr(str(spec)[:40]) + "…"
                raise ValueError(f"unknown X-ray line {shown}{hint} Known: {', '.join(WAVELENGTHS)}") from None
            return WAVELENGTHS[names[text.lower()]]
    if not 0.01 <= value <= 20:
        raise ValueError(f"wavelength {value} Å is outside 0.01-20 Å")
    return value


def check_two_theta_range(two_theta_range: Sequence[float]) -> tuple[float, float]:
    """(low, high) in degrees, or a ValueError saying what is wrong with them."""
    if isinstance(two_theta_range, (str, bytes)) or not hasattr(two_theta_range, "__len__") \
            or len(two_theta_range) != 2 or not all(_is_number(t) for t in two_theta_range):
        raise ValueError(f"2θ range must be two numbers (low, high) in degrees, got {two_theta_range!r}")
    low, high = (float(t) for t in two_theta_range)
    if not 0 <= low < high <= 180:
        raise ValueError(f"2θ range must satisfy 0 <= low < high <= 180 degrees, got {low}, {high}")
    return low, high
