"""Augmentations against their physics: real structures, the real simulator and renderer.

Peak positions are read off rendered profiles (parabolic refinement of a maximum), widths as the
full width at half maximum between linearly interpolated crossings, and compared with the
formulas evaluated independently here (numpy / pymatgen), not with the module's helpers.
"""

import math

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from xrdcore.diffraction.augment import (
    KALPHA2_RATIO,
    Augmentations,
    augment,
    background_profiles,
    draw_parameters,
    march_dollase,
    scherrer_fwhm,
)
from xrdcore.diffraction.grid import AngleGrid
from xrdcore.diffraction.profile import DEFAULT_CAGLIOTI, PeakBatch, render
from xrdcore.diffraction.pxrd import peak_list
from xrdcore.diffraction.radiation import WAVELENGTHS

GRID = AngleGrid()  # 5-90° at 0.01°


def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def zno() -> Structure:
    return Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.25, 5.21), ["Zn", "O"],
                                     [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]])


def monoclinic() -> Structure:
    return Structure(Lattice.monoclinic(5.2, 6.1, 7.4, 108.0), ["Zr", "O", "O"],
                     [[0.28, 0.04, 0.21], [0.07, 0.33, 0.34], [0.45, 0.76, 0.48]])


def triclinic() -> Structure:
    return Structure(Lattice.from_parameters(5.1, 6.3, 7.2, 81, 95, 102), ["Si", "O", "O", "Ca"],
                     [[0.1, 0.2, 0.3], [0.4, 0.1, 0.7], [0.8, 0.6, 0.2], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="module")
def lists():
    structures = {"nacl": nacl(), "zno": zno(), "monoclinic": monoclinic(), "triclinic": triclinic()}
    out = {name: peak_list(s) for name, s in structures.items()}
    out["nacl_mo"] = peak_list(structures["nacl"], wavelength="MoKa1")
    out["nacl_mean"] = peak_list(structures["nacl"], wavelength="CuKa")
    return out


def batch(lists, *names) -> PeakBatch:
    return PeakBatch.from_peak_lists([lists[n] for n in names])


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def peak_top(profile: torch.Tensor, near: float, grid: AngleGrid = GRID,
             window: float = 0.5) -> tuple[float, float]:
    """(2θ in degrees, height) of the highest point within ``window`` degrees of ``near``,
    refined by a parabola through it and its neighbours."""
    y = profile.cpu().numpy().astype(float)
    angles = grid.values
    inside = np.flatnonzero(np.abs(angles - near) <= window)
    i = inside[np.argmax(y[inside])]
    a, b, c = y[i - 1], y[i], y[i + 1]
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return angles[i] + offset * grid.step, b - 0.25 * (a - c) * offset


def measured_fwhm(profile: torch.Tensor, near: float, grid: AngleGrid = GRID) -> float:
    """Full width at half maximum of the peak nearest ``near`` (degrees), crossings interpolated."""
    y = profile.cpu().numpy().astype(float)
    x = grid.values
    centre = int(np.argmin(np.abs(x - peak_top(profile, near, grid)[0])))
    half = y[centre] / 2
    right = centre + int(np.argmax(y[centre:] < half))
    left = centre - int(np.argmax(y[centre::-1] < half))
    cross = lambda i, j: x[i] + (half - y[i]) * (x[j] - x[i]) / (y[j] - y[i])  # noqa: E731
    return cross(right - 1, right) - cross(left + 1, left)


def theta(two_theta: float) -> float:
    return math.radians(two_theta / 2)


def caglioti(two_theta: float, u: float = DEFAULT_CAGLIOTI[0], v: float = DEFAULT_CAGLIOTI[1],
             w: float = DEFAULT_CAGLIOTI[2]) -> float:
    tan = math.tan(theta(two_theta))
    return math.sqrt(u * tan ** 2 + v * tan + w)


# --- off by default, seeding ------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"shape": "gaussian", "caglioti": (0.02, 0.0, 0.01)},
                                    {"shape": "lorentzian"}, {"shape": "stick"}, {"eta": 0.2}])
