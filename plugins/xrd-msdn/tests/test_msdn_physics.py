"""The physics of the zone-axis patterns, checked against pymatgen and spglib: wavelengths and
scattering factors, spot positions on the reciprocal lattice, systematic absences, intensities,
zone axes of the conventional cell."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import spglib
import torch
from pymatgen.analysis.diffraction.tem import TEMCalculator
from pymatgen.core import Lattice, Structure
from xrdcore.data.labels import spglib_cell
from xrdcore.diffraction.pxrd import StructureError, peak_list

from xrd_msdn.scattering import MOTT_BETHE, electron_wavelength, form_factors
from xrd_msdn.simulator import ZoneAxisSimulator, zone_axis_spots
from xrd_msdn.zone_axis import conventional_cell, zone_axes

#: every reflection that is not systematically absent, and no relrod fading: the zero layer itself
EXACT = {"min_intensity": 1e-9, "ewald_sphere": False}


def cscl() -> Structure:  # simple cubic (Pm-3m)
    return Structure(Lattice.cubic(4.123), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def copper() -> Structure:  # fcc (Fm-3m)
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.615), ["Cu"], [[0, 0, 0]])


def magnesium() -> Structure:  # hcp (P6_3/mmc)
    return Structure(Lattice.hexagonal(3.209, 5.211), ["Mg", "Mg"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])


def pymatgen_intensity(structure: Structure, hkls) -> dict[tuple, float]:
    """|F|² with electron scattering factors from pymatgen's TEM calculator."""
    tem = TEMCalculator()
    spacings = {tuple(int(i) for i in hkl): structure.lattice.d_hkl(hkl) for hkl in hkls}
    return tem.cell_intensity(structure, tem.bragg_angles(spacings))


def expected_zero_layer(structure: Structure, uvw, field: float, u_axis: int, w_axis: int):
    """Brute force: every hkl with h·u + k·v + l·w = 0 whose g (pymatgen's reciprocal lattice)
    lies inside the field, with its (u, w) position."""
    reciprocal = structure.lattice.reciprocal_lattice_crystallographic
    hkls = np.array(list(itertools.product(range(-12, 13), repeat=3)))
    hkls = hkls[(hkls @ np.asarray(uvw) == 0) & hkls.any(1)]
    g = reciprocal.get_cartesian_coords(hkls)
    inside = (np.abs(g[:, u_axis]) <= field) & (np.abs(g[:, w_axis]) <= field)
    return {tuple(int(i) for i in hkl): (float(v[u_axis]), float(v[w_axis])) for hkl, v in zip(hkls[inside], g[inside])}


def test_electron_wavelength_and_scattering_factors_agree_with_pymatgen():
    tem = TEMCalculator(voltage=200)
    assert electron_wavelength(200) == pytest.approx(tem.wavelength_rel(), rel=1e-12)
    assert electron_wavelength(200) == pytest.approx(0.02508, abs=1e-5)
    assert 1 / MOTT_BETHE == pytest.approx(41.78214, rel=1e-6)  # pymatgen's X-ray constant
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    hkls = [(1, 1, 1), (2, 0, 0), (2, 2, 0), (4, 2, 0), (6, 0, 0)]
    spacings = {hkl: nacl.lattice.d_hkl(hkl) for hkl in hkls}
    angles = tem.bragg_angles(spacings)
    reference = tem.electron_scattering_factors(nacl, angles)
    s = torch.tensor([1 / (2 * spacings[hkl]) for hkl in hkls], dtype=torch.float64)
    ours = form_factors(["Na", "Cl"], s, "electron")
    for column, element in enumerate(["Na", "Cl"]):
        expected = torch.tensor([reference[element][hkl] for hkl in hkls], dtype=torch.float64)
        torch.testing.assert_close(ours[:, column], expected, rtol=2e-5, atol=0)
    # X-ray factors: Z at s = 0, and pymatgen's XRD formula elsewhere
    x0 = form_factors(["Na", "Cl"], torch.zeros(1, dtype=torch.float64), "xray")
    assert x0.tolist() == [[11.0, 17.0]]
    with pytest.raises(ValueError, match="voltage"):
        electron_wavelength(0)


