"""The peak finder for measured profiles, checked against the simulator's own peak lists."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

import xrdcore
from xrdcore.diffraction.peaks import find_peaks


def _profile(structure, step=0.02):
    simulator = xrdcore.create_simulator("pxrd", grid={"step": step})
    (peaks,) = simulator.peaks([structure])
    return simulator.grid.values, simulator.render([peaks])[0].numpy(), peaks


def _resolved(peaks, min_intensity=5.0, separation=0.5):
    """Simulated peaks strong enough and far enough from their neighbours to be found alone."""
    t = peaks.two_theta
    gaps = np.minimum(np.diff(t, prepend=-np.inf), np.diff(t, append=np.inf))
    return t[(peaks.intensity >= min_intensity) & (gaps > separation)]


@pytest.mark.parametrize("make", [
    lambda: Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                      [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0], [.5, .5, .5], [.5, 0, 0], [0, .5, 0],
                       [0, 0, .5]]),
    lambda: Structure(Lattice.hexagonal(3.21, 5.21), ["Mg", "Mg"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]),
])
def test_found_peaks_sit_on_the_simulated_reflections(make):
    two_theta, profile, peaks = _profile(make())
    found = find_peaks(two_theta, profile)
    expected = _resolved(peaks)
    assert len(expected) >= 4
    nearest = np.abs(found.two_theta[:, None] - expected[None]).min(0)
    assert nearest.max() < 0.004  # a fifth of the 0.02° step
    assert found.intensity.max() == 100.0 and np.all(np.diff(found.two_theta) > 0)


def test_noise_below_the_prominence_is_not_a_peak():
    two_theta, profile, peaks = _profile(Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [.5, .5, .5]]))
    noisy = profile + np.random.default_rng(0).uniform(0, 0.01, profile.shape)
    found = find_peaks(two_theta, noisy)
    expected = _resolved(peaks)
    assert np.abs(found.two_theta[:, None] - expected[None]).min(0).max() < 0.01  # every strong peak found
    assert np.abs(found.two_theta[:, None] - peaks.two_theta[None]).min(1).max() < 0.05  # and nothing else
    assert len(find_peaks(two_theta, noisy, height=0.0, prominence=0.0)) > 10 * len(expected)  # without: noise
    assert len(find_peaks(two_theta, noisy, max_peaks=3)) == 3
    assert len(find_peaks(two_theta, np.zeros_like(two_theta))) == 0


def test_bad_profiles_are_refused():
    with pytest.raises(ValueError, match="strictly increasing"):
        find_peaks(np.array([1.0, 3.0, 2.0, 4.0]), np.ones(4))
    with pytest.raises(ValueError, match="matching 1-D"):
        find_peaks(np.arange(5.0), np.ones(4))
    with pytest.raises(ValueError, match="fractions of the maximum"):
        find_peaks(np.arange(5.0), np.ones(5), prominence=2)