def test_off_by_default_is_exactly_the_plain_render(lists, kwargs):
    config = Augmentations()
    assert config.enabled == ()
    peaks = batch(lists, "nacl", "zno", "triclinic")
    expected = render(peaks, GRID, **{"shape": "pseudo-voigt", **kwargs})
    assert torch.equal(augment(peaks, GRID, config, seeded(0), **kwargs), expected)


def test_same_seed_same_output_different_seed_different(lists):
    peaks = batch(lists, "nacl", "zno", "monoclinic")
    config = Augmentations.laboratory()
    first = augment(peaks, GRID, config, seeded(7))
    assert torch.equal(first, augment(peaks, GRID, config, seeded(7)))
    assert not torch.allclose(first, augment(peaks, GRID, config, seeded(8)), atol=1e-3)


def test_generator_must_be_a_generator_on_the_peaks_device(lists):
    with pytest.raises(TypeError, match="torch.Generator"):
        augment(batch(lists, "nacl"), GRID, Augmentations(zero_shift=(0, 1)), 42)


# --- peak positions ---------------------------------------------------------------------------


def test_zero_shift_moves_the_strongest_peak_by_the_drawn_amount(lists):
    names = ["nacl", "zno", "nacl", "monoclinic"]
    peaks = batch(lists, *names)
    config = Augmentations(zero_shift=(-0.4, 0.4))
    drawn = draw_parameters(config, len(names), seeded(3)).zero_shift.numpy()
    assert np.ptp(drawn) > 0.05  # each pattern draws its own shift
    clean = render(peaks, GRID, shape="pseudo-voigt")
    shifted = augment(peaks, GRID, config, seeded(3))
    for i, name in enumerate(names):
        strongest = float(lists[name].two_theta[np.argmax(lists[name].intensity)])
        before = GRID.values[int(clean[i].argmax())]
        after = GRID.values[int(shifted[i].argmax())]
        assert abs(before - strongest) <= GRID.step
        assert abs((after - before) - drawn[i]) <= GRID.step


def test_sample_displacement_follows_minus_two_s_cos_theta_over_r(lists):
    s, radius = 1.0, 240.0  # mm
    peaks = batch(lists, "nacl")
    config = Augmentations(displacement=(s, s), goniometer_radius=radius)
    clean = render(peaks, GRID, shape="gaussian")[0]
    moved = augment(peaks, GRID, config, seeded(0), shape="gaussian")[0]
    shifts = []
    for position in (31.703, 75.292):  # NaCl (200) and (420)
        expected = math.degrees(-2 * s * math.cos(theta(position)) / radius)
        shift = peak_top(moved, position + expected)[0] - peak_top(clean, position)[0]
        assert shift == pytest.approx(expected, abs=0.1 * GRID.step)
        shifts.append(shift)
    assert shifts[1] - shifts[0] > 5 * GRID.step  # the cos θ dependence is resolved


# --- widths and intensities -------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["pseudo-voigt", "gaussian"])
def test_scherrer_width_adds_to_the_instrument_in_quadrature(lists, shape):
    size_nm, position = 30.0, 31.703  # NaCl (200), isolated
    peaks = batch(lists, "nacl")
    config = Augmentations(crystallite_size=(size_nm, size_nm))
    profile = augment(peaks, GRID, config, seeded(0), shape=shape)[0]
    size = math.degrees(0.9 * WAVELENGTHS["CuKa1"] / (10 * size_nm * math.cos(theta(position))))
    instrument = caglioti(position)
    assert size > 3 * instrument  # the size term dominates: a missing term would fail
    assert measured_fwhm(profile, position) == pytest.approx(math.hypot(instrument, size), rel=0.03)


