"""The P1 CIF reader gives pymatgen's structure, site for site, on real files, and steps aside
(returns None) for every file it cannot read exactly as pymatgen would."""

import csv
import itertools
import warnings
from pathlib import Path

import numpy as np
import pytest
from pymatgen.io.cif import CifParser

from xrdcore.data.cif import UnreadableCIF, parse_cif, read_p1
from xrdcore.data.sources import coremof_cifs

MP20 = Path(__file__).with_name("data") / "mp20_sample.csv"
NACL = Path(__file__).with_name("data") / "NaCl.cif"


def pymatgen_structure(text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CifParser.from_str(text).parse_structures(primitive=False, on_error="raise")[0]


def assert_same_structure(fast, slow):
    assert np.array_equal(fast.lattice.matrix, slow.lattice.matrix)
    assert np.array_equal(fast.frac_coords, slow.frac_coords)
    assert [site.species_string for site in fast] == [site.species_string for site in slow]
    assert [dict(site.species) for site in fast] == [dict(site.species) for site in slow]
    assert fast.labels == slow.labels


def real_p1_files():
    yield from ((e.id, e.text) for e in itertools.islice(coremof_cifs(), 25))
    with MP20.open(newline="") as handle:
        yield from ((row["material_id"], row["cif"]) for row in itertools.islice(csv.DictReader(handle), 20))


@pytest.mark.parametrize("name, text", list(real_p1_files()), ids=lambda v: v if len(str(v)) < 40 else "")
def test_real_p1_files_are_read_exactly_as_pymatgen_reads_them(name, text):
    fast = read_p1(text)
    assert fast is not None, f"{name} is plain P1 and should take the fast path"
    assert_same_structure(fast, pymatgen_structure(text))


P1 = """data_test
_cell_length_a 5.0
_cell_length_b 6.0
_cell_length_c 7.0(2)
_cell_angle_alpha 90
_cell_angle_beta 100.5
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_symmetry_equiv_pos_as_xyz
  'x, y, z'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
O1 O 0.33330 0.5 -0.25 1.0
Zn1 Zn 0.1 0.2 0.3 1
H1 H 1.0 0.66667(3) 0.9 1.00
Zn2 Zn 0.6 0.7 0.8 1.0
"""


def test_thirds_wrapping_and_pymatgen_s_site_order():
    fast = read_p1(P1)
    assert_same_structure(fast, pymatgen_structure(P1))
    assert [s.species_string for s in fast] == ["Zn", "Zn", "H", "O"]  # by electronegativity, file order within
    assert fast.frac_coords[3][0] == 1 / 3 and fast.frac_coords[3][2] == 0.75 and fast.frac_coords[2][0] == 0.0


@pytest.mark.parametrize("change", [
    lambda t: t.replace("'x, y, z'", "'x, y, z'\n  '-x, -y, -z'"),  # a second symmetry operation
    lambda t: t.replace("Zn1 Zn 0.1 0.2 0.3 1", "Zn1 Zn 0.1 0.2 0.3 0.5"),  # partial occupancy
    lambda t: t.replace("Zn2 Zn 0.6 0.7 0.8", "Zn2 Zn 0.10005 0.2 0.3"),  # sites pymatgen merges
    lambda t: t.replace("Zn2 Zn", "Zn2 Zn2+"),  # not an element symbol
    lambda t: t.replace("Zn2 Zn", "Ar2 Ar"),  # no electronegativity: pymatgen's sort is not total
    lambda t: t.replace("O1 O 0.33330", "O1 O ?"),  # unknown coordinate
    lambda t: t.replace("_atom_site_fract_x", "_atom_site_Fract_x"),  # a tag pymatgen would not see
    lambda t: t + "data_second\n_cell_length_a 1\n",  # two data blocks
    lambda t: t.replace("_cell_angle_gamma 90", "_cell_angle_gamma 90 # comment after a value"),
    lambda t: t.replace("loop_\n_symmetry_equiv_pos_as_xyz\n  'x, y, z'\n", ""),  # symmetry from the symbol
    lambda t: t.replace("data_test", "data_test\n_chemical_formula_sum 'Zn2 O1 H1 N1'"),  # element missing
    lambda t: t + "loop_\n_atom_type_symbol\n_atom_type_oxidation_number\nZn 2\nO -2\nH 1\n",
], ids=["symmetry", "occupancy", "merge", "oxidation", "noble-gas", "unknown", "tag-case", "blocks",
        "inline-comment", "no-operations", "formula", "oxidation-states"])
def test_anything_but_plain_p1_is_left_to_pymatgen(change):
    text = change(P1)
    assert read_p1(text) is None
    try:
        (structure,) = parse_cif(text, "test.cif")
    except UnreadableCIF:
        return  # pymatgen's own refusal (e.g. the formula names an element no site has)
    assert_same_structure(structure, pymatgen_structure(text))


def test_a_formula_that_agrees_keeps_the_fast_path():
    text = P1.replace("data_test", "data_test\n_chemical_formula_sum 'Zn2 O1 H1'")
    assert_same_structure(read_p1(text), pymatgen_structure(text))


def test_a_symmetric_file_is_expanded_by_pymatgen():
    text = NACL.read_text()
    assert read_p1(text) is None
    assert len(parse_cif(text, str(NACL))[0]) == 8
