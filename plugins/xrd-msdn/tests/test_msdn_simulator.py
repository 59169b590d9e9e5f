"""The ``zone-axis`` simulator's images: shape and range, colours by axis, determinism, lines
where the shaping says, and the symmetry of the views under rotations of the crystal."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from xrd_msdn.shaping import rasterise, shape_segments
from xrd_msdn.simulator import ZoneAxisSimulator

#: 46 MP-20 structures as CIF strings, shared with the core's tests
MP20 = Path(__file__).resolve().parents[3] / "tests" / "data" / "mp20_sample.csv"


@pytest.fixture(scope="module")
def mp20_structures() -> list[Structure]:
    with MP20.open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's notes on rounded coordinates
        return [Structure.from_str(row["cif"], fmt="cif") for row in rows]


def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def magnesium() -> Structure:
    return Structure(Lattice.hexagonal(3.209, 5.211), ["Mg", "Mg"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])


def orthorhombic() -> Structure:
    """A Pmm2-like cell with three different edges and atoms off the special positions."""
    return Structure(Lattice.orthorhombic(3.9, 4.6, 5.3), ["Ti", "O", "O"],
                     [[0, 0, 0.1], [0.5, 0, 0.55], [0, 0.5, 0.62]])


def test_images_are_float32_in_0_1_with_view_v_in_channel_v(mp20_structures):
    structures = [nacl(), magnesium(), *mp20_structures[:4]]
    images = ZoneAxisSimulator(size=64).simulate(structures)
    assert images.shape == (6, 3, 3, 64, 64) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    for v in range(3):
        for c in range(3):
            lit = images[:, v, c].flatten(1).amax(1)
            if c == v:
                assert torch.all(lit > 0.5)  # every view of every structure has something
            else:
                assert torch.all(lit == 0)
    grey = ZoneAxisSimulator(size=64, colour="grey").simulate(structures)
    assert grey.shape == (6, 3, 1, 64, 64)
    assert torch.equal(grey[:, :, 0], torch.stack([images[:, v, v] for v in range(3)], 1))
    published = ZoneAxisSimulator(size=64, colour="published").simulate(structures)
    spots = ZoneAxisSimulator(size=64, representation="spots").simulate(structures)
    for v in range(3):
        assert torch.equal(published[:, v, v], images[:, v, v])  # shaped in its own channel
        for c in set(range(3)) - {v}:
            assert torch.equal(published[:, v, c], spots[:, v, v])  # spots alone in the others


def test_rendering_is_deterministic_and_independent_of_the_batch(mp20_structures):
    simulator = ZoneAxisSimulator(size=96)
    batch = [nacl(), *mp20_structures[:5]]
    first = simulator.simulate(batch)
    assert torch.equal(first, simulator.simulate(batch))  # bit-identical
    assert torch.equal(first[3:4], simulator.simulate(batch[3:4]))
    assert torch.equal(first.flip(0), simulator.simulate(batch[::-1]))


def test_the_direct_beam_is_removed_and_spots_sit_where_the_geometry_says():
    simulator = ZoneAxisSimulator(size=224, representation="spots")
    view = simulator.spots([nacl()])[0][2]
    image = simulator.render([simulator.spots([nacl()])[0]])[0, 2, 2]
    centre = (224 - 1) / 2
    assert image[110:114, 110:114].eq(0).all()  # no 000 spot
    scale = 224 / (2 * 0.75)
    for (u, w), intensity in zip(view.position.tolist(), view.intensity.tolist()):
        column, row = centre + u * scale, centre - w * scale
        if 0 <= column <= 223 and 0 <= row <= 223:
            brightest = image[round(row), round(column)].item()
            assert brightest == pytest.approx(intensity ** 0.5, rel=1e-5)  # spot centre: brightness
    # 200 of NaCl (a = 5.64 Å) is 2 / 5.64 Å⁻¹ right of the centre along x
    assert (2, 0, 0) in [tuple(h) for h in view.hkl.tolist()]
    assert image[round(centre), round(centre + 2 / 5.64 * scale)] > 0.5


def brute_force_pairs(points: list[list[float]], factor: float) -> list[tuple[int, int]]:
    distances = {(i, j): math.dist(points[i], points[j]) for i in range(len(points)) for j in range(i + 1, len(points))}
    smallest = min(distances.values())
    return sorted(pair for pair, d in distances.items() if d <= factor * smallest * (1 + 1e-9))


def test_lines_join_exactly_the_pairs_under_the_threshold(mp20_structures):
    """The shaped image is the spots drawn over lines between exactly the pairs closer than 1.7 ×
    the smallest spot distance (pairs found here by brute force), with the documented widths."""
    simulator = ZoneAxisSimulator(size=128)
    patterns = simulator.spots([magnesium(), nacl(), *mp20_structures[:3]])
    shaped = simulator.render(patterns)
    spots = ZoneAxisSimulator(size=128, representation="spots").render(patterns)
    scale = 128 / (2 * 0.75)
    for b, pattern in enumerate(patterns):
        for view in pattern:
            v = view.axis
            pairs = torch.tensor(brute_force_pairs(view.position.tolist(), 1.7))
            pixels = simulator.pixels(view.position)
            brightness = view.intensity ** 0.5
            mean = (brightness[pairs[:, 0]] + brightness[pairs[:, 1]]) / 2
            half_width = (scale * (0.004 + 0.008 * mean) / 2).clamp(min=0.5)  # at least one pixel wide
            zeros = torch.zeros(len(pairs), dtype=torch.long)
            lines = rasterise(zeros, pixels[pairs[:, 0]], pixels[pairs[:, 1]], half_width, torch.ones(len(pairs), 1),
                              1, 128, 128)[0, 0]
            radius = (scale * (0.006 + 0.009 * brightness)).clamp(min=0.5)
            covered = rasterise(torch.zeros(len(view), dtype=torch.long), pixels, pixels, radius,
                                torch.ones(len(view), 1), 1, 128, 128)[0, 0]
            expected = spots[b, v, v] + (1 - covered) * lines
            torch.testing.assert_close(shaped[b, v, v], expected, atol=1e-6, rtol=0)
            middles = ((pixels[pairs[:, 0]] + pixels[pairs[:, 1]]) / 2).round().long()
            inside = (middles >= 0).all(1) & (middles <= 127).all(1)
            near = F.max_pool2d(shaped[b, v, v][None, None], 3, stride=1, padding=1)[0, 0]
            assert (near[middles[inside, 1], middles[inside, 0]] >= 0.5 - 1e-6).all()  # every line is drawn
    # the hexagonal [001] net of Mg: √3 > 1.7, so only nearest neighbours are joined
    z = patterns[0][2]
    pairs = shape_segments(z.position, 1.7)
    lengths = torch.linalg.vector_norm(z.position[pairs[:, 0]] - z.position[pairs[:, 1]], dim=1)
    torch.testing.assert_close(lengths, torch.full_like(lengths, 2 / (math.sqrt(3) * 3.209)))
    # a larger factor joins more
    wider = ZoneAxisSimulator(size=128, neighbour_factor=2.5).render(patterns)
    assert (wider > shaped + 0.5).any() and (wider >= shaped - 1e-6).all()


def rotated(structure: Structure, axis, angle: float) -> Structure:
    out = structure.copy()
    out.apply_operation(SymmOp.from_axis_angle_and_translation(axis, angle))
    return out


def test_a_quarter_turn_about_z_rotates_the_z_view_and_swaps_x_and_y():
    """In the crystal's own frame: rotating by +90° about z maps g → (−g_y, g_x, g_z), so the
    z image turns by a quarter, the new x view is the old y view mirrored on its anti-diagonal,
    the new y view the old x view turned the other way."""
    simulator = ZoneAxisSimulator(size=64, standardize=False)
    for structure in (nacl(), orthorhombic()):
        before = simulator.simulate([structure])[0]
        after = simulator.simulate([rotated(structure, (0, 0, 1), 90)])[0]
        x, y, z = (before[v, v] for v in range(3))
        torch.testing.assert_close(after[2, 2], torch.rot90(z, 1, dims=(0, 1)), atol=1e-5, rtol=0)
        torch.testing.assert_close(after[0, 0], y.flip(0, 1).T, atol=1e-5, rtol=0)
        torch.testing.assert_close(after[1, 1], torch.rot90(x, -1, dims=(0, 1)), atol=1e-5, rtol=0)
        if structure.lattice.a == structure.lattice.b:  # a lattice symmetry: the same crystal again
            torch.testing.assert_close(after[2, 2], z, atol=1e-5, rtol=0)
            torch.testing.assert_close(after[0, 0], x, atol=1e-5, rtol=0)


def test_relabelling_the_axes_cyclically_relabels_the_views():
    """(x, y, z) → (y, z, x): the new y view is the old x view, and so on, to the bit."""
    structure = orthorhombic()
    cyclic = Structure(Lattice(structure.lattice.matrix[:, [2, 0, 1]]), structure.species, structure.frac_coords)
    simulator = ZoneAxisSimulator(size=64, standardize=False)
    before, after = simulator.simulate([structure, cyclic])
    for v in range(3):
        torch.testing.assert_close(after[(v + 1) % 3, (v + 1) % 3], before[v, v], atol=1e-6, rtol=0)


def test_the_standard_cell_makes_the_images_independent_of_the_input_orientation_and_cell():
    simulator = ZoneAxisSimulator(size=64)
    structure = magnesium()
    turned = rotated(structure, (1, 2, 3), 37)
    supercell = structure.copy()
    supercell.make_supercell([[1, 1, 0], [-1, 1, 0], [0, 0, 1]])  # another cell of the same crystal
    images = simulator.simulate([structure, turned, supercell.get_primitive_structure(), supercell])
    for other in images[1:]:
        torch.testing.assert_close(other, images[0], atol=1e-5, rtol=0)


def test_settings_are_json_and_follow_every_option():
    base = ZoneAxisSimulator()
    settings = base.settings
    assert json.loads(json.dumps(settings)) == settings
    assert settings["size"] == 224 and settings["radiation"] == "electron"
    assert settings["wavelength"] == pytest.approx(0.025079, abs=1e-6) and settings["ewald_sphere"] is True
    assert settings["neighbour_factor"] == 1.7 and settings["representation"] == "shaped"
    xray = ZoneAxisSimulator(radiation="xray").settings
    assert xray["wavelength"] == 1.54056 and xray["ewald_sphere"] is False and xray["voltage_kv"] is None
    changes = {"size": 64, "voltage": 300.0, "half_width": 1.0, "relrod_width": 0.02, "max_excitation_error": 0.05,
               "min_intensity": 0.05, "max_spots": 100, "representation": "spots", "neighbour_factor": 1.5,
               "gamma": 1.0, "spot_radius": (0.01, 0.02), "line_width": (0.01, 0.02), "colour": "grey",
               "standardize": False, "symprec": 0.01, "angle_tolerance": 5.0, "debye_waller": {"Na": 1.0}}
    for name, value in changes.items():
        assert ZoneAxisSimulator(**{name: value}).settings != settings, name


@pytest.mark.parametrize("bad", [{"size": 4}, {"radiation": "neutron"}, {"colour": "rgb"}, {"half_width": 0},
                                 {"spot_radius": (0.02, 0.01)}, {"neighbour_factor": 0.5}, {"max_spots": 0},
                                 {"wavelength": "CuKz", "radiation": "xray"}])
def test_bad_settings_are_refused_with_a_message(bad):
    with pytest.raises(ValueError):
        ZoneAxisSimulator(**bad)