def test_broadened_patterns_do_not_depend_on_their_batch(lists):
    names = ["triclinic", "nacl", "zno", "monoclinic", "triclinic", "nacl"]
    peaks = batch(lists, *names)
    sizes = torch.tensor([5.0, 300.0, 40.0, 15.0, 1000.0, 8.0])[:, None]  # nm: widths 0.07-2.6°
    fwhm = torch.hypot(scherrer_fwhm(peaks.two_theta, peaks.wavelength[:, None], sizes),
                       torch.tensor(caglioti(30.0)))
    assert float(fwhm[peaks.mask].max() / fwhm[peaks.mask].min()) > 16  # several window classes
    for shape in ("gaussian", "pseudo-voigt"):
        together = render(peaks, GRID, shape=shape, fwhm=fwhm)
        for i, name in enumerate(names):
            alone = batch(lists, name)
            width = fwhm[i:i + 1, :alone.two_theta.shape[1]]
            assert torch.allclose(render(alone, GRID, shape=shape, fwhm=width)[0], together[i], atol=1e-6)


def test_intensity_jitter_is_log_normal_per_peak(lists):
    sigma, copies = 0.3, 128
    peaks = batch(lists, *["nacl"] * copies)
    config = Augmentations(intensity_jitter=(sigma, sigma))
    profiles = augment(peaks, GRID, config, seeded(5), shape="gaussian")
    # (220)/(200) height ratio: log ratio of two independent log-normals has σ√2 about ln(0.6564)
    strong = torch.stack([profiles[:, round((t - GRID.start) / GRID.step)] for t in (31.703, 45.448)], 1)
    log_ratio = torch.log(strong[:, 1] / strong[:, 0]).numpy()
    clean = render(batch(lists, "nacl"), GRID, shape="gaussian")[0]
    clean_ratio = math.log(float(clean[round((45.448 - 5) / 0.01)] / clean[round((31.703 - 5) / 0.01)]))
    assert np.std(log_ratio) == pytest.approx(sigma * math.sqrt(2), rel=0.25)
    assert np.mean(log_ratio) == pytest.approx(clean_ratio, abs=4 * sigma * math.sqrt(2 / copies))
    unjittered = augment(peaks, GRID, Augmentations(intensity_jitter=(0.0, 0.0)), seeded(5), shape="gaussian")
    assert torch.equal(unjittered, render(peaks, GRID, shape="gaussian"))


def test_march_dollase_r_one_is_the_identity(lists):
    peaks = batch(lists, "nacl", "zno", "monoclinic", "triclinic")
    config = Augmentations(preferred_orientation=(1.0, 1.0))
    assert torch.allclose(augment(peaks, GRID, config, seeded(0)), render(peaks, GRID, shape="pseudo-voigt"),
                          atol=1e-6)


def test_march_dollase_platelets_raise_reflections_parallel_to_the_direction(lists):
    r = 0.5
    peaks = batch(lists, "zno")
    hkl = lists["zno"].hkl.tolist()
    assert [0, 0, 2] in hkl and [1, 0, 0] in hkl
    config = Augmentations(preferred_orientation=(r, r), orientation_directions=((0, 0, 1),))
    clean = render(peaks, GRID, shape="gaussian")[0]
    textured = augment(peaks, GRID, config, seeded(0), shape="gaussian")[0]
    ratio = lambda p: peak_top(p, 34.398)[1] / peak_top(p, 31.766)[1]  # noqa: E731  (002) / (100)
    # (002) is parallel to c* (α = 0, W = r⁻³), (100) perpendicular (α = 90°, W = r^(3/2))
    assert ratio(textured) / ratio(clean) == pytest.approx(r ** -3 / r ** 1.5, rel=0.03)


def test_march_dollase_averages_over_each_family(lists):
    peaks = batch(lists, "nacl")
    r = 0.5
    weights = march_dollase(peaks, torch.tensor([r]), torch.tensor([(0, 0, 1)]))[0]
    w = lambda cos2: (r ** 2 * cos2 + (1 - cos2) / r) ** -1.5  # noqa: E731
    index = lists["nacl"].hkl.tolist().index([2, 0, 0])
    # {200}: (±2 0 0), (0 ±2 0) lie at 90° to [001], (0 0 ±2) along it
    assert float(weights[index]) == pytest.approx((2 * w(0.0) + w(1.0)) / 3, rel=1e-5)


