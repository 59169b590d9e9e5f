"""The space-group tables against independent references: the International Tables (ITA),
pymatgen's own symmetry data, Pearson symbols of the AFLOW prototypes, and a brute-force
structure-factor calculation over spglib's operations."""

import gzip
import json
from collections import defaultdict
from functools import cache
from pathlib import Path

import numpy as np
import pymatgen.analysis.prototypes as prototypes
import pytest
from pymatgen.symmetry.groups import SpaceGroup as PymatgenSpaceGroup

from xrdcore.crystal import level, space_group, space_groups
from xrdcore.crystal.spacegroups import (absent_reflections, extinction_keys, hkl_grid,
                                         operations, rotation_type_counts)

ALL = range(1, 231)
# ITA Table 2.1.2.1 / the space-group pages: number ranges of the crystal systems
ITA_SYSTEM_RANGES = {"triclinic": (1, 2), "monoclinic": (3, 15), "orthorhombic": (16, 74),
                     "tetragonal": (75, 142), "trigonal": (143, 167), "hexagonal": (168, 194),
                     "cubic": (195, 230)}
# ITA: the 11 pairs of enantiomorphic space-group types
ENANTIOMORPHS = [(76, 78), (91, 95), (92, 96), (144, 145), (151, 153), (152, 154), (169, 170),
                 (171, 172), (178, 179), (180, 181), (212, 213)]


@pytest.mark.parametrize("name, count", [
    ("space_group", 230), ("crystal_system", 7), ("lattice_system", 7), ("bravais", 14),
    ("point_group", 32), ("laue_class", 11), ("arithmetic_class", 73), ("centring", 6)])
def test_class_counts(name, count):
    assert len(level(name)) == count
    assert sorted(set(level(name).table)) == list(range(count))  # every class is used


def test_centring_letters_of_standard_settings():
    # B never occurs in a standard setting; A does (Amm2, 38-41)
    assert set(level("centring").classes) == {"P", "A", "C", "I", "F", "R"}
    assert [sg.number for sg in space_groups() if sg.centring == "A"] == [38, 39, 40, 41]


@pytest.mark.parametrize("number, symbol, system, lattice, bravais, point_group, laue", [
    (225, "Fm-3m", "cubic", "cubic", "cF", "m-3m", "m-3m"),
    (14, "P2_1/c", "monoclinic", "monoclinic", "mP", "2/m", "2/m"),
    (166, "R-3m", "trigonal", "rhombohedral", "hR", "-3m", "-3m"),
    (194, "P6_3/mmc", "hexagonal", "hexagonal", "hP", "6/mmm", "6/mmm"),
    (143, "P3", "trigonal", "hexagonal", "hP", "3", "-3"),
    (62, "Pnma", "orthorhombic", "orthorhombic", "oP", "mmm", "mmm"),
    (15, "C2/c", "monoclinic", "monoclinic", "mC", "2/m", "2/m"),
    (38, "Amm2", "orthorhombic", "orthorhombic", "oC", "mm2", "mmm"),
    (139, "I4/mmm", "tetragonal", "tetragonal", "tI", "4/mmm", "4/mmm"),
    (227, "Fd-3m", "cubic", "cubic", "cF", "m-3m", "m-3m"),
    (230, "Ia-3d", "cubic", "cubic", "cI", "m-3m", "m-3m"),
    (1, "P1", "triclinic", "triclinic", "aP", "1", "-1"),
])
def test_international_tables_spot_checks(number, symbol, system, lattice, bravais, point_group, laue):
    sg = space_group(number)
    assert (sg.symbol, sg.crystal_system, sg.lattice_system, sg.bravais, sg.point_group, sg.laue_class) == \
        (symbol, system, lattice, bravais, point_group, laue)


def test_crystal_systems_follow_ita_number_ranges():
    for sg in space_groups():
        low, high = ITA_SYSTEM_RANGES[sg.crystal_system]
        assert low <= sg.number <= high, sg


def test_agrees_with_pymatgen_symmetry_data():
    for sg in space_groups():
        theirs = PymatgenSpaceGroup.from_int_number(sg.number)
        assert theirs.crystal_system == sg.crystal_system, sg.number
        assert theirs.point_group == sg.point_group, sg.number
        assert theirs.symbol.replace("12_1/c1", "2_1/c") in (sg.symbol, sg.full_symbol.replace(" ", ""))


def test_rhombohedral_lattice_system_is_exactly_the_r_centred_groups():
    rhombohedral = [sg.number for sg in space_groups() if sg.lattice_system == "rhombohedral"]
    assert rhombohedral == [146, 148, 155, 160, 161, 166, 167]
    assert all(space_group(n).symbol.startswith("R") for n in rhombohedral)


def test_centring_letter_matches_symbol():
    for sg in space_groups():
        assert sg.symbol[0] == sg.centring


