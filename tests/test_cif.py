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


@pytest.mark.parametrize("change, message", [
    (("_cell_length_a 5.0", "_cell_length_a -5.0"), "_cell_length_a = -5.0: a cell length must be a positive"),
    (("_cell_angle_beta 100.5", "_cell_angle_beta 0"), "_cell_angle_beta = 0: a cell angle must lie between"),
    (("'P 1'", "'P -1'"), r"'P -1' is space group No. 2 \(P-1\) but the file's 1 symmetry operations form No. 1"),
    (("'P 1'", "'P 1'\n_space_group_IT_number 14"), r"'P 1' \(No. 1\) and _space_group_IT_number '14' \(No. 14\)"),
])
def test_the_fast_path_leaves_what_is_wrong_to_the_checks(change, message):
    """The P1 fast path reads only files the checks would pass: a negative length, a flat cell or a
    symbol other than P1 beside the identity alone go the slow way, and are refused there."""
    text = P1.replace(*change)
    assert read_p1(text) is None
    with pytest.raises(UnreadableCIF, match=message):
        parse_cif(text, "p1.cif")


def test_a_formula_that_agrees_keeps_the_fast_path():
    text = P1.replace("data_test", "data_test\n_chemical_formula_sum 'Zn2 O1 H1'")
    assert_same_structure(read_p1(text), pymatgen_structure(text))


def test_a_symmetric_file_is_expanded_by_pymatgen():
    text = NACL.read_text()
    assert read_p1(text) is None
    assert len(parse_cif(text, str(NACL))[0]) == 8


# --- what a CIF states is checked before pymatgen builds it ------------------------------------------

import math  # noqa: E402
import re  # noqa: E402

import spglib  # noqa: E402
from pymatgen.core import Lattice, Structure  # noqa: E402
from pymatgen.core.operations import SymmOp  # noqa: E402
from pymatgen.io.cif import CifWriter  # noqa: E402

from xrdcore.data.cif import _hall_number, _hm_number, _operations, _type_of, _write, parse_operation  # noqa: E402
from xrdcore.data.labels import space_group_number  # noqa: E402


def quiet_spglib():
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="spglib")


@pytest.mark.parametrize("hall", range(1, 531))
def test_every_spglib_setting_is_known_by_its_symbols_and_its_operations(hall):
    """Each of spglib's 530 settings: its Hermann-Mauguin symbols (full, short, in capitals) and its
    Hall symbol name its type; its operations written as x,y,z triplets read back as pymatgen reads
    them, form a group, and spglib names that group's type."""
    quiet_spglib()
    kind = spglib.get_spacegroup_type(hall)
    for symbol in (kind.international_full, kind.international_short, kind.international_full.upper()):
        assert _hm_number(symbol) == kind.number, symbol
    assert _hall_number(kind.hall_symbol) == kind.number
    database = spglib.get_symmetry_from_database(hall)
    ops = (database["rotations"], np.mod(database["translations"], 1.0))
    texts = [_write(ops, i) for i in range(len(ops[0]))]
    for text, rotation, translation in zip(texts, *ops):
        parsed = parse_operation(text)
        pymatgen_op = SymmOp.from_xyz_str(text)
        assert np.array_equal(parsed[0], rotation) and np.allclose(np.mod(parsed[1], 1), translation)
        assert np.allclose(pymatgen_op.rotation_matrix, rotation)
        assert np.allclose(np.mod(pymatgen_op.translation_vector, 1), translation)
    assert _type_of(_operations(texts, "x.cif"), None, "x.cif", "its operations") == kind.number
    if len(texts) > 2:  # without one operation the rest is no group (n - 1 does not divide n)
        with pytest.raises(UnreadableCIF, match="do not form a group"):
            _operations(texts[:-1], "x.cif")


@pytest.mark.parametrize("text, problem", [
    ("x,y", "2 comma-separated parts"), ("x,y,q", "cannot read 'q'"), ("x,y,z1/2", "cannot read '1/2'"),
    ("0.5x,y,z", "coefficient 0.5"), ("x,x,z", "determinant 0"), ("x,y,z+1/0", "division by zero"),
    ("x,,z", "part 2 is empty"), ("2x,y,z", "determinant 2")])