def test_march_dollase_uses_reciprocal_vectors_of_an_oblique_cell(lists):
    peaks = batch(lists, "monoclinic")
    r, direction = 0.6, (0, 0, 1)
    weights = march_dollase(peaks, torch.tensor([r]), torch.tensor([direction]))[0].numpy()
    # independent: pymatgen's crystallographic reciprocal lattice (no 2π), normal of the (001) planes
    reciprocal = monoclinic().lattice.reciprocal_lattice_crystallographic.matrix
    g = lists["monoclinic"].hkl @ reciprocal
    axis = np.asarray(direction) @ reciprocal
    cos = g @ axis / (np.linalg.norm(g, axis=1) * np.linalg.norm(axis))
    expected = (r ** 2 * cos ** 2 + (1 - cos ** 2) / r) ** -1.5
    assert np.allclose(weights, expected, rtol=1e-4)
    assert expected.max() / expected.min() > 5  # the cell has both parallel and oblique peaks


# --- extra peaks ------------------------------------------------------------------------------


def test_kalpha2_doublet_at_the_formula_position_with_half_intensity(lists):
    grid = AngleGrid(30.0, 33.5, 0.002)
    sharp = (0.0, 0.0, 0.02 ** 2)  # 0.02° FWHM resolves the doublet at 31.7°
    peaks = batch(lists, "nacl")
    config = Augmentations(kalpha2=(KALPHA2_RATIO, KALPHA2_RATIO))
    profile = augment(peaks, grid, config, seeded(0), shape="gaussian", caglioti=sharp)[0]
    one = 31.703
    two = math.degrees(2 * math.asin(WAVELENGTHS["CuKa2"] / WAVELENGTHS["CuKa1"] * math.sin(theta(one))))
    assert two - one > 0.07
    top1, height1 = peak_top(profile, one, grid, window=0.03)
    top2, height2 = peak_top(profile, two, grid, window=0.03)
    assert top1 == pytest.approx(one, abs=grid.step)
    assert top2 == pytest.approx(two, abs=grid.step)
    assert height2 / height1 == pytest.approx(0.5, abs=0.01)
    assert float(profile[int((one + two) / 2 / grid.step - grid.start / grid.step)]) < 0.05  # resolved


def test_kalpha2_needs_a_kalpha1_wavelength(lists):
    config = Augmentations(kalpha2=(0.5, 0.5))
    molybdenum = augment(batch(lists, "nacl_mo"), GRID, config, seeded(0), shape="gaussian")[0]
    one = float(lists["nacl_mo"].two_theta[np.argmax(lists["nacl_mo"].intensity)])
    two = math.degrees(2 * math.asin(WAVELENGTHS["MoKa2"] / WAVELENGTHS["MoKa1"] * math.sin(theta(one))))
    assert molybdenum[round((two - GRID.start) / GRID.step)] > 0.3  # the Mo Kα2 line, not Cu's
    with pytest.raises(ValueError, match="Kα1"):
        augment(batch(lists, "nacl", "nacl_mean"), GRID, config, seeded(0))


def test_impurity_adds_the_other_patterns_strongest_peak(lists):
    w = 0.2
    peaks = batch(lists, "nacl", "zno")
    config = Augmentations(impurity=(w, w))
    clean = render(peaks, GRID, shape="gaussian")
    mixed = augment(peaks, GRID, config, seeded(0), shape="gaussian")
    zno_strongest, nacl_strongest = 36.246, 31.703  # ZnO (101), NaCl (200)
    assert float(clean[0, round((zno_strongest - 5) / 0.01)]) < 1e-3
    position, height = peak_top(mixed[0], zno_strongest)
    assert position == pytest.approx(zno_strongest, abs=0.1 * GRID.step)
    # unit-area peaks: height ∝ weight fraction / FWHM
    expected = w / (1 - w) * caglioti(nacl_strongest) / caglioti(zno_strongest)
    assert height / peak_top(mixed[0], nacl_strongest)[1] == pytest.approx(expected, rel=0.02)
    # and the other way round: NaCl (200) appears in the ZnO pattern, ZnO keeps its own peaks
    assert peak_top(mixed[1], 45.448)[1] > 0.02 > float(clean[1, round((45.448 - 5) / 0.01)])
    assert GRID.values[int(mixed[1].argmax())] == pytest.approx(zno_strongest, abs=GRID.step)