def test_bravais_lattices_match_pearson_symbols_of_aflow_prototypes():
    path = Path(prototypes.__file__).with_name("aflow_prototypes.json.gz")
    entries = json.loads(gzip.decompress(path.read_bytes()))
    checked = 0
    for entry in entries:
        pearson, label = entry["tags"]["pearson"], entry["tags"]["aflow"]
        number = int(label.split("_")[2])
        assert space_group(number).bravais == pearson[:2], label
        checked += 1
    assert checked > 250


def test_point_group_names_are_the_32_rotation_type_signatures():
    # the 32 point groups differ in their counts of 1, 2, 3, 4, 6, -1, m, -3, -4, -6
    names_by_signature = defaultdict(set)
    for sg in space_groups():
        names_by_signature[rotation_type_counts(operations(sg.number).rotations)].add(sg.point_group)
    assert len(names_by_signature) == 32
    assert all(len(names) == 1 for names in names_by_signature.values())


def test_laue_class_is_point_group_plus_inversion():
    for sg in space_groups():
        rotations = operations(sg.number).rotations
        has_inversion = any(np.array_equal(r, -np.eye(3)) for r in rotations)
        assert (sg.laue_class == sg.point_group) == has_inversion, sg
        order = len(np.unique(rotations.reshape(-1, 9), axis=0))
        laue_order = len(np.unique(np.concatenate([rotations, -rotations]).reshape(-1, 9), axis=0))
        assert laue_order == (order if has_inversion else 2 * order)


def test_arithmetic_classes_are_point_group_operations_plus_centring():
    # in standard settings two types share an arithmetic class iff they share the set of
    # rotation matrices (oriented point group) and the centring
    keys = defaultdict(set)
    for sg in space_groups():
        rotations = frozenset(map(tuple, operations(sg.number).rotations.reshape(-1, 9)))
        keys[(rotations, sg.centring)].add(sg.arithmetic_class)
    assert len(keys) == 73
    assert all(len(names) == 1 for names in keys.values())


# --- extinction classes -----------------------------------------------------------------


@cache
def brute_force_absences(number: int) -> np.ndarray:
    """Reflections of hkl_grid(6) with |F| = 0 for random atoms at general positions: apply every
    operation of the type to two random points and sum the structure factor over the orbits."""
    hkl = hkl_grid(6)
    ops = operations(number)
    rng = np.random.default_rng(number)
    magnitudes = []
    for _ in range(2):
        x = rng.random(3)
        orbit = np.mod(ops.rotations @ x + ops.translations, 1.0)
        f = np.exp(2j * np.pi * hkl @ orbit.T).sum(axis=1)
        magnitudes.append(np.abs(f) / len(orbit))
    return np.all(np.array(magnitudes) < 1e-9, axis=0)


@pytest.mark.parametrize("number", ALL)
def test_absences_equal_brute_force_structure_factors(number):
    assert np.array_equal(absent_reflections(operations(number), 6), brute_force_absences(number))


@pytest.mark.parametrize("number, absent, present", [
    (14, [(0, 1, 0), (1, 0, 1), (0, 0, 1)], [(0, 2, 0), (1, 0, 2), (1, 1, 1)]),  # P2_1/c
    (227, [(2, 0, 0), (4, 2, 0), (1, 1, 0)], [(4, 0, 0), (2, 2, 2), (1, 1, 1)]),  # Fd-3m, general position
    (229, [(1, 0, 0), (2, 1, 0)], [(1, 1, 0), (2, 1, 1)]),  # Im-3m: h+k+l=2n
    (166, [(1, 0, 0), (0, 0, 1)], [(1, 0, 1), (0, 0, 3), (0, 1, 2)]),  # R-3m, hexagonal axes
    (76, [(0, 0, 1), (0, 0, 2), (0, 0, 3)], [(0, 0, 4), (1, 0, 1)]),  # P4_1: 00l l=4n
    (169, [(0, 0, 3)], [(0, 0, 6), (1, 0, 3)]),  # P6_1: 000l l=6n
])
def test_ita_reflection_conditions(number, absent, present):
    hkl = [tuple(h) for h in hkl_grid()]
    mask = absent_reflections(operations(number))
    for h in absent:
        assert mask[hkl.index(h)], (number, h)
    for h in present:
        assert not mask[hkl.index(h)], (number, h)


@pytest.mark.parametrize("a, b", ENANTIOMORPHS)
def test_enantiomorphic_pairs_share_an_extinction_class(a, b):
    assert space_group(a).extinction_class == space_group(b).extinction_class


def test_fm3m_and_fm3_share_a_class_iff_their_absences_agree():
    same_absences = np.array_equal(brute_force_absences(225), brute_force_absences(202))
    assert same_absences  # both are F-centred with no further conditions
    assert (space_group(225).extinction_class == space_group(202).extinction_class) == same_absences
    # and a pair whose absences differ does not share one: Fd-3m has the d-glide conditions
    assert not np.array_equal(brute_force_absences(227), brute_force_absences(225))
    assert space_group(227).extinction_class != space_group(225).extinction_class


