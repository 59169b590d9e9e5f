"""Built-in data sets, validation and spglib labels, on real data: pymatgen's AFLOW prototypes,
pyxtal crystals, CoRE MOF CIFs, the MP-20 CSV and folders of good and broken CIF files."""

import csv
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import spglib
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

import xrdcore
from xrdcore.builtin.datasets import CIFDirectoryDataset, CSVDataset, PrototypesDataset, SyntheticDataset
from xrdcore.data.labels import LabelledRecord, label, labelled, read_dataset, space_group_number
from xrdcore.data.report import ReadReport
from xrdcore.data.validation import InvalidStructure, check_structure
from xrdcore.interfaces import StructureDataset, StructureRecord
from xrdcore.registry import ComponentError

MP20 = Path(__file__).with_name("data") / "mp20_sample.csv"  # MP-20 rows, CC-BY-4.0 (tests/data/README.md)
BUILTIN = ("prototypes", "coremof", "synthetic", "cif-dir", "csv")


def spglib_number(structure, symprec=0.1):
    """spglib called directly, independently of xrdcore's typing of sites (ordered input only)."""
    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # spglib's notice about its error mode
        return spglib.get_symmetry_dataset(cell, symprec=symprec).number


FCC = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]


def rocksalt(a=5.64, species=("Na", "Cl")):
    """Conventional rock-salt cell, written out (pymatgen's from_spacegroup takes ~1 s)."""
    return Structure(Lattice.cubic(a), [species[0]] * 4 + [species[1]] * 4,
                     FCC + [[(x + 0.5) % 1, y, z] for x, y, z in FCC])


def same_structures(a, b):
    return [r.id for r in a] == [r.id for r in b] and all(
        np.allclose(x.structure.lattice.matrix, y.structure.lattice.matrix)
        and np.allclose(x.structure.frac_coords, y.structure.frac_coords)
        and x.structure.species == y.structure.species for x, y in zip(a, b))


# --- registration ---------------------------------------------------------------------------


def test_builtin_datasets_are_registered_with_provenance_and_licence():
    registry = xrdcore.get_registry()
    assert set(BUILTIN) <= set(xrdcore.list_datasets())
    for name in BUILTIN:
        component = registry.get("dataset", name)
        assert component.builtin and component.description
        cls = component.load()
        assert issubclass(cls, StructureDataset)
        assert len(cls.provenance) > 20 and cls.licence
    assert "CC-BY-4.0" in registry.get("dataset", "coremof").load().licence


def test_a_dataset_that_needs_a_path_says_so():
    with pytest.raises(ComponentError, match="path"):
        xrdcore.create_dataset("cif-dir")
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        xrdcore.create_dataset("cif-dir", path="no-such-folder")


# --- prototypes and pyxtal ------------------------------------------------------------------


def test_aflow_prototypes_are_labelled_by_spglib_and_mostly_agree_with_aflow():
    records, report = read_dataset(PrototypesDataset(per_group=0))
    assert report.read == len(records) == 288 and not report.rejected
    ids = [r.id for r in records]
    assert len(set(ids)) == 288 and "aflow-AB_cF8_225_a_b" in ids
    by_id = {r.id: r for r in records}
    rock_salt = by_id["aflow-AB_cF8_225_a_b"]
    assert rock_salt.formula == "NaCl" and rock_salt.space_group == 225
    for r in records:
        assert r.space_group == spglib_number(r.structure) and r.meta["pearson"]
    agree = sum(r.space_group == r.meta["aflow_space_group"] for r in records)
    assert agree / len(records) > 0.95  # AFLOW's own label is a cross-check, never the source


def test_pyxtal_crystals_carry_the_request_but_spglib_labels():
    dataset = PrototypesDataset(per_group=1, aflow=False, space_groups=[2, 14, 225])
    records, report = read_dataset(dataset)
    assert [r.id for r in records] == ["pyxtal-sg002-0", "pyxtal-sg014-0", "pyxtal-sg225-0"]
    for r in records:
        assert r.meta["requested_space_group"] == int(r.id[9:12])
        assert r.space_group == spglib_number(r.structure)
        assert len(r.structure) <= 64 and sum(r.meta["composition"].values()) == len(r.structure)