def test_impurity_at_another_wavelength_keeps_its_d_spacings(lists):
    peaks = batch(lists, "zno", "nacl_mo")  # the Mo pattern is ZnO's impurity
    mixed = augment(peaks, GRID, Augmentations(impurity=(0.3, 0.3)), seeded(0), shape="gaussian")[0]
    d = 5.64 / math.sqrt(8)  # NaCl (220), clear of ZnO's peaks
    at_copper = math.degrees(2 * math.asin(WAVELENGTHS["CuKa1"] / (2 * d)))
    assert peak_top(mixed, at_copper)[0] == pytest.approx(at_copper, abs=0.1 * GRID.step)


# --- background and noise ---------------------------------------------------------------------


def test_background_is_non_negative_and_the_hump_is_centred_where_drawn(lists):
    peaks = batch(lists, "nacl", "zno", "triclinic")
    config = Augmentations(background=(0.0, 0.3), background_degree=4, hump_height=(0.2, 0.4),
                           hump_centre=(15.0, 35.0), hump_fwhm=(6.0, 12.0))
    draw = draw_parameters(config, 3, seeded(11))
    background = background_profiles(GRID, draw)
    assert background.shape == (3, GRID.length)
    assert float(background.min()) >= 0
    hump_draw = draw_parameters(Augmentations(hump_height=(0.2, 0.4), hump_centre=(15.0, 35.0),
                                              hump_fwhm=(6.0, 12.0)), 3, seeded(11))
    hump_only = background_profiles(GRID, hump_draw)
    assert np.ptp(hump_draw.hump_centre.numpy()) > 1.0  # each pattern draws its own hump
    for i in range(3):
        centre, width = float(hump_draw.hump_centre[i]), float(hump_draw.hump_fwhm[i])
        assert peak_top(hump_only[i], centre, window=2.0)[0] == pytest.approx(centre, abs=GRID.step)
        assert measured_fwhm(hump_only[i], centre) == pytest.approx(width, rel=1e-3)
        assert float(hump_only[i].max()) == pytest.approx(float(hump_draw.hump_height[i]), rel=1e-4)
    # added to the rendered pattern as a fraction of its maximum, then scaled to maximum 1
    out = augment(peaks, GRID, config, seeded(11))
    expected = render(peaks, GRID, shape="pseudo-voigt") + background
    assert torch.allclose(out, expected / expected.amax(1, keepdim=True), atol=1e-6)


def test_poisson_counting_noise_has_variance_equal_to_the_mean_count(lists):
    counts = 1e4
    peaks = batch(lists, "nacl")
    config = Augmentations(background=(0.5, 0.5), background_degree=0, max_counts=(counts, counts))
    noisy = augment(peaks, GRID, config, seeded(2), shape="gaussian")[0].double().numpy()
    # the output is counts / max(counts): recover the integer scale from the count quantum
    flat = noisy[(GRID.values > 6) & (GRID.values < 26)]  # no NaCl peak below (111) at 27.4°
    guess = 1 / np.median(np.diff(np.unique(flat)))  # one count, to float32 precision
    candidates = np.arange(int(guess * 0.99), int(guess * 1.01) + 2)
    misfit = np.abs(np.outer(candidates, flat) - np.round(np.outer(candidates, flat))).max(1)
    scale = candidates[np.argmin(misfit)]
    assert misfit.min() < 0.01 < np.sort(misfit)[1]  # one scale makes every point an integer count
    assert scale == pytest.approx(counts, rel=0.05)  # the maximum (peak + background) holds ~counts
    mean, variance = (flat * scale).mean(), (flat * scale).var(ddof=1)
    assert mean == pytest.approx(counts * 0.5 / 1.5, rel=0.05)
    assert variance / mean == pytest.approx(1.0, abs=0.12)  # 4σ of a 2,000-point variance estimate