@pytest.mark.parametrize("make, present", [
    (cscl, lambda h, k, l: True),  # primitive: nothing absent
    (copper, lambda h, k, l: h % 2 == k % 2 == l % 2),  # F: h, k, l all even or all odd
])
def test_cubic_spots_along_001_are_the_reciprocal_lattice_with_fcc_absences(make, present):
    structure = make()
    simulator = ZoneAxisSimulator(**EXACT)
    field = simulator.half_width + simulator.spot_radius[1]
    view = simulator.spots([structure])[0][2]
    assert view.axis == 2 and view.zone_axis == (0, 0, 1)
    candidates = expected_zero_layer(structure, (0, 0, 1), field, 0, 1)
    reference = pymatgen_intensity(structure, list(candidates))
    strongest = max(reference.values())
    allowed = {hkl for hkl in candidates if present(*hkl)}
    assert allowed == {hkl for hkl, value in reference.items() if value > 1e-9 * strongest}  # pymatgen agrees
    spots = {tuple(hkl): (pos, i) for hkl, pos, i in zip(view.hkl.tolist(), view.position.tolist(),
                                                          view.intensity.tolist())}
    assert set(spots) == allowed
    assert all(l == 0 for _, _, l in spots)
    for hkl, (position, intensity) in spots.items():
        assert position == pytest.approx(candidates[hkl], abs=1e-12)  # Å⁻¹, no 2π
        assert intensity == pytest.approx(reference[hkl] / strongest, rel=1e-4)
    if make is copper:  # the first spots: 200 at 2/a, no 100 or 110
        assert (1, 0, 0) not in spots and (1, 1, 0) not in spots
        assert math.hypot(*spots[(2, 0, 0)][0]) == pytest.approx(2 / 3.615, rel=1e-12)


def test_hexagonal_magnesium_zone_axes_and_the_screw_axis_absence():
    structure = magnesium()
    cell = conventional_cell(structure)
    # spglib's standard orientation: a along x, c along z: the views are [100], [120], [001]
    assert [zone.uvw for zone in zone_axes(cell.lattice)] == [(1, 0, 0), (1, 2, 0), (0, 0, 1)]
    assert all(zone.exact for zone in zone_axes(cell.lattice))
    views = zone_axis_spots(structure, **EXACT)
    x_view = {tuple(hkl) for hkl in views[0].hkl.tolist()}
    assert all(h == 0 for h, _, _ in x_view)  # [100]: the 0kl layer
    # 6_3 along c: 00l absent for odd l, present for even l, as pymatgen's structure factor says
    reference = pymatgen_intensity(structure, [(0, 0, l) for l in (1, 2, 3, 4)])
    assert reference[(0, 0, 1)] < 1e-20 and reference[(0, 0, 3)] < 1e-20 and reference[(0, 0, 2)] > 1
    assert {(0, 0, 2), (0, 0, -2)} <= x_view
    assert not {(0, 0, 1), (0, 0, -1), (0, 0, 3), (0, 0, -3)} & x_view
    # 0kl with l odd survive when k is not a multiple of 3 (only 00l is extinct)
    assert (0, 1, 1) in x_view and (0, 1, 3) in x_view
    # [001]: every hk0 inside the field, positions on pymatgen's reciprocal lattice
    simulator = ZoneAxisSimulator(**EXACT)
    candidates = expected_zero_layer(structure, (0, 0, 1), simulator.half_width + simulator.spot_radius[1], 0, 1)
    z_view = views[2]
    assert {tuple(hkl) for hkl in z_view.hkl.tolist()} == set(candidates)
    for hkl, position in zip(z_view.hkl.tolist(), z_view.position.tolist()):
        assert position == pytest.approx(candidates[tuple(hkl)], abs=1e-12)