def test_a_crystal_with_more_symmetry_than_requested_gets_spglib_s_label():
    """One atom per cell is always centrosymmetric: asked for P1, the crystal is at least P-1."""
    from pyxtal import pyxtal

    crystal = pyxtal()
    crystal.from_random(3, 1, ["Cu"], [1], random_state=3)

    class OneAtom(StructureDataset):
        provenance, licence = "pyxtal in this test", "CC0"

        def records(self, limit=None):
            yield StructureRecord("p1-cu", crystal.to_pymatgen(), {"requested_space_group": 1})

    (record,), _ = read_dataset(OneAtom())
    assert record.meta["requested_space_group"] == 1
    assert record.space_group >= 2 and record.space_group == spglib_number(record.structure)


def test_random_crystals_are_deterministic_per_seed_and_limit_is_a_prefix():
    first = list(PrototypesDataset(per_group=2, aflow=False, space_groups=[3, 47], seed=5).records())
    again = list(PrototypesDataset(per_group=2, aflow=False, space_groups=[3, 47], seed=5).records())
    other = list(PrototypesDataset(per_group=2, aflow=False, space_groups=[3, 47], seed=6).records())
    assert same_structures(first, again) and not same_structures(first, other)
    prefix = list(PrototypesDataset(per_group=2, aflow=False, space_groups=[3, 47], seed=5).records(limit=3))
    assert same_structures(prefix, first[:3])


def test_synthetic_is_balanced_and_independent_of_the_worker_count():
    one = list(SyntheticDataset(size=4, seed=1).records())
    two = list(SyntheticDataset(size=4, seed=1, workers=2).records())
    assert [r.meta["requested_space_group"] for r in one] == [1, 2, 3, 4]
    assert same_structures(one, two)
    # same seed, different data set: different crystals, so the two never overlap by accident
    proto = list(PrototypesDataset(per_group=1, aflow=False, space_groups=[1], seed=1).records())
    assert not np.allclose(proto[0].structure.lattice.abc, one[0].structure.lattice.abc)


