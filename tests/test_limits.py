"""Bounded cost of simulation: the estimate made before the work (reflections from the cell
volume, the 2θ range and the wavelength) matches the reflections enumerated; a structure above
``max_reflections`` or ``max_cost`` is refused with the estimate, the limit and the option that
raises it, in Python and in one line of ``xrdcore simulate`` (rendering likewise, ``--max-render``);
``None`` lifts a bound. What makes large cells fast is checked against what it replaces: the
separable structure-factor sum equals the direct one, and the symmetry search of large cells finds
spglib's Laue group. The 20,000-atom timing is benchmarks/large_cell.py's, not a test's.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from test_pxrd import core_mofs

from xrdcore.builtin.pxrd import PXRDSimulator
from xrdcore.diffraction import pxrd
from xrdcore.diffraction.pxrd import CostLimitError, StructureError, estimate_cost, peak_list, peak_lists


def random_cell(atoms: int, edge: float, seed: int = 0) -> Structure:
    """A P1 cube of random positions (no two atoms closer than ~1 Å), C/O/Zn."""
    rng = np.random.default_rng(seed)
    side = math.ceil(atoms ** (1 / 3))
    sites = rng.choice(side ** 3, size=atoms, replace=False)
    grid = np.stack(np.unravel_index(sites, (side,) * 3), 1)
    coords = (grid + 0.5 + rng.uniform(-0.2, 0.2, (atoms, 3))) / side  # jittered lattice: P1, spread out
    return Structure(Lattice.cubic(edge), rng.choice(["C", "O", "Zn"], size=atoms).tolist(), coords)


def test_the_estimate_before_the_work_matches_the_reflections_enumerated():
    for structure, kwargs in ((random_cell(300, 20.0), {}), (core_mofs(("ABAVIJ_clean",))[0], {}),
                              (random_cell(100, 30.0), {"wavelength": "MoKa1", "two_theta_range": (3, 60)})):
        cost = estimate_cost(structure, **kwargs)
        cell = pxrd._Cell.of(structure, {})
        lam = pxrd.parse_wavelength(kwargs.get("wavelength", "CuKa1"))
        low, high = kwargs.get("two_theta_range", (5, 90))
        g_min, g_max = (2 * math.sin(math.radians(t / 2)) / lam for t in (low, high))
        lattice = torch.as_tensor(cell.lattice[None])
        hkl, _ = pxrd._reflections(lattice, torch.linalg.inv(lattice).transpose(1, 2), g_min, g_max)
        assert cost.reflections == pytest.approx(len(hkl), rel=0.03)
        assert cost.scatterers == len(structure) and cost.terms == cost.reflections * len(structure)
        assert cost.bytes == cost.reflections * pxrd.REFLECTION_BYTES and cost.seconds > 0


def test_a_cell_above_the_reflection_limit_is_refused_before_the_work_with_the_way_past_it():
    structure = random_cell(50, 60.0)
    cost = estimate_cost(structure)
    with pytest.raises(CostLimitError) as error:
        peak_list(structure, max_reflections=100_000)
    message = str(error.value)
    assert message == (f"about {cost.reflections:,} reflections between 5 and 90° 2θ (cell volume 216,000 Å³, "
                       f"wavelength 1.5406 Å) need about {cost.bytes / 2**30:.1f} GiB, above the limit of 100,000 "
                       "reflections; raise it with --max-reflections (Python: max_reflections=), or narrow the 2θ "
                       "range")
    assert isinstance(error.value, StructureError)  # a data build counts it as a simulation failure
    assert len(peak_list(structure, max_reflections=None)) > 0  # None: no bound
    assert len(peak_list(structure, two_theta_range=(5, 30), max_reflections=100_000)) > 0  # a narrower range fits


def test_a_cell_above_the_cost_limit_is_refused_with_the_estimate_limit_and_option():
    structure = random_cell(400, 25.0)
    assert len(peak_list(structure, max_cost=None)) > 0  # it runs without a bound
    with pytest.raises(CostLimitError, match=r"^[\d,]+ symmetry-distinct reflections × 400 scatterers = "
                       r"[\d.e+]+ structure-factor terms \(about .* on 2 cores\), above the limit of 1e\+06; "
                       r"raise it with --max-cost \(Python: max_cost=\), or narrow the 2θ range$"):
        peak_list(structure, max_cost=1e6)
    # so far above that even the most symmetric cell would exceed it: refused before the symmetry search
    with pytest.raises(CostLimitError, match=r"^at least [\d,]+ \(with the most symmetry; [\d,]+ with none\)"):
        peak_list(structure, max_cost=1e3)
    # in a batch, the structure is named and the others are not held against it
    with pytest.raises(CostLimitError, match=r"^structure 1: "):
        peak_lists([random_cell(10, 8.0), structure], max_cost=1e6)


def test_simulate_refuses_in_one_line_naming_the_file_the_limit_and_the_option(tmp_path):
    cif = tmp_path / "cell.cif"
    random_cell(400, 25.0).to(filename=str(cif))

    def simulate(*options):
        return subprocess.run([sys.executable, "-m", "xrdcore", "simulate", str(cif), *options], capture_output=True,
                              text=True, timeout=300, check=False)

    for options, flag in ((["--max-cost", "1e6"], "--max-cost"), (["--max-reflections", "1000"], "--max-reflections"),
                          (["--step", "1e-5", "--shape", "lorentzian", "--max-render", "1e7"], "--max-render")):
        result = simulate(*options)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith(f"xrdcore: error: {cif}: ") and "above the limit of" in lines[0]
        assert f"raise the limit with {flag}" in lines[0] or f"raise it with {flag}" in lines[0]
    bad = simulate("--max-cost", "-1")
    assert bad.returncode == 2 and "must be a positive number or 'none'" in bad.stderr
    assert simulate("--max-cost", "none", "--out", str(tmp_path / "p.xy")).returncode == 0


def test_rendering_cost_is_estimated_and_bounded():
    structure = random_cell(40, 12.0)
    fine = PXRDSimulator(grid={"step": 1e-4}, shape="lorentzian", max_render=1e6)
    peaks = fine.peaks([structure])
    assert fine.render_cost(peaks) > 1e6
    with pytest.raises(CostLimitError, match=r"use a coarser --step, or raise the limit with --max-render"):
        fine.render(peaks)
    coarse = PXRDSimulator()
    assert coarse.render_cost(peaks) < 1e6 and coarse.render(peaks).shape == (1, coarse.grid.length)


def reflections_of(structure: Structure):
    """What the structure-factor step receives for one large cell: its representatives and s²."""
    cell = pxrd._Cell.of(structure, {})
    laue, inversions = pxrd._symmetry([cell], 1e-3)
    g_min, g_max = (2 * math.sin(math.radians(t / 2)) / 1.5406 for t in (5, 90))
    lattice = torch.as_tensor(cell.lattice[None])
    reciprocal = torch.linalg.inv(lattice).transpose(1, 2)
    hkl, segment = pxrd._reflections(lattice, reciprocal, g_min, g_max)
    reps, segment, _ = pxrd._orbit_representatives(hkl, segment, laue)
    g = torch.linalg.vector_norm(pxrd._times(reps.double(), reciprocal, segment), dim=1)
    return cell, inversions[0], reps, (g / 2) ** 2


def test_the_separable_sum_equals_the_direct_one():
    """P1 (complex), symmetric MOFs, and a centrosymmetric one moved onto its inversion centre
    (real): the same |F|² to float32 rounding, relative to the strongest."""
    cases = 0
    for structure in (random_cell(300, 20.0), *core_mofs()):
        cell, inversion, reps, s2 = reflections_of(structure)
        variants = [(cell, False)]
        if inversion is not None and (centric := pxrd._inversion_pairs(cell, inversion)) is not None:
            variants.append((centric, True))
        for subject, real in variants:
            direct = pxrd._structure_factor_squared(subject, reps, s2, torch.device("cpu"), real=real)
            separable = pxrd._separable_structure_factor_squared(subject, reps, s2, torch.device("cpu"), real=real)
            assert float((direct - separable).abs().max() / direct.max()) < 1e-5
            cases += 1
    assert cases >= 6


def test_large_cells_find_the_laue_group_spglib_finds():
    structures = [*core_mofs(), random_cell(300, 20.0),
                  Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
                  * (3, 3, 3)]  # a supercell: 216 atoms, pure translations among its symmetries
    cells = [pxrd._Cell.of(s, {}) for s in structures]
    assert all(len(c.coords) > pxrd.SMALL_CELL for c in cells)
    ours, inversions = pxrd._symmetry_search(cells, 1e-3)
    theirs = [pxrd._spglib_operations(cell, 1e-3) for cell in cells]
    for cell, group, other, inversion in zip(cells, pxrd._laue_groups(ours), pxrd._laue_groups([t[0] for t in theirs]),
                                             inversions):
        assert np.array_equal(group, other)
        # an inversion is found exactly where spglib finds one, and it maps the structure onto itself
        assert (inversion is None) == (pxrd._spglib_operations(cell, 1e-3)[1] is None)
        if inversion is not None:
            assert pxrd._inversion_pairs(cell, inversion) is not None
    assert {len(g) for g in pxrd._laue_groups(ours)} >= {2, 48}
