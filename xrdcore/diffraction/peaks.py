"""Peaks of a measured (or rendered) powder profile, for encoders that take peak lists.

Profiles are normalised to a maximum of 1 and peaks are local maxima that stand out by a height
and a prominence (XtalNet's settings: 0.01 and 0.02 of the maximum, with scipy's find_peaks).
Each position is refined below the grid step by the vertex of the parabola through the maximum
and its two neighbours, so a peak on a 0.02° grid is placed to a few thousandths of a degree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FoundPeaks:
    """Peaks found in a profile: ``two_theta`` in degrees (increasing) and ``intensity`` relative to
    the strongest (100), the scale of :class:`xrdcore.diffraction.pxrd.PeakList`."""

    two_theta: np.ndarray
    intensity: np.ndarray

    def __len__(self) -> int:
        return len(self.two_theta)


def find_peaks(two_theta: np.ndarray, intensity: np.ndarray, *, height: float = 0.01, prominence: float = 0.02,
               max_peaks: int | None = None) -> FoundPeaks:
    """The peaks of a profile sampled at increasing ``two_theta`` (degrees). ``height`` and
    ``prominence`` are fractions of the profile's maximum; ``max_peaks`` keeps the strongest."""
    from scipy.signal import find_peaks as scipy_find_peaks

    x = np.asarray(two_theta, dtype=np.float64)
    y = np.asarray(intensity, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 3:
        raise ValueError(f"a profile needs matching 1-D 2θ and intensity arrays of 3 or more points, "
                         f"got shapes {x.shape} and {y.shape}")
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)) or np.any(np.diff(x) <= 0):
        raise ValueError("a profile needs finite values and strictly increasing 2θ")
    if not 0 <= height < 1 or not 0 <= prominence < 1:
        raise ValueError(f"height and prominence are fractions of the maximum in [0, 1), got {height}, {prominence}")
    top = y.max()
    if top <= 0:
        return FoundPeaks(np.zeros(0), np.zeros(0))
    y = y / top
    index, _ = scipy_find_peaks(y, height=height, prominence=prominence)  # never the first or last point
    left, mid, right = y[index - 1], y[index], y[index + 1]
    curvature = left - 2 * mid + right
    shift = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1.0), 0.0)
    shift = np.clip(shift, -0.5, 0.5)  # the vertex lies within half a step of the maximum
    step = np.where(shift < 0, x[index] - x[index - 1], x[index + 1] - x[index])
    positions = x[index] + shift * step
    heights = mid - 0.25 * (left - right) * shift
    if max_peaks is not None and len(positions) > max_peaks:
        keep = np.sort(np.argsort(-heights, kind="stable")[:max_peaks])
        positions, heights = positions[keep], heights[keep]
    return FoundPeaks(positions, 100.0 * heights / heights.max() if len(heights) else heights)