def test_xray_intensities_agree_with_the_powder_simulator():
    """With X-ray factors the zone-axis |F|² of two reflections stand in the ratio of xrdcore's
    powder intensities divided by Lorentz-polarisation and multiplicity."""
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    view = zone_axis_spots(nacl, radiation="xray", **EXACT)[2]
    ours = {tuple(hkl): i for hkl, i in zip(view.hkl.tolist(), view.intensity.tolist())}
    peaks = peak_list(nacl, wavelength="CuKa1")
    powder = {}
    for two_theta, intensity, multiplicity, hkl in zip(peaks.two_theta, peaks.intensity, peaks.multiplicity,
                                                       peaks.hkl):
        theta = math.radians(two_theta / 2)
        lp = (1 + math.cos(2 * theta) ** 2) / (math.sin(theta) ** 2 * math.cos(theta))
        powder[tuple(sorted(abs(int(i)) for i in hkl))] = intensity / (lp * multiplicity)
    for a, b in [((0, 0, 2), (0, 2, 2)), ((0, 0, 2), (0, 2, 4)), ((0, 2, 2), (0, 0, 4))]:
        ours_a, ours_b = ours[(a[2], a[1], 0)], ours[(b[2], b[1], 0)]
        assert ours_a / ours_b == pytest.approx(powder[a] / powder[b], rel=1e-3)
    assert (1, 1, 0) not in ours  # F-centring: mixed parity absent


def test_ewald_sphere_fades_the_outer_spots_with_the_relrod():
    structure = copper()
    flat = zone_axis_spots(structure, ewald_sphere=False)[2]
    curved = zone_axis_spots(structure)[2]  # electrons: the sphere by default
    g = torch.linalg.vector_norm(curved.position, dim=1)
    wavelength = electron_wavelength(200)
    torch.testing.assert_close(curved.excitation_error, -wavelength * g ** 2 / 2)
    assert torch.all(flat.excitation_error == 0)
    fade = torch.exp(-0.5 * (curved.excitation_error / 0.01) ** 2)
    ratio = curved.intensity / flat.intensity  # same spots, same order; both relative to 200
    torch.testing.assert_close(ratio, fade / fade[torch.argmax(curved.intensity)])


def test_conventional_cell_is_spglibs_standard_cell_of_the_label():
    primitive = copper().get_primitive_structure()
    cell = conventional_cell(primitive)
    dataset = spglib.get_symmetry_dataset(spglib_cell(primitive), symprec=0.1)
    assert dataset.number == 225 and len(cell.coords) == 4
    np.testing.assert_allclose(cell.lattice, np.diag([3.615] * 3), atol=1e-9)
    # a monoclinic cell: x is [100], y the unique axis b; z is no lattice row, so the beam is
    # tilted onto c, the nearest low-index row, and the image axes stay perpendicular to it
    mono = Structure.from_spacegroup("P2_1/c", Lattice.monoclinic(5, 6, 7, 110), ["Si"], [[0.1, 0.2, 0.3]])
    zones = zone_axes(conventional_cell(mono).lattice)
    assert [(z.uvw, z.exact) for z in zones] == [((1, 0, 0), True), ((0, 1, 0), True), ((0, 0, 1), False)]
    z = zones[2]
    assert abs(math.degrees(math.acos(z.beam[2])) - 20) < 1e-6  # β − 90°
    np.testing.assert_allclose(np.cross(z.u, z.w), z.beam, atol=1e-12)
    view = zone_axis_spots(mono, **EXACT)[2]
    assert len(view) > 10 and all(l == 0 for _, _, l in view.hkl.tolist())


def test_structures_that_cannot_be_simulated_name_the_formula_and_the_problem():
    from pymatgen.core.periodic_table import DummySpecies

    dummy = Structure(Lattice.cubic(4.0), ["Na", DummySpecies("X")], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(StructureError, match=r"XNa: site 1 holds 'X', which has no scattering factor"):
        ZoneAxisSimulator(size=16).simulate([copper(), dummy])
    with pytest.raises(StructureError, match="no atoms"):
        ZoneAxisSimulator(size=16).simulate([Structure(Lattice.cubic(4.0), [], [])])
    squeezed = Structure(Lattice.cubic(0.5), ["Cu", "Cu"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(StructureError, match="Cu: .*too small"):
        ZoneAxisSimulator(size=16, standardize=False).simulate([squeezed])