def test_read_noise_and_the_output_range(lists):
    peaks = batch(lists, "nacl", "zno")
    out = augment(peaks, GRID, Augmentations(read_noise=(0.01, 0.01)), seeded(4))
    clean = render(peaks, GRID, shape="pseudo-voigt")
    assert float(out.min()) >= 0 and torch.allclose(out.amax(1), torch.ones(2))
    residual = (out - clean)[:, (torch.as_tensor(GRID.values) > 6) & (torch.as_tensor(GRID.values) < 26)]
    # where the clean pattern is ~0 the clamp keeps the positive half-normal: mean σ √(2/π)
    assert float(residual[residual > 0].mean()) == pytest.approx(0.01 * math.sqrt(2 / math.pi), rel=0.1)


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"zero_shift": (0.2, -0.2)}, "low > high"),
    ({"crystallite_size": (-5.0, 50.0)}, "crystallite_size"),
    ({"crystallite_size": (0.0, 50.0)}, "crystallite_size"),
    ({"preferred_orientation": (0.0, 1.0)}, "preferred_orientation"),
    ({"intensity_jitter": (-0.1, 0.1)}, "intensity_jitter"),
    ({"impurity": (0.1, 0.8)}, "impurity"),
    ({"kalpha2": (0.5, 1.5)}, "kalpha2"),
    ({"background": (-0.1, 0.1)}, "background"),
    ({"hump_fwhm": (0.0, 5.0), "hump_height": (0.1, 0.2)}, "hump_fwhm"),
    ({"max_counts": (0.0, 1e4)}, "max_counts"),
    ({"read_noise": (float("nan"), 0.1)}, "finite"),
    ({"zero_shift": 0.1}, "pair"),
    ({"zero_shift": (0.1, 0.2, 0.3)}, "pair"),
    ({"displacement": (-50.0, 50.0)}, "displacement"),
    ({"goniometer_radius": 0}, "goniometer_radius"),
    ({"background_degree": 2.5}, "background_degree"),
    ({"orientation_directions": ((0, 0, 0),)}, "orientation_directions"),
    ({"orientation_directions": ()}, "orientation_directions"),
])
def test_invalid_ranges_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Augmentations(**kwargs)


def test_laboratory_preset_turns_everything_on_and_is_valid():
    lab = Augmentations.laboratory()
    assert set(lab.enabled) == {"zero_shift", "displacement", "crystallite_size", "intensity_jitter",
                                "preferred_orientation", "impurity", "kalpha2", "background", "hump_height",
                                "max_counts", "read_noise"}
    assert "kalpha2" not in Augmentations.laboratory(kalpha2=False).enabled
    assert Augmentations(zero_shift=[-0.1, 0.1]).zero_shift == (-0.1, 0.1)


def test_a_batch_of_eight_mixed_structures(lists):
    names = ["nacl", "zno", "monoclinic", "triclinic", "nacl", "zno", "triclinic", "monoclinic"]
    peaks = batch(lists, *names)
    config = Augmentations.laboratory()
    out = augment(peaks, GRID, config, seeded(123))
    assert out.shape == (8, GRID.length) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and float(out.min()) >= 0
    assert torch.allclose(out.amax(1), torch.ones(8))
    clean = render(peaks, GRID, shape="pseudo-voigt")
    assert ((out - clean).abs().amax(1) > 0.01).all()
    draw = draw_parameters(config, 8, seeded(123))
    for name in ("zero_shift", "crystallite_size", "preferred_orientation", "max_counts"):
        values = getattr(draw, name)
        low, high = getattr(config, name)
        assert len(set(values.tolist())) == 8 and low <= float(values.min()) and float(values.max()) <= high
    # measured-like, still the same phase: the augmented strongest peak is near a clean peak
    for i, name in enumerate(names):
        top = GRID.values[int(out[i].argmax())]
        assert np.abs(lists[name].two_theta - top).min() < 0.5


