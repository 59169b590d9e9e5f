"""SNIP background subtraction: the peaks of a simulated pattern survive on top of a broad hump, the
hump goes, the window means the same in degrees at any step, and predict on a pattern with
background answers as on the clean one."""

import numpy as np
import pytest

from xrdcore.diffraction.background import snip, subtract_background
from xrdcore.diffraction.readers import MeasuredPattern


def _pattern(step: float, hump: float = 200.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.arange(5.0, 90.0 + step / 2, step)
    peaks = sum(a * np.exp(-0.5 * ((x - c) / 0.08) ** 2) for a, c in [(1000, 10), (500, 30.5), (300, 60), (800, 89.9)])
    background = hump * np.exp(-0.5 * ((x - 25) / 6) ** 2) + 50 + 0.3 * x  # amorphous hump, air, slope
    return x, peaks, background


@pytest.mark.parametrize("step", [0.01, 0.02, 0.05])
def test_snip_removes_the_hump_and_keeps_the_peaks(step):
    x, peaks, background = _pattern(step)
    net, note = subtract_background(MeasuredPattern(x, peaks + background, None, "film.xy"))
    assert note.startswith("auto (SNIP")
    for centre, height in [(10, 1000), (30.5, 500), (60, 300), (89.9, 800)]:
        assert net.intensity[np.argmin(abs(x - centre))] == pytest.approx(height, rel=0.05)
    far = np.array([min(abs(t - c) for c in (10, 30.5, 60, 89.9)) > 1.0 for t in x])
    # between peaks what is left of the background is a few percent of it, whatever the step
    assert np.abs(net.intensity[far]).max() < 0.03 * background.max()
    assert np.abs(snip(peaks, round(0.75 / step))).max() < 1e-4 * peaks.max()  # a clean pattern has none


def test_none_leaves_the_pattern_and_a_flat_pattern_is_kept():
    x, peaks, background = _pattern(0.02)
    pattern = MeasuredPattern(x, peaks + background, None, "film.xy")
    same, note = subtract_background(pattern, "none")
    assert same is pattern and note == "none subtracted"
    flat = MeasuredPattern(x, np.full_like(x, 7.0), None, "flat.xy")
    kept, note = subtract_background(flat)
    assert kept is flat and "only background" in note
    with pytest.raises(ValueError, match="background must be one of auto, none"):
        subtract_background(pattern, "rolling-ball")
