"""The 2θ grid of a profile, :class:`AngleGrid`, and :data:`DEFAULT_GRID`, the one declaration of
the default geometry. Free of torch at import (methods take tensors and use their methods), so the
data layer and the simulator's workers can take their defaults from it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


#: axes a profile can be sampled on: uniform in 2θ, or uniform in ln(1/d) (= ln sin θ + const)
AXES = ("two_theta", "log_d")


@dataclass(frozen=True)
class AngleGrid:
    """The points of a profile between 2θ ``start`` and ``stop`` (degrees, stop excluded), with the
    number of points of a ``step`` (degrees): the one description of an input's geometry, which
    simulators, rendering and encoders take (its defaults are :data:`DEFAULT_GRID`).

    ``axis="two_theta"`` spaces them uniformly in 2θ. ``axis="log_d"`` spaces the same number of
    points uniformly in ln(1/d) = ln(2 sin θ / λ) over the same range: a change of every d-spacing
    by a factor (a strained, breathing or isostructural crystal: the same space group) moves every
    peak by the same number of points, so convolutions and pooling see it as a shift. Points are
    then denser than ``step`` at low angle and sparser at high angle (where MOF patterns are a
    dense, weak forest of peaks).
    """

    start: float = 5.0
    stop: float = 90.0
    step: float = 0.01
    axis: str = "two_theta"

    def __post_init__(self):
        values = (self.start, self.stop, self.step)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise ValueError(f"2θ grid needs finite start, stop, step; got {values}")
        for name, value in zip(("start", "stop", "step"), values):
            object.__setattr__(self, name, float(value))
        if not 0 <= self.start < self.stop <= 180:
            raise ValueError(f"2θ grid must satisfy 0 <= start < stop <= 180 degrees, got {self.start}, {self.stop}")
        if not 0 < self.step <= self.stop - self.start:
            raise ValueError(f"2θ step must be positive and below the range, got {self.step}")
        if self.length > 10_000_000:
            raise ValueError(f"2θ grid of {self.length} points is too fine")
        if self.axis not in AXES:
            raise ValueError(f"axis must be one of {', '.join(AXES)}, got {self.axis!r}")
        if self.axis == "log_d" and (self.start <= 0 or self.stop >= 180):
            raise ValueError(f"a log_d axis needs 0 < start and stop < 180 degrees, got {self.start}, {self.stop}")

    @property
    def length(self) -> int:
        return int(round((self.stop - self.start) / self.step))

    @property
    def _log_bounds(self) -> tuple[float, float]:
        """ln sin θ at the first point and its spacing (log_d axis)."""
        first, last = (math.log(math.sin(math.radians(t / 2))) for t in (self.start, self.stop))
        return first, (last - first) / self.length

    @property
    def values(self) -> np.ndarray:
        """2θ of every point, degrees."""
        if self.axis == "two_theta":
            return self.start + self.step * np.arange(self.length)
        first, spacing = self._log_bounds
        return np.degrees(2 * np.arcsin(np.exp(first + spacing * np.arange(self.length))))

    def position(self, two_theta: torch.Tensor) -> torch.Tensor:
        """Fractional point index of each angle (degrees 2θ); angles at or below 0° map far left."""
        if self.axis == "two_theta":
            return (two_theta - self.start) / self.step
        first, spacing = self._log_bounds
        sin = (two_theta.double() / 2).deg2rad().sin().clamp(min=1e-12)
        return ((sin.log() - first) / spacing).to(two_theta.dtype)

    def points_per_degree(self, two_theta: torch.Tensor) -> torch.Tensor:
        """d(point index)/d(2θ in degrees) at each angle: 1/step, or cot θ · π/360 / Δln sin θ."""
        if self.axis == "two_theta":
            return two_theta.new_full(two_theta.shape, 1 / self.step)
        theta = (two_theta.double() / 2).deg2rad().clamp(min=1e-6)
        return (math.pi / 360 / theta.tan() / self._log_bounds[1]).to(two_theta.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "stop": self.stop, "step": self.step, "axis": self.axis}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: AngleGrid | None = None) -> AngleGrid:
        """The grid of :meth:`to_dict`'s fields; fields left out are ``base``'s (the defaults)."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown 2θ grid fields {', '.join(map(repr, unknown))}; "
                             f"use start, stop, step, axis")
        return replace(base or cls(), **data)


#: the one declaration of the default geometry: 5–90° 2θ at 0.01°, uniform in 2θ, the 8,500
#: points of the published models; other grids are derived from it (``replace(DEFAULT_GRID, step=...)``)
DEFAULT_GRID = AngleGrid()


def as_grid(name: str, value: AngleGrid | Mapping[str, Any], base: AngleGrid = DEFAULT_GRID) -> AngleGrid:
    """``value`` as a grid: an :class:`AngleGrid`, or a mapping of some of its fields (the rest
    ``base``'s), the form a grid takes in JSON settings and command-line options."""
    if isinstance(value, AngleGrid):
        return value
    if isinstance(value, Mapping):
        return AngleGrid.from_dict(value, base)
    raise ValueError(f"{name} must be an AngleGrid or a mapping of start, stop, step, axis; got {value!r}")
