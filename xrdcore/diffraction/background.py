"""Background of a measured powder pattern, estimated with SNIP (Ryan et al., Nucl. Instrum. Methods B
34, 396 (1988); Morháč et al., NIM A 401, 113 (1997)) and subtracted before a model trained on
simulated, background-free patterns sees it.

SNIP clips every point to the mean of its neighbours ``p`` points away, for ``p`` growing to a
window wider than any peak, on ``log(log(sqrt(y + 1) + 1) + 1)`` so that strong and weak peaks are clipped
alike. Peaks narrower than the window survive; the slowly varying amorphous hump, air scatter and
fluorescence do not. The window is in degrees 2θ, so it means the same for any step.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from xrdcore.diffraction.readers import MeasuredPattern

#: SNIP half-window, degrees 2θ: a few laboratory peak widths (0.05-0.3°), well below
#: the width of an amorphous hump (5-15°)
WINDOW = 0.75
#: clipping passes, at half-windows evenly spaced up to the largest: a fixed number, because every
#: pass also shaves a little off a curved background, so a pass per point would make a fine step
#: (0.01°) eat into an amorphous hump several times more than a coarse one (0.05°)
CLIPS = 8
BACKGROUNDS = ("auto", "none")


def snip(intensity: np.ndarray, half_window: int) -> np.ndarray:
    """The SNIP background of ``intensity`` (counts ≥ 0) for a half-window in points."""
    y = np.asarray(intensity, dtype=np.float64)
    m = max(1, min(int(half_window), len(y)))
    v = np.log(np.log(np.sqrt(np.clip(y, 0, None) + 1.0) + 1.0) + 1.0)
    # each end padded with the lowest value of its last window, so a peak at the edge is clipped too
    v = np.concatenate([np.full(m, v[:m].min()), v, np.full(m, v[-m:].min())])
    for p in np.unique(np.round(np.linspace(1, m, CLIPS)).astype(int)):
        v[p:-p] = np.minimum(v[p:-p], 0.5 * (v[:-2 * p] + v[2 * p:]))
    return (np.exp(np.exp(v[m:-m]) - 1.0) - 1.0) ** 2 - 1.0


def subtract_background(pattern: MeasuredPattern, how: str = "auto",
                        window: float = WINDOW) -> tuple[MeasuredPattern, str]:
    """The pattern less its SNIP background (``how="auto"``) or as it is (``"none"``), and a line
    saying what was done."""
    if how not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {how!r}")
    if how == "none":
        return pattern, "none subtracted"
    step = float(np.median(np.diff(pattern.two_theta)))
    background = snip(pattern.intensity, round(window / step))
    net = np.clip(pattern.intensity - background, 0.0, None)
    if not net.max() > 1e-9 * pattern.intensity.max():  # all background: keep it, the answer says so
        return pattern, "auto found only background (nothing subtracted)"
    share = float(background.sum() / max(pattern.intensity.sum(), 1e-300))
    return (replace(pattern, intensity=net),
            f"auto (SNIP, ±{window:g}° window): {share:.0%} of the measured intensity removed")