def test_an_operation_that_is_not_one_says_why(text, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_operation(text)


def test_operations_as_files_write_them():
    assert parse_operation(" -X+1/2, y - x ,Z+0.25") == ([[-1, 0, 0], [-1, 1, 0], [0, 0, 1]], [0.5, 0.0, 0.25])
    assert parse_operation("1/2+x,+y,-z") == ([[1, 0, 0], [0, 1, 0], [0, 0, -1]], [0.5, 0.0, 0.0])


def test_the_volume_factor_that_refuses_angles_is_pymatgen_s_cell_volume():
    """(V/abc)² = 1 - cos²α - cos²β - cos²γ + 2 cosα cosβ cosγ: the volume pymatgen computes."""
    for angles in ((90, 90, 90), (60, 60, 60), (100, 110, 120), (30, 40, 60), (89, 91, 179)):
        cos = [math.cos(math.radians(a)) for a in angles]
        factor = 1 - sum(c * c for c in cos) + 2 * math.prod(cos)
        assert factor == pytest.approx(Lattice.from_parameters(1, 1, 1, *angles).volume ** 2, abs=1e-12)


def mp20_structures(count=12):
    with MP20.open(newline="") as handle:
        for row in itertools.islice(csv.DictReader(handle), count):
            yield row["material_id"], pymatgen_structure(row["cif"]), int(row["spacegroup.number"])


def symmetric_cif(structure) -> str:
    """pymatgen's CIF of a structure in its space group: symbol, number and operations."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(CifWriter(structure, symprec=0.01))


@pytest.mark.parametrize("name, structure, number", list(mp20_structures()), ids=lambda v: v if isinstance(v, str) else "")
def test_a_symmetric_cif_reads_to_its_space_group_with_or_without_its_operations(name, structure, number):
    """Real MP-20 structures written in their space group: read with their operations, and with only
    the symbol (pymatgen then generates the operations), they are the structure spglib labels as MP
    does; an unknown symbol, operations that lost their centring, or another number are refused."""
    text = symmetric_cif(structure)
    assert space_group_number(parse_cif(text, name)[0]) == number
    symbol_only = re.sub(r"loop_\s+_symmetry_equiv_pos_site_id\s+_symmetry_equiv_pos_as_xyz\s+(?:\s*\d+\s+'[^']*'\n)+",
                         "", text)
    assert "_symmetry_equiv_pos_as_xyz" not in symbol_only
    assert space_group_number(parse_cif(symbol_only, name)[0]) == number
    unknown = re.sub(r"_symmetry_space_group_name_H-M.*", "_symmetry_space_group_name_H-M 'Q 9 z'", symbol_only)
    with pytest.raises(UnreadableCIF, match=r"'Q 9 z' is not a space-group symbol spglib knows, and the file has "
                                            "no symmetry operations"):
        parse_cif(unknown, name)
    other = 1 if number != 1 else 2
    wrong = re.sub(r"_symmetry_Int_Tables_number\s+\d+", f"_symmetry_Int_Tables_number {other}", text)
    with pytest.raises(UnreadableCIF, match=rf"\(No. {number}\) and _symmetry_Int_Tables_number '{other}'"):
        parse_cif(wrong, name)


def test_operations_that_lost_their_centring_are_refused_naming_both():
    text = symmetric_cif(Structure.from_file(NACL))  # Fm-3m: 192 operations, 48 of them without a shift
    kept = "\n".join(line for line in text.splitlines()
                     if not re.match(r"\s*\d+\s+'.*[xyz]\+1/2.*'$", line))
    with pytest.raises(UnreadableCIF, match=r"'Fm-3m' is space group No. 225 \(Fm-3m\) but the file's 48 "
                                            r"symmetry operations form No. 221 \(Pm-3m\)"):
        parse_cif(kept, "nacl.cif")


def test_a_symbol_that_does_not_fit_the_cell_is_refused():
    text = NACL.read_text().replace("'F m -3 m'", "'P 63/m m c'")
    with pytest.raises(UnreadableCIF, match="the 24 operations of 'P 63/m m c' do not fit the cell"):
        parse_cif(text, "hexagonal.cif")


@pytest.mark.parametrize("change, message", [
    (("_cell_length_a 5.64", "_cell_length_a -5.64"), "_cell_length_a = -5.64: a cell length must be a positive"),
    (("_cell_length_c 5.64", "_cell_length_c 0"), "_cell_length_c = 0: a cell length must be a positive"),
    (("_cell_angle_beta 90", "_cell_angle_beta 180"), "_cell_angle_beta = 180: a cell angle must lie between"),
    (("_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90",
      "_cell_angle_alpha 150\n_cell_angle_beta 100\n_cell_angle_gamma 40"), "form no cell"),
    (("'F m -3 m'", "'F m -3 q'"), "'F m -3 q' is not a space-group symbol spglib knows"),
    (("_symmetry_space_group_name_H-M 'F m -3 m'", "_space_group_IT_number 231"),
     "_space_group_IT_number '231' is not a space-group number"),
    (("_symmetry_space_group_name_H-M 'F m -3 m'", "_space_group_name_Hall '-F 4 2 3'"), None),
    (("_symmetry_space_group_name_H-M 'F m -3 m'", "_space_group_name_Hall '-F 4 2 3'\n_space_group_IT_number 62"),
     "_space_group_name_Hall '-F 4 2 3' (No. 225) and _space_group_IT_number '62' (No. 62) name different"),
    (("_symmetry_space_group_name_H-M 'F m -3 m'", "_symmetry_space_group_name_H-M 'FM-3M'"), None),  # capitals
    (("'F m -3 m'", "'F m -3 m :1'"), None),  # an origin suffix where there is no choice
    (("'F m -3 m'", "'FD-3M'"),  # capitals pymatgen does not read, and two origins: which one is unknown
     "says _symmetry_space_group_name_H-M 'FD-3M' (No. 227) but pymatgen would apply the symmetry of No. 1"),
    (("_symmetry_space_group_name_H-M 'F m -3 m'", ""), None),  # no symmetry at all: P1, as pymatgen reads it
])
def test_cell_and_symbol_checks(tmp_path, change, message):
    from xrdcore.data.cif import read_structure

    path = tmp_path / "nacl.cif"
    path.write_text(NACL.read_text().replace(*change))
    if message is None:
        structure = read_structure(path)
        expected = 221 if "F m -3 m" in change[0] and not change[1] else 225
        assert len(structure) == (2 if expected == 221 else 8)
        assert space_group_number(structure) == expected
        return
    with pytest.raises(UnreadableCIF) as caught:
        read_structure(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value), str(caught.value)


def test_occupancy_above_one_and_overlapping_atoms_are_named_by_their_sites(tmp_path):
    from xrdcore.data.cif import read_structure

    path = tmp_path / "occupancy.cif"
    path.write_text(NACL.read_text().replace("_atom_site_fract_z\n", "_atom_site_fract_z\n_atom_site_occupancy\n")
                    .replace("Na1 Na 0 0 0", "Na1 Na 0 0 0 1").replace("Cl1 Cl 0.5 0.5 0.5", "Cl1 Cl 0.5 0.5 0.5 1.2"))
    with pytest.raises(UnreadableCIF, match="atom site Cl1 has _atom_site_occupancy 1.2, above 1"):
        read_structure(path)
    path.write_text(NACL.read_text().replace("Cl1 Cl 0.5 0.5 0.5", "Cl1 Cl 0.5 0.5 0.5\nNa2 Na 0.01 0 0"))
    with pytest.raises(UnreadableCIF, match=r"atoms overlap: .* atom sites Na\d and Na\d of the file"):
        read_structure(path)


def test_unknown_symbol_with_operations_that_define_the_group():
    """A symbol of a setting spglib does not list ('C 4/m m m', a non-standard tetragonal cell) with the operations: the operations decide; written garbage is refused even then."""
    text = symmetric_cif(Structure.from_file(NACL))
    renamed = re.sub(r"_symmetry_space_group_name_H-M.*", "_symmetry_space_group_name_H-M 'C 4/m m m'", text)
    assert space_group_number(parse_cif(renamed, "x.cif")[0]) == 225
    garbage = re.sub(r"_symmetry_space_group_name_H-M.*", "_symmetry_space_group_name_H-M banana", text)
    with pytest.raises(UnreadableCIF, match="'banana' is not a space-group symbol spglib knows .it is not written"):
        parse_cif(garbage, "x.cif")


# --- spglib never sees what crashes it ----------------------------------------------------------------

def test_spglib_is_never_given_a_tolerance_or_a_cell_that_crashes_it():
    """spglib 2.x dereferences garbage (a segmentation fault, the process gone) for a negative or NaN
    symprec and for a NaN cell; each is refused first, naming what is wrong."""
    from xrdcore.data.labels import LabelSettings
    from xrdcore.data.validation import InvalidStructure

    structure = Structure.from_file(NACL)
    assert space_group_number(structure, symprec=1e-6) == space_group_number(structure, symprec=1.0) == 225
    for bad in (-1, math.nan, 0, 5.0, math.inf, "0.1", True):
        with pytest.raises(ValueError, match=r"symprec must be a finite number in \[1e-06, 1\] Å"):
            space_group_number(structure, symprec=bad)
        with pytest.raises(ValueError, match="symprec"):
            LabelSettings(symprec=bad)
    for bad in (math.nan, 0, 180, -2):
        with pytest.raises(ValueError, match=r"angle_tolerance must be -1 \(spglib's default\)"):
            space_group_number(structure, angle_tolerance=bad)
    broken = structure.copy()
    broken.lattice._matrix = broken.lattice.matrix * np.nan  # noqa: SLF001 - what a corrupt record holds
    with pytest.raises(InvalidStructure, match="not finite"):
        space_group_number(broken)


def test_build_options_are_checked_where_the_python_api_takes_them():
    from xrdcore.data.cache import BuildSpec

    for changes, message in (({"symprec": -1}, "symprec must be"), ({"limit": 0}, "limit must be a positive int"),
                             ({"seed": -1}, "seed must be a non-negative int"),
                             ({"wavelength": 0}, r"wavelength 0.0 Å is outside 0.01-20 Å"),
                             ({"two_theta_range": (5,)}, r"2θ range must be two numbers"),
                             ({"two_theta_range": (90, 5)}, r"2θ range must satisfy"),
                             ({"disorder": "average"}, "disorder must be one of skip, keep"),
                             ({"fractions": (0.5, 0.5, 0.5)}, "fractions must be non-negative and sum to 1"),
                             ({"debye_waller": {"Na": -1}}, r"Debye-Waller factor B of Na must be a finite number in "
                                                            r"\[0, 100\] Å²")):
        with pytest.raises(ValueError, match=message):
            BuildSpec("csv", **changes)


def test_the_shared_validators_name_the_argument_the_range_and_the_value():
    from xrdcore import validate

    assert validate.number_in("x", 3, 0, 5) == 3.0
    with pytest.raises(ValueError, match=r"^step must be a finite number > 0 degrees, got 0$"):
        validate.number_in("step", 0, 0, None, unit="degrees", low_open=True)
    with pytest.raises(ValueError, match=r"^x must be a finite number in \[0, 1\), got 1$"):
        validate.number_in("x", 1, 0, 1, high_open=True)
    assert validate.seed(2**63 - 1) == 2**63 - 1 and validate.optional_positive_int("limit", None) is None
    for bad in (2**63, -1, 1.0, True):
        with pytest.raises(ValueError, match="seed must be a non-negative int up to"):
            validate.seed(bad)
    with pytest.raises(ValueError, match=r"workers must be a positive int up to \d+ \(8 per CPU core\), got 100000"):
        validate.workers(100_000)
    with pytest.raises(ValueError, match=r"disorder must be one of skip, keep, got 'x'"):
        validate.choice("disorder", "x", ("skip", "keep"))
    with pytest.raises(ValueError, match="linearly dependent"):
        validate.spglib_cell(np.zeros((3, 3)), [[0, 0, 0]], [1])


@pytest.mark.parametrize("tag", ["_space_group_symop.operation_xyz", "_SYMMETRY_EQUIV_POS_AS_XYZ"])
def test_operations_under_a_tag_pymatgen_does_not_read_are_applied(tag):
    """The mmCIF dot form and capitals: pymatgen reads neither (it applied P1); the file's operations
    are given to it under the tag it reads."""
    text = symmetric_cif(Structure.from_file(NACL))
    text = re.sub(r"_symmetry_(space_group_name_H-M|Int_Tables_number).*\n", "", text)
    structure = parse_cif(text.replace("_symmetry_equiv_pos_as_xyz", tag), "x.cif")[0]
    assert len(structure) == 8 and space_group_number(structure) == 225