def test_extinction_classes_group_exactly_equal_absences_within_a_lattice_system():
    by_class = defaultdict(list)
    for sg in space_groups():
        by_class[sg.extinction_class].append(sg)
    for members in by_class.values():
        assert len({sg.lattice_system for sg in members}) == 1
        first = brute_force_absences(members[0].number)
        assert all(np.array_equal(first, brute_force_absences(sg.number)) for sg in members)
    # and types in different classes of one lattice system differ in their absences
    seen = {}
    for sg in space_groups():
        key = (sg.lattice_system, brute_force_absences(sg.number).tobytes())
        assert seen.setdefault(key, sg.extinction_class) == sg.extinction_class


def test_setting_free_classes_merge_types_whose_absences_match_after_relabelling_axes():
    standard = defaultdict(set)
    for sg in space_groups():
        standard[sg.extinction_class_any_setting].add(sg.extinction_class)
    # every setting-free class is a union of standard-setting classes
    assert sum(len(v) for v in standard.values()) == len(level("extinction_class"))
    assert space_group(26).extinction_class != space_group(28).extinction_class
    assert space_group(26).extinction_class_any_setting == space_group(28).extinction_class_any_setting
    # independent check: Pma2 (28) has the absences of Pmc2_1 (26) with h and l swapped
    hkl = [tuple(h) for h in hkl_grid(6)]
    swapped = np.array([hkl.index((l, k, h)) for h, k, l in hkl])
    assert np.array_equal(brute_force_absences(28), brute_force_absences(26)[swapped])
    # monoclinic types stay apart: no relabelling of a, c turns Pc absences into P2_1 ones
    assert space_group(7).extinction_class_any_setting != space_group(4).extinction_class_any_setting


def test_extinction_partition_does_not_depend_on_the_hkl_range():
    def partition(keys):
        groups = defaultdict(list)
        for number, key in enumerate(keys, start=1):
            groups[key].append(number)
        return sorted(groups.values())

    wide = partition(extinction_keys(10))
    assert partition(extinction_keys(6)) == wide
    assert len(level("extinction_class")) == len(wide)


# --- symbol lookup ----------------------------------------------------------------------


def test_every_type_round_trips_through_its_symbols_and_number():
    for sg in space_groups():
        assert space_group(sg.symbol) is sg
        assert space_group(sg.full_symbol) is sg
        assert space_group(sg.number) is sg
        assert space_group(str(sg.number)) is sg


@pytest.mark.parametrize("symbol, number", [
    ("P21/c", 14), ("P2_1/n", 14), ("P 1 21/a 1", 14), ("Pbnm", 62), ("Cmca", 64), ("Abm2", 39),
    ("A2/a", 15), ("P312", 149), ("P32", 145), ("P3_2", 145), ("R -3 2/m", 166), ("R-3:H", 148),
    ("R 3 :R", 146), ("P63/mmc", 194), ("P321", 150), ("P3221", 154), ("P3_221", 154),
    ("P4212", 90), ("P42_12", 90), ("P4222", 93)])
def test_setting_and_legacy_symbols(symbol, number):
    assert space_group(symbol).number == number


@pytest.mark.parametrize("spec, message", [
    (0, "1-230"), (231, "1-230"), ("Fm3m", "did you mean Fm-3m"), ("", "unknown"), (2.5, "expected"),
    (True, "expected"),
    # a written '_' must match exactly: P3_21 is no type, and never P321 (150)
    ("P3_21", "did you mean P3_221"), ("P4_22", "unknown"), ("P3_12", "unknown"),
    ("Aam2", "unknown")])  # an a-glide perpendicular to a cannot exist
def test_bad_space_group_specs(spec, message):
    with pytest.raises((ValueError, TypeError), match=message):
        space_group(spec)


def test_docs_report_the_computed_extinction_counts():
    text = (Path(__file__).resolve().parents[1] / "docs" / "crystallography.md").read_text()
    by_system = defaultdict(set)
    for sg in space_groups():
        by_system[sg.lattice_system].add(sg.extinction_class)
    counts = (f"**{len(level('extinction_class'))} extinction classes**: {len(by_system['triclinic'])} triclinic, "
              f"{len(by_system['monoclinic'])} monoclinic, {len(by_system['orthorhombic'])} orthorhombic, "
              f"{len(by_system['tetragonal'])} tetragonal, {len(by_system['hexagonal'])} hexagonal-lattice "
              f"(trigonal P and hexagonal groups together), {len(by_system['rhombohedral'])} rhombohedral "
              f"and {len(by_system['cubic'])} cubic")
    assert counts in " ".join(text.split())
    assert f"| `extinction_class` | {len(level('extinction_class'))} |" in text
    assert f"| `extinction_class_any_setting` | {len(level('extinction_class_any_setting'))} |" in text
    singletons = sum(len(level("extinction_class").members(i)) == 1 for i in range(len(level("extinction_class"))))
    assert f"{singletons} classes hold a single space group" in " ".join(text.split())