# --- lattice strain and the log-d axis ----------------------------------------------------------


def test_strain_moves_every_peak_to_the_bragg_angle_of_the_stretched_d(lists):
    config = Augmentations(strain=(0.03, 0.03))
    peaks = batch(lists, "nacl")
    strained = augment(peaks, GRID, config, seeded(0), shape="gaussian")
    for d, two_theta, intensity in zip(lists["nacl"].d, lists["nacl"].two_theta, lists["nacl"].intensity):
        if intensity < 20:
            continue
        expected = math.degrees(2 * math.asin(1.54056 / (2 * d * 1.03)))
        assert abs(peak_top(strained[0], expected, window=0.2)[0] - expected) < 0.005
        assert expected < two_theta  # longer d-spacings diffract at lower angle


def test_profile_warp_matches_rendering_the_strained_and_shifted_peaks(lists):
    """ProfileWarp acts on a rendered profile; the result is the profile rendered from peaks that
    were strained and shifted, up to interpolation between grid points."""
    from xrdcore.diffraction.augment import ProfileWarp, warp_profiles

    grid = AngleGrid(5.0, 90.0, 0.02)
    peaks = batch(lists, "monoclinic", "zno")
    clean = render(peaks, grid, shape="gaussian")
    warped = warp_profiles(clean, grid, torch.tensor([0.02, -0.015]), torch.tensor([0.03, -0.02]))
    config = [Augmentations(strain=(0.02, 0.02), zero_shift=(0.03, 0.03)),
              Augmentations(strain=(-0.015, -0.015), zero_shift=(-0.02, -0.02))]
    for i in range(2):
        reference = augment(PeakBatch.from_peak_lists([[lists["monoclinic"], lists["zno"]][i]]), grid, config[i],
                            seeded(0), shape="gaussian")[0]
        # linear interpolation between 0.02° samples of 0.07° wide peaks: the same peaks, slightly lower tops
        assert abs(int(warped[i].argmax()) - int(reference.argmax())) <= 1
        assert torch.nn.functional.cosine_similarity(warped[i], reference, dim=0) > 0.99
    draws = [ProfileWarp()(clean, grid, seeded(s)) for s in (1, 1, 2)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    with pytest.raises(ValueError, match="strain"):
        ProfileWarp(strain=(-0.5, 0.5))


def test_a_log_d_axis_puts_peaks_where_their_d_spacing_says_and_turns_strain_into_a_shift(lists):
    from xrdcore.diffraction.augment import warp_profiles

    grid = AngleGrid(5.0, 90.0, 0.05, axis="log_d")
    assert grid.length == 1700 and grid.values[0] == pytest.approx(5.0) and grid.values[-1] < 90.0
    spacing = np.diff(np.log(np.sin(np.radians(grid.values / 2))))
    assert np.allclose(spacing, spacing[0])  # uniform in ln sin θ, i.e. in ln 1/d
    profile = render(batch(lists, "triclinic"), grid, shape="gaussian")[0]
    for two_theta, intensity in zip(lists["triclinic"].two_theta, lists["triclinic"].intensity):
        if intensity > 50:
            top = grid.values[int(np.argmax(np.where(np.abs(grid.values - two_theta) < 0.3, profile.numpy(), 0)))]
            assert abs(top - two_theta) < 0.05
    shifted = warp_profiles(profile[None], grid, torch.tensor([0.02]), torch.tensor([0.0]))[0]
    points = -math.log(1.02) / spacing[0]  # every peak moves by the same number of points
    lag = int(np.argmax(np.correlate(shifted.numpy(), profile.numpy(), "full"))) - (grid.length - 1)
    assert abs(lag - points) <= 1
    with pytest.raises(ValueError, match="log_d axis needs 0 < start"):
        AngleGrid(0.0, 90.0, 0.1, axis="log_d")
