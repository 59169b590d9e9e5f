"""The PXRD simulator against pymatgen's XRDCalculator: positions within 1e-3° and every
intensity within 0.5 on the max-100 scale, on pymatgen's AFLOW prototypes, MP-20 crystals,
pyxtal random crystals and CoRE MOFs (large cells, and partial occupancy); many structures per
call (peak_lists) against one at a time, and its symmetry search against spglib's."""

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
from xrdcore.diffraction.grid import AngleGrid
from xrdcore.diffraction.profile import PeakBatch, caglioti_fwhm, render
from xrdcore.diffraction.pxrd import StructureError, peak_list, peak_lists
from xrdcore.diffraction.radiation import WAVELENGTHS, wavelength

DATA = Path(__file__).with_name("data")
MOFS = ("ABAVIJ_clean", "ABESUX_clean", "ABEFUL_clean", "ABEXEM_clean")


def assert_matches_pymatgen(structure, line="CuKa1", debye_waller=None, two_theta_range=(5, 90), ours=None):
    """Every peak of each list has a partner in the other within 1e-3° and 0.5 intensity;
    a peak without a partner must itself be at most 0.5 (its partner's intensity is then 0).
    ``ours``: the peak list to check (default: peak_list's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = XRDCalculator(line, debye_waller_factors=debye_waller).get_pattern(
            structure, two_theta_range=two_theta_range)
    if ours is None:
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
    (laue,), (inversion,) = _symmetry([cell], 1e-3)
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
    iron = Structure(Lattice.cubic(4), ["Fe"], [[0, 0, 0]])
    with pytest.raises(StructureError, match=f"^structure 1: .*{message}"):  # in a batch: which one
        peak_lists([iron, structure, iron])


@pytest.mark.parametrize("kwargs, message", [
    ({"wavelength": "CuKx"}, "unknown X-ray line"), ({"wavelength": -1.0}, "outside"),
    ({"two_theta_range": (90, 5)}, "low < high"), ({"debye_waller": {"Xx": 1.0}}, "unknown elements")])
def test_bad_settings(kwargs, message):
    iron = Structure(Lattice.cubic(4), ["Fe"], [[0, 0, 0]])
    with pytest.raises(ValueError, match=message):
        peak_list(iron, **kwargs)
    with pytest.raises(ValueError, match=message):
        peak_lists([iron, iron], **kwargs)


# --- many structures per call ---------------------------------------------------------------


def random_crystals(n, seed=7):
    """pyxtal crystals of random space groups (reproducible), as synthetic training data uses."""
    from xrdcore.data.random_crystals import GenerationError, random_crystal, structure_seed

    rng, crystals = np.random.default_rng(seed), []
    while len(crystals) < n:
        group = int(rng.integers(1, 231))
        try:
            crystals.append(random_crystal(group, structure_seed(seed, group, len(crystals)))[0])
        except GenerationError:
            continue
    return crystals


def mixed_batch():
    """Cells of every size and kind: AFLOW prototypes (2-105 atoms: small cells and, above
    SMALL_CELL, the spglib path), pyxtal crystals, a solid solution, and a cell with no
    reflection between 5 and 90° (d_100 = 1.05 Å)."""
    prototypes = [s for _, s in aflow_prototypes()]
    alloy = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.8), [{"Cu": 0.6, "Au": 0.4}], [[0, 0, 0]])
    tiny = Structure(Lattice.cubic(1.05), ["Li"], [[0, 0, 0]])
    return (prototypes[::24] + [max(prototypes, key=len)] + random_crystals(8)
            + [alloy, tiny, prototypes[1]])


def test_many_structures_in_one_call_equal_one_at_a_time():
    batch = mixed_batch()
    assert {len(s) <= 20 for s in batch} == {True, False} and any(len(s) > 64 for s in batch)
    together, backwards = peak_lists(batch), peak_lists(batch[::-1])[::-1]
    for structure, ours, reordered in zip(batch, together, backwards):
        alone = peak_list(structure)
        for other in (ours, reordered):
            assert other.two_theta == pytest.approx(alone.two_theta, rel=1e-12, abs=0)
            assert other.d == pytest.approx(alone.d, rel=1e-12, abs=0)
            assert other.intensity == pytest.approx(alone.intensity, rel=0, abs=1e-9)
            assert np.array_equal(other.hkl, alone.hkl) and np.array_equal(other.multiplicity, alone.multiplicity)
            assert np.array_equal(other.rotations, alone.rotations) and np.array_equal(other.lattice, alone.lattice)
            assert other.wavelength == alone.wavelength
    assert len(together[-2]) == 0 and len(together[-2].rotations) == 48  # the cell with no peaks in range
    assert peak_lists([]) == []


def test_many_structures_in_one_call_agree_with_pymatgen():
    batch = [s for s in mixed_batch() if s.lattice.a > 2]  # pymatgen fails on a pattern without peaks
    warm = {element: 0.2 + 0.1 * i for i, element in enumerate(("O", "Si", "Fe", "Cu", "Au", "Ga", "Ni", "C"))}
    for settings in ({}, {"line": "MoKa1", "two_theta_range": (3, 60)}, {"debye_waller": warm}):
        ours = peak_lists(batch, wavelength=settings.get("line", "CuKa1"), debye_waller=settings.get("debye_waller"),
                          two_theta_range=settings.get("two_theta_range", (5, 90)))
        for structure, peaks in zip(batch, ours):
            assert_matches_pymatgen(structure, **settings, ours=peaks)


def test_small_cells_find_the_symmetry_spglib_finds():
    from xrdcore.diffraction.pxrd import SMALL_CELL, _Cell, _laue_groups, _rotations, _spglib_operations

    rows = csv.DictReader((DATA / "mp20_sample.csv").open())
    structures = ([s for _, s in aflow_prototypes()] + random_crystals(24, seed=11)
                  + [Structure.from_str(row["cif"], fmt="cif") for row in rows])
    cells = [c for c in (_Cell.of(s, {}) for s in structures) if len(c.coords) <= SMALL_CELL]
    assert len(cells) > 350
    ours = _laue_groups(_rotations(cells, 1e-3))
    theirs = _laue_groups([_spglib_operations(cell, 1e-3)[0] for cell in cells])
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
    assert {len(group) for group in ours} == {2, 4, 6, 8, 12, 16, 24, 48}  # every Laue class


def test_rotations_that_are_not_a_group_get_friedel_s_law():
    from xrdcore.diffraction.pxrd import _laue_groups

    identity, four = np.eye(3, dtype=int), np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    # a 2-fold axis in a basis so skewed that its matrix has entries beyond ±63
    skew = np.array([[1, 0, 70], [0, 1, 0], [0, 0, 1]])
    two = skew @ np.diag([-1, -1, 1]) @ np.linalg.inv(skew).round().astype(int)
    assert np.abs(two).max() > 63 and np.array_equal(two @ two, identity)
    tetragonal, lone, skewed = _laue_groups([np.stack([identity, four, four @ four, four.T]),
                                            np.stack([identity, four]), np.stack([identity, two])])
    assert len(tetragonal) == 8 and {tuple(r.ravel()) for r in tetragonal} >= {tuple(-four.ravel())}
    assert np.array_equal(tetragonal, np.unique(tetragonal.reshape(-1, 9), axis=0).reshape(-1, 3, 3))
    for friedel in (lone, skewed):
        assert np.array_equal(friedel, np.stack([identity, -identity]))


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
    simulator = xrdcore.create_simulator("pxrd", grid={"start": 10, "stop": 80, "step": 0.02},
                                        shape="pseudo-voigt")
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    profiles = simulator.simulate([nacl, nacl])
    assert profiles.shape == (2, 3500) and torch.equal(profiles[0], profiles[1])
    assert profiles.max(dim=1).values.tolist() == [1.0, 1.0]
    assert simulator.settings["two_theta"] == {"start": 10, "stop": 80, "step": 0.02, "axis": "two_theta"}
    assert simulator.settings["wavelength"] == 1.54056
