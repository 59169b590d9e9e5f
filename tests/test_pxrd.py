"""The PXRD simulator against pymatgen's XRDCalculator: positions within 1e-3° and every
intensity within 0.5 on the max-100 scale, on pymatgen's AFLOW prototypes, MP-20 crystals and
CoRE MOFs (large cells, and partial occupancy)."""

import csv
import gzip
import json
import tarfile
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pymatgen.analysis.prototypes as prototypes
import pytest
import torch
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure

import xrdcore
from xrdcore.diffraction.profile import AngleGrid, PeakBatch, caglioti_fwhm, render
from xrdcore.diffraction.pxrd import StructureError, peak_list
from xrdcore.diffraction.radiation import WAVELENGTHS, wavelength

DATA = Path(__file__).with_name("data")
MOFS = ("ABAVIJ_clean", "ABESUX_clean", "ABEFUL_clean", "ABEXEM_clean")


def assert_matches_pymatgen(structure, line="CuKa1", debye_waller=None, two_theta_range=(5, 90)):
    """Every peak of each list has a partner in the other within 1e-3° and 0.5 intensity;
    a peak without a partner must itself be at most 0.5 (its partner's intensity is then 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = XRDCalculator(line, debye_waller_factors=debye_waller).get_pattern(
            structure, two_theta_range=two_theta_range)
    ours = peak_list(structure, wavelength=line, two_theta_range=two_theta_range, debye_waller=debye_waller)
    assert theirs.y.max() == pytest.approx(100) and ours.intensity.max() == pytest.approx(100)
    their_x, their_y = merge_close(np.asarray(theirs.x), np.asarray(theirs.y))
    our_x, our_y = merge_close(ours.two_theta, ours.intensity)
    for (x1, y1), (x2, y2) in (((their_x, their_y), (our_x, our_y)), ((our_x, our_y), (their_x, their_y))):
        nearest = np.abs(x1[:, None] - x2[None, :]).argmin(1)
        paired = np.abs(x1 - x2[nearest]) <= 1e-3
        assert np.all(np.abs(y1[paired] - y2[nearest[paired]]) <= 0.5), structure.composition
        assert np.all(y1[~paired] <= 0.5), (structure.composition, x1[~paired], y1[~paired])
    return ours


def merge_close(x, y, gap=1e-3):
    """Peaks closer than ``gap`` degrees summed (and rescaled to max 100). The requirement is
    positions within 1e-3°, so peaks closer than that cannot be told apart by it; and the two
    codes group near-coincident reflections differently (pymatgen by fixed 1e-5° bins, xrdcore
    by gaps), e.g. the reflections of a hexagonal cell whose angles were rounded in its CIF,
    which spread over a few 1e-4°. Both lists are brought to this one rule before comparing."""
    group = np.concatenate([[0], np.cumsum(np.diff(x) > gap)])
    merged = np.bincount(group, weights=y)
    return x[np.unique(group, return_index=True)[1]], 100 * merged / merged.max()


def aflow_prototypes():
    path = Path(prototypes.__file__).with_name("aflow_prototypes.json.gz")
    entries = json.loads(gzip.decompress(path.read_bytes()))
    return [(e["tags"]["aflow"], Structure.from_dict(e["snl"]))
            for e in entries]


def core_mofs(names=MOFS):
    """The named CoRE MOF 2019-ASR structures, streamed from the core-mof package."""
    import CoRE_MOF.data

    found = {}
    with tarfile.open(resources.files(CoRE_MOF.data) / "2019-ASR.tar.xz", "r|xz") as tar:
        for member in tar:
            stem = member.name.rsplit("/", 1)[-1].removesuffix(".cif")
            if stem in names:
                found[stem] = Structure.from_str(tar.extractfile(member).read().decode(), fmt="cif")
                if len(found) == len(names):
                    break
    return [found[n] for n in names]


def test_aflow_prototypes_shipped_with_pymatgen():
    structures = aflow_prototypes()
    assert len(structures) == 288
    for label, structure in structures:
        assert_matches_pymatgen(structure)


def test_mp20_structures():
    rows = list(csv.DictReader((DATA / "mp20_sample.csv").open()))
    assert len(rows) == 46  # every 28th row of MP-20, plus six whose peaks straddle pymatgen's 2θ bins
    for row in rows:
        assert_matches_pymatgen(Structure.from_str(row["cif"], fmt="cif"))


def test_core_mofs_large_cells():
    for structure in core_mofs():
        assert len(structure) >= 100
        ours = assert_matches_pymatgen(structure)
        assert len(ours) > 400  # large cells: many peaks


def test_partial_occupancy_in_a_mof_and_a_solid_solution():
    mof = core_mofs(("ABESUX_clean",))[0]
    metals = [i for i, site in enumerate(mof) if site.specie.is_metal]
    for i in metals:
        mof.replace(i, {mof[i].specie.symbol: 0.5, "Co": 0.3})  # mixed metal site with vacancies
    assert not mof.is_ordered
    assert_matches_pymatgen(mof)
    alloy = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.8), [{"Cu": 0.6, "Au": 0.4}], [[0, 0, 0]])
    assert not alloy.is_ordered
    assert_matches_pymatgen(alloy)


def test_debye_waller_factors_and_other_wavelengths():
    perovskite = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                                           [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    assert_matches_pymatgen(perovskite, debye_waller={"Sr": 0.6, "Ti": 0.4, "O": 0.9})
    for line in ("MoKa", "CoKa1", "AgKa1"):
        assert_matches_pymatgen(perovskite, line=line)


def test_hkl_multiplicity_and_d_of_a_known_pattern():
    # NaCl (Fm-3m, a = 5.64 Å): reflections h, k, l all even or all odd; d = a / sqrt(h²+k²+l²)
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    peaks = peak_list(nacl)
    assert [tuple(h) for h in peaks.hkl[:4]] == [(1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1)]
    assert peaks.multiplicity[:4].tolist() == [8, 6, 12, 24]
    assert peaks.d[:4] == pytest.approx(5.64 / np.sqrt([3, 4, 8, 11]))
    lam = wavelength("CuKa1")
    assert peaks.two_theta[:4] == pytest.approx(np.degrees(2 * np.arcsin(lam / (2 * peaks.d[:4]))))
    assert peaks.intensity.argmax() == 1  # (200) is the strongest line of rock salt


def test_symmetry_reduction_changes_nothing():
    from xrdcore.diffraction.pxrd import _Cell, _inversion_pairs, _symmetry

    mof = core_mofs(("ABEFUL_clean",))[0]
    # this MOF is centrosymmetric: the default path uses the real, half-cell structure factor
    cell = _Cell.of(mof, {})
    laue, inversion = _symmetry(cell, 1e-3)
    assert len(laue) > 2 and inversion is not None
    assert len(_inversion_pairs(cell, inversion).coords) == len(mof) // 2
    reduced, plain = peak_list(mof), peak_list(mof, symprec=None)
    assert np.array_equal(reduced.two_theta.round(8), plain.two_theta.round(8))
    assert reduced.intensity == pytest.approx(plain.intensity, abs=1e-3)
    assert np.array_equal(reduced.multiplicity, plain.multiplicity)


@pytest.mark.parametrize("make, message", [
    (lambda: Structure(Lattice.cubic(4), [], []), "no atoms"),
    (lambda: Structure(Lattice.cubic(4), ["X0+"], [[0, 0, 0]]), "no X-ray scattering factor"),
    (lambda: Structure(Lattice.cubic(0.3), ["Fe"], [[0, 0, 0]]), "too small"),
    (lambda: Structure(Lattice.cubic(4), ["Fe"], [[float("nan"), 0, 0]]), "not finite"),
])
def test_structures_that_cannot_be_simulated(make, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = make()
    with pytest.raises(StructureError, match=message):
        peak_list(structure)


@pytest.mark.parametrize("kwargs, message", [
    ({"wavelength": "CuKx"}, "unknown X-ray line"), ({"wavelength": -1.0}, "outside"),
    ({"two_theta_range": (90, 5)}, "low < high"), ({"debye_waller": {"Xx": 1.0}}, "unknown elements")])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        peak_list(Structure(Lattice.cubic(4), ["Fe"], [[0, 0, 0]]), **kwargs)


def test_wavelength_table_matches_pymatgen():
    from pymatgen.analysis.diffraction.xrd import WAVELENGTHS as PYMATGEN

    assert WAVELENGTHS == PYMATGEN
    assert wavelength("cukα1") == wavelength("CuKa1") == 1.54056 and wavelength(1.2) == 1.2


# --- profiles -----------------------------------------------------------------------------


def rock_salt_batch():
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return peak_list(nacl), PeakBatch.from_peak_lists([peak_list(nacl)])


@pytest.mark.parametrize("shape", ["gaussian", "pseudo-voigt", "lorentzian"])
def test_rendered_peaks_sit_at_their_angles_with_their_area(shape):
    peaks, batch = rock_salt_batch()
    grid = AngleGrid(5, 90, 0.005)
    profile = render(batch, grid, shape=shape, normalise=False)[0].numpy()
    x = grid.values
    strongest = peaks.two_theta[peaks.intensity.argmax()]
    assert x[profile.argmax()] == pytest.approx(strongest, abs=grid.step)
    # area: the sum over grid points is the integrated intensity (minus Lorentzian tails)
    window = np.abs(x - strongest) < 1.0
    expected = peaks.intensity[peaks.intensity.argmax()]
    assert profile[window].sum() == pytest.approx(expected, rel=0.02 if shape == "gaussian" else 0.06)


def test_gaussian_width_follows_caglioti():
    peaks, batch = rock_salt_batch()
    grid = AngleGrid(20, 40, 0.001)
    caglioti = (0.02, -0.01, 0.01)
    profile = render(batch, grid, caglioti=caglioti, normalise=False)[0].numpy()
    centre = peaks.two_theta[peaks.intensity.argmax()]
    near = np.abs(grid.values - centre) < 0.5
    above = grid.values[near][profile[near] >= profile[near].max() / 2]
    expected = caglioti_fwhm(torch.tensor([centre]), *caglioti).item()
    assert above.max() - above.min() == pytest.approx(expected, abs=2 * grid.step)


def test_stick_profile_keeps_the_maximum_per_bin_and_normalises():
    peaks, batch = rock_salt_batch()
    grid = AngleGrid()
    profile = render(batch, grid, shape="stick")[0].numpy()
    assert np.count_nonzero(profile) == len(peaks) and profile.max() == 1.0
    nearest = np.round((peaks.two_theta - grid.start) / grid.step).astype(int)
    assert profile[nearest] == pytest.approx(peaks.intensity / 100, rel=1e-6)


@pytest.mark.parametrize("args, message", [((5, 5, 0.01), "start < stop"), ((5, 90, 0), "step"),
                                            ((float("nan"), 90, 0.01), "finite"), ((-1, 90, 0.01), "start < stop")])
def test_angle_grid_validation(args, message):
    with pytest.raises(ValueError, match=message):
        AngleGrid(*args)
    assert AngleGrid().length == 8500


def test_pxrd_simulator_through_the_registry():
    simulator = xrdcore.create_simulator("pxrd", two_theta=(10, 80, 0.02), shape="pseudo-voigt")
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    profiles = simulator.simulate([nacl, nacl])
    assert profiles.shape == (2, 3500) and torch.equal(profiles[0], profiles[1])
    assert profiles.max(dim=1).values.tolist() == [1.0, 1.0]
    assert simulator.settings["two_theta"] == {"start": 10, "stop": 80, "step": 0.02, "axis": "two_theta"}
    assert simulator.settings["wavelength"] == 1.54056