def test_workers_in_a_script_without_a_main_guard_fail_with_a_clear_error(tmp_path):
    script = tmp_path / "no_guard.py"
    script.write_text("import xrdcore\n"
                      "list(xrdcore.create_dataset('synthetic', size=2, workers=2).records())\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "WorkerError" in result.stderr and 'if __name__ == "__main__":' in result.stderr.splitlines()[-1]


# --- CoRE MOF and MP-20 ---------------------------------------------------------------------


def test_coremof_reads_a_few_mofs_with_stable_ids():
    CoRE_MOF = pytest.importorskip("CoRE_MOF")
    dataset = xrdcore.create_dataset("coremof")
    records, report = read_dataset(dataset, name="coremof", limit=4)
    names = set(CoRE_MOF.list_structures("2019-ASR"))
    assert report.read == 4 and len(records) + len(report.rejected) == 4
    assert all(r.id in names for r in records) and all(r.id in names for r in report.rejected)
    assert [r.id for r in records] == [r.id for r in read_dataset(dataset, limit=4)[0]]
    for r in records:
        assert len(r.structure) > 20 and r.space_group == spglib_number(r.structure)


def test_overlap_check_finds_an_atom_pushed_into_a_real_mof():
    def valid(structure):
        try:
            check_structure(structure)
        except InvalidStructure:
            return False
        return True

    mofs = xrdcore.create_dataset("coremof").records(limit=5)
    structure = next(r.structure for r in mofs if valid(r.structure))
    structure.append(structure[0].specie, structure[0].coords + [0.3, 0, 0], coords_are_cartesian=True)
    with pytest.raises(InvalidStructure, match=r"atoms overlap: sites 0 .* are 0\.300 Å apart") as exc:
        check_structure(structure)
    assert exc.value.kind == "overlap"


def test_mp20_csv_ids_follow_the_table_and_labels_match_its_space_groups():
    records, report = read_dataset(CSVDataset(MP20), limit=30)
    with MP20.open(newline="") as handle:
        rows = [row for _, row in zip(range(30), csv.DictReader(handle))]
    assert [r.id for r in records] == [row["material_id"] for row in rows] and report.accepted == 30
    agree = sum(r.space_group == int(row["spacegroup.number"]) for r, row in zip(records, rows))
    assert agree >= 29  # the table's labels agree with spglib at 0.1 on 99.9% of rows
    assert records[0].meta["pretty_formula"] == rows[0]["pretty_formula"] and "cif" not in records[0].meta


def test_csv_errors_name_the_file_and_the_problem(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("id,structure\n")
    with pytest.raises(ValueError, match=r"t\.csv: no CIF column 'cif'; columns are: id, structure"):
        CSVDataset(table)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        CSVDataset(tmp_path / "missing.csv")
    good = CifWriter(rocksalt()).__str__()
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([["material_id", "cif"], ["a", good], ["", good], ["c", ""], ["d", "nonsense"]])
    records, report = read_dataset(CSVDataset(table))
    assert [r.id for r in records] == ["a"] and records[0].space_group == 225
    reasons = {r.id: r.reason for r in report.rejected}
    assert set(reasons) == {"row-2", "c", "d"}
    assert "row 2" in reasons["row-2"] and "empty 'material_id'" in reasons["row-2"]
    assert "row 3 (material_id=c)" in reasons["c"] and "row 4" in reasons["d"]


# --- a folder of good and broken CIFs -------------------------------------------------------

NACL_P1 = """data_{name}
_cell_length_a {a}
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
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
{atoms}
"""
CSCL_ATOMS = "Cs1 Cs 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 1"


@pytest.fixture
def cif_folder(tmp_path):
    CifWriter(rocksalt()).write_file(tmp_path / "nacl.cif")
    CifWriter(rocksalt(4.2, ("Mg", "O"))).write_file(tmp_path / "MgO.CIF")
    (tmp_path / "garbage.cif").write_text("this is not a crystal\n")
    (tmp_path / "empty.cif").write_text("")
    files = {"cscl": ("5.64", CSCL_ATOMS),
             "overlap": ("5.64", "Cs1 Cs 0 0 0 1\nCl1 Cl 0.02 0 0 1"),
             "nan-cell": ("nan", CSCL_ATOMS),
             "unknown-coordinate": ("5.64", "Cs1 Cs ? 0 0 1\nCl1 Cl 0.5 0.5 0.5 1"),
             "tiny-cell": ("0.3", CSCL_ATOMS),
             "partial": ("5.64", "Cs1 Cs 0 0 0 0.5\nK1 K 0 0 0 0.5\nCl1 Cl 0.5 0.5 0.5 1")}
    for name, (a, atoms) in files.items():
        (tmp_path / f"{name}.cif").write_text(NACL_P1.format(name=name, a=a, atoms=atoms))
    (tmp_path / "no-atoms.cif").write_text("data_x\n_cell_length_a 5\n_cell_length_b 5\n_cell_length_c 5\n")
    (tmp_path / "notes.txt").write_text("not a CIF, ignored")
    (tmp_path / "sub").mkdir()
    CifWriter(rocksalt(6.0, ("K", "Br"))).write_file(tmp_path / "sub" / "kbr.cif")
    return tmp_path


def test_broken_cifs_are_reported_with_reasons_and_good_ones_come_through(cif_folder):
    dataset = CIFDirectoryDataset(cif_folder)
    records, report = read_dataset(dataset, name="cif-dir")
    assert {r.id: r.space_group for r in records} == {"MgO": 225, "cscl": 221, "nacl": 225}
    kinds = {r.id: r.kind for r in report.rejected}
    assert kinds == {"empty": "empty", "garbage": "unreadable", "nan-cell": "non-finite",
                     "no-atoms": "unreadable", "overlap": "overlap", "partial": "disordered",
                     "tiny-cell": "cell", "unknown-coordinate": "unreadable"}
    reasons = {r.id: r.reason for r in report.rejected}
    for ident, reason in reasons.items():
        assert str(cif_folder / f"{ident}.cif") in reason, reason  # every reason names its file
        assert "\n" not in reason and "Traceback" not in reason
    assert "no atom sites" in reasons["no-atoms"] and "'?'" in reasons["unknown-coordinate"]
    assert "0.113 Å apart" in reasons["overlap"] and "partially occupied" in reasons["partial"]
    assert report.read == 11 and report.accepted == 3
    assert "3 kept, 8 rejected" in report.summary() and "symprec 0.1" in report.summary()
    assert report.to_dict()["rejected_by_kind"]["unreadable"] == 3


def test_recursive_folders_keep_sub_folder_in_the_id(cif_folder):
    ids = [r.id for r in CIFDirectoryDataset(cif_folder, recursive=True).records()]
    assert "sub/kbr" in ids and ids == sorted(ids, key=str)
    assert "sub/kbr" not in [r.id for r in CIFDirectoryDataset(cif_folder).records()]


def test_disorder_keep_labels_the_average_structure(cif_folder):
    dataset = CIFDirectoryDataset(cif_folder)
    kept, report = read_dataset(dataset, disorder="keep")
    partial = {r.id: r for r in kept}["partial"]
    # (Cs0.5K0.5)Cl on the CsCl sites: the average structure is Pm-3m, as for CsCl itself
    assert partial.space_group == 221 and partial.meta["disordered"] is True
    assert {r.id: r for r in kept}["cscl"].meta["disordered"] is False
    assert "partial" not in {r.id for r in report.rejected}


def test_split_sites_are_allowed_only_when_their_occupancies_exclude_each_other():
    lattice = Lattice.cubic(6.0)
    split = Structure(lattice, [{"Na": 0.5}, {"Na": 0.5}, "Cl"], [[0, 0, 0], [0.05, 0, 0], [0.5, 0.5, 0.5]])
    check_structure(split, disorder="keep")  # 0.3 Å apart, never both occupied
    with pytest.raises(InvalidStructure, match="partially occupied"):
        check_structure(split)
    crowded = Structure(lattice, [{"Na": 0.7}, {"Na": 0.7}, "Cl"], [[0, 0, 0], [0.05, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(InvalidStructure, match="overlap"):
        check_structure(crowded, disorder="keep")
    with pytest.raises(ValueError, match="disorder must be one of skip, keep"):
        check_structure(split, disorder="ordered")


@pytest.mark.parametrize("make, kind, message", [
    (lambda: Structure(Lattice.cubic(4), [], []), "empty", "no atoms"),
    (lambda: Structure(Lattice.cubic(4), ["Na"], [[math.nan, 0, 0]]), "non-finite",
     "site 0 .Na. has non-finite"),
    (lambda: Structure(Lattice.cubic(600), ["Na"], [[0, 0, 0]]), "cell", "lattice lengths"),
    (lambda: Structure(Lattice.cubic(30), ["Na"], [[0, 0, 0]]), "cell", "volume per atom 2.7e\\+04"),
    (lambda: Structure(Lattice.cubic(0.9), ["Na"], [[0, 0, 0]]), "cell", "volume per atom 0.729"),
    (lambda: Structure(Lattice.cubic(4), ["X", "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]]), "species",
     "unknown species"),
])
def test_validation_names_each_problem(make, kind, message):
    with pytest.raises(InvalidStructure, match=message) as exc:
        label(make())
    assert exc.value.kind == kind


def test_labels_use_the_recorded_symprec():
    """A 0.05 Å displacement is symmetry at symprec 0.1 and a distortion at 0.01."""
    structure = rocksalt()
    structure.translate_sites([0], [0.05 / 5.64, 0, 0], frac_coords=True)
    assert space_group_number(structure, symprec=0.1) == 225 == spglib_number(structure, 0.1)
    low = space_group_number(structure, symprec=0.01)
    assert low != 225 and low == spglib_number(structure, 0.01)

    class One(StructureDataset):
        provenance, licence = "test", "CC0"

        def records(self, limit=None):
            yield StructureRecord("distorted", structure)

    report = ReadReport("one", symprec=0.01, disorder="skip")
    (record,) = labelled(One(), report)
    assert isinstance(record, LabelledRecord) and record.space_group == low


def test_repeated_ids_and_crashing_structures_do_not_stop_reading():
    class Awkward(StructureDataset):
        provenance, licence = "test", "CC0"

        def records(self, limit=None):
            yield StructureRecord("a", rocksalt())
            yield StructureRecord("a", rocksalt(6.0))
            yield StructureRecord("broken", "not a structure")
            yield StructureRecord("b", rocksalt(6.0))

    records, report = read_dataset(Awkward())
    assert [r.id for r in records] == ["a", "b"]
    assert [(r.id, r.kind) for r in report.rejected] == [("a", "duplicate-id"), ("broken", "error")]


def test_synthetic_shards_are_disjoint_and_together_the_whole_set():
    whole = {r.id: r.structure for r in xrdcore.create_dataset("synthetic", size=6, seed=3).records()}
    shards = [{r.id: r.structure for r in xrdcore.create_dataset("synthetic", size=6, seed=3, shard=f"{k}/2").records()}
              for k in (0, 1)]
    assert not set(shards[0]) & set(shards[1]) and set(shards[0]) | set(shards[1]) == set(whole)
    for shard in shards:
        for ident, structure in shard.items():
            assert structure == whole[ident]  # the same crystal, whichever machine builds it
    for bad in ("2/2", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError, match="shard must be 'k/n'"):
            xrdcore.create_dataset("synthetic", size=6, shard=bad)


def test_random_crystal_data_sets_refuse_a_cell_without_atoms():
    from xrdcore.builtin.datasets import PrototypesDataset, SyntheticDataset

    for factory in (SyntheticDataset, PrototypesDataset):
        with pytest.raises(ValueError, match="max_atoms must be a positive int, got 0"):
            factory(max_atoms=0)
