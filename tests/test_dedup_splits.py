"""De-duplication and frozen splits on real structures (MP-20 rows, AFLOW prototypes) with
constructed copies: supercells, perturbed and distorted twins, and the split-file hash."""

import json
import random
from itertools import combinations
from pathlib import Path

import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from xrdcore.builtin.datasets import CSVDataset, PrototypesDataset
from xrdcore.data.dedup import deduplicate
from xrdcore.data.labels import DEFAULT_SYMPREC, LabelledRecord, read_dataset, space_group_number
from xrdcore.data.prepare import prepare
from xrdcore.data.splits import Split, SplitFileError, check_fractions, make_split, split_hash

MP20 = Path(__file__).with_name("data") / "mp20_sample.csv"  # MP-20 rows, CC-BY-4.0 (tests/data/README.md)


def relabel(ident, structure, meta=None):
    """A record labelled the way the pipeline labels (spglib at the default symprec)."""
    return LabelledRecord(ident, structure, space_group_number(structure),
                          structure.composition.reduced_formula, meta or {})


FCC = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]


def rocksalt(a=5.64, species=("Na", "Cl")):
    """Conventional rock-salt cell, written out (pymatgen's from_spacegroup takes ~1 s)."""
    return Structure(Lattice.cubic(a), [species[0]] * 4 + [species[1]] * 4,
                     FCC + [[(x + 0.5) % 1, y, z] for x, y, z in FCC])


@pytest.fixture(scope="module")
def aflow():
    records, _ = read_dataset(PrototypesDataset(per_group=0))
    return {r.id: r for r in records}


@pytest.fixture(scope="module")
def mp20_with_twins():
    """30 MP-20 structures plus a supercell, a perturbed copy, a renamed copy and a distorted
    (lower-symmetry) copy of some of them."""
    records, _ = read_dataset(CSVDataset(MP20), limit=30)
    base = records[0].structure.copy()
    base.make_supercell([2, 1, 1])
    perturbed = records[1].structure.copy()
    perturbed.perturb(0.02, min_distance=0.01)
    shuffled = Structure.from_sites(list(reversed(records[2].structure.sites)))
    distorted = rocksalt()
    distorted.translate_sites([0], [0.15 / 5.64, 0, 0], frac_coords=True)
    twins = [relabel("zz-supercell", base), relabel("zz-perturbed", perturbed), relabel("aa-copy", shuffled),
             relabel("nacl", rocksalt()), relabel("nacl-distorted", distorted)]
    return records, twins


def test_copies_merge_into_the_smallest_id_whatever_the_input_order(mp20_with_twins):
    records, twins = mp20_with_twins
    everything = records + twins
    result = deduplicate(everything)
    assert result.duplicate_of == {"zz-supercell": records[0].id, "zz-perturbed": records[1].id,
                                   records[2].id: "aa-copy"}
    assert result.removed == 3 and len(result.kept) == len(everything) - 3
    shuffled = everything[:]
    random.Random(1).shuffle(shuffled)
    again = deduplicate(shuffled)
    assert again.duplicate_of == result.duplicate_of and again.units == result.units


def test_a_distorted_twin_keeps_its_own_label_but_shares_a_unit(mp20_with_twins):
    _, twins = mp20_with_twins
    nacl, distorted = twins[3], twins[4]
    assert nacl.space_group == 225 and distorted.space_group != 225  # spglib sees the distortion
    assert StructureMatcher().fit(nacl.structure, distorted.structure)
    result = deduplicate([nacl, distorted])
    assert result.removed == 0 and result.units == [["nacl", "nacl-distorted"]]


def test_different_structures_of_one_formula_and_space_group_are_both_kept(aflow):
    """FeB-type (B27) and MnP-type (B31) are both Pnma AB structures: made FeP, they stay two."""
    feb = aflow["aflow-AB_oP8_62_c_c-2"].structure.copy()
    mnp = aflow["aflow-AB_oP8_62_c_c-4"].structure.copy()
    feb.replace_species({"B": "P"})
    mnp.replace_species({"Mn": "Fe"})
    one, two = relabel("fep-b27", feb), relabel("fep-b31", mnp)
    assert one.group_key == two.group_key == ("FeP", 62)
    result = deduplicate([one, two, relabel("fep-b27-again", feb.copy())])
    assert result.duplicate_of == {"fep-b27-again": "fep-b27"}
    assert [r.id for r in result.kept] == ["fep-b27", "fep-b31"]
    assert result.units == [["fep-b27", "fep-b31"]]  # one (formula, space group) group: one unit


def test_no_group_and_no_equivalent_pair_crosses_splits(mp20_with_twins):
    records, twins = mp20_with_twins
    result = deduplicate(records + twins)
    split = make_split(result, dataset="mp20+twins", symprec=DEFAULT_SYMPREC,
                       fractions=(0.5, 0.25, 0.25), seed=3)
    kept = {r.id: r for r in result.kept}
    assert sorted(i for ids in split.ids.values() for i in ids) == sorted(kept)
    assert all(split.counts[name] > 0 for name in ("train", "val", "test"))
    where = {i: name for name, ids in split.ids.items() for i in ids}
    matcher = StructureMatcher()
    for a, b in combinations(kept.values(), 2):
        if where[a.id] != where[b.id]:
            assert a.group_key != b.group_key
            assert not matcher.fit(a.structure, b.structure), (a.id, b.id)
    assert where["nacl"] == where["nacl-distorted"]


def test_splits_are_seeded_and_follow_the_fractions(mp20_with_twins):
    records, _ = mp20_with_twins
    result = deduplicate(records)
    first = make_split(result, dataset="mp20", symprec=0.1, seed=0)
    assert make_split(result, dataset="mp20", symprec=0.1, seed=0).ids == first.ids
    assert len({make_split(result, dataset="mp20", symprec=0.1, seed=s).hash for s in range(6)}) > 1
    assert abs(first.counts["train"] - 0.8 * len(result.kept)) <= 2
    assert first.meta["fractions"] == {"train": 0.8, "val": 0.1, "test": 0.1}


def test_split_file_round_trip_and_tamper_detection(tmp_path):
    records = [relabel(f"nacl-{a}", rocksalt(a)) for a in (5.0, 5.64)] + [
        relabel(f"cscl-{i}", Structure(Lattice.cubic(4.1 + i), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
        for i in range(2)] + [relabel("kbr", rocksalt(6.6, ("K", "Br")))]
    result = deduplicate(records)
    assert result.removed == 2  # volume-scaled copies are duplicates under default tolerances
    split = make_split(result, dataset="toy", symprec=0.1, seed=1, fractions=(0.4, 0.3, 0.3),
                       options={"path": tmp_path})
    path = split.save(tmp_path / "split.json")
    loaded = Split.load(path)
    assert loaded.ids == split.ids and loaded.hash == split.hash == split_hash(split.ids)
    stored = json.loads(path.read_text())
    assert stored["hash"].startswith("sha256:") and stored["seed"] == 1 and stored["symprec"] == 0.1
    assert stored["dataset"] == "toy" and stored["duplicates_removed"] == 2
    assert stored["options"]["path"] == str(tmp_path)

    moved = json.loads(path.read_text())
    victim = next(name for name in ("val", "test") if moved["ids"][name])
    moved["ids"]["train"].append(moved["ids"][victim].pop())
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    with pytest.raises(SplitFileError, match=r"moved\.json: the ids do not match the stored hash"):
        Split.load(tmp_path / "moved.json")
    recounted = json.loads(path.read_text())
    recounted["counts"]["train"] += 1
    (tmp_path / "recounted.json").write_text(json.dumps(recounted))
    with pytest.raises(SplitFileError, match="counts"):
        Split.load(tmp_path / "recounted.json")
    (tmp_path / "cut.json").write_text(path.read_text()[:40])
    with pytest.raises(SplitFileError, match=r"cut\.json: not a readable JSON split file"):
        Split.load(tmp_path / "cut.json")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(SplitFileError, match="not an xrdcore split file"):
        Split.load(tmp_path / "other.json")
    with pytest.raises(SplitFileError, match="does not exist"):
        Split.load(tmp_path / "missing.json")


def test_fractions_are_checked():
    assert check_fractions({"train": 0.5, "test": 0.5}) == {"train": 0.5, "val": 0.0, "test": 0.5}
    with pytest.raises(ValueError, match="sum to 1"):
        check_fractions((0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="three numbers"):
        check_fractions((0.9, 0.1))
    with pytest.raises(ValueError, match="unknown splits"):
        check_fractions({"training": 1.0})


def test_prepare_runs_the_chain_on_a_registered_dataset(tmp_path):
    for name, structure in {"a": rocksalt(), "b": rocksalt(6.0), "c": Structure(
            Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])}.items():
        structure.to(filename=str(tmp_path / f"{name}.cif"))
    (tmp_path / "bad.cif").write_text("garbage")
    prepared = prepare("cif-dir", {"path": tmp_path}, seed=0)
    assert [r.id for r in prepared.records] == ["a", "c"]
    assert prepared.report.duplicates_removed == 1 and [r.id for r in prepared.report.rejected] == ["bad"]
    assert prepared.split.meta["options"]["disorder"] == "skip" and sum(prepared.split.counts.values()) == 2


def test_the_smallest_cell_is_pymatgen_s_primitive_cell_bit_for_bit(aflow, mp20_with_twins):
    """smallest_cell recomputes pymatgen's get_primitive_structure in bounded memory: the same
    lattice, coordinates, species and labels, on conventional centred cells (which shrink),
    supercells and cells that are primitive already."""
    from xrdcore.data.dedup import smallest_cell

    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    records, twins = mp20_with_twins
    structures = [r.structure for r in list(aflow.values()) + records + twins] + [rocksalt()]
    centred = [r.structure for r in aflow.values() if r.space_group in (12, 15, 44, 63, 65, 71, 139, 141, 166, 225,
                                                                        227, 229)]
    structures += [SpacegroupAnalyzer(s).get_conventional_standard_structure() for s in centred]
    for r in records[:10]:
        supercell = r.structure.copy()
        supercell.make_supercell([1, 2, 1])
        structures.append(supercell)
    shrunk = 0
    for structure in structures:
        cell = structure.get_reduced_structure(reduction_algo="niggli")
        ours, theirs = smallest_cell(cell), cell.get_primitive_structure()
        assert (ours.lattice.matrix == theirs.lattice.matrix).all() and (ours.frac_coords == theirs.frac_coords).all()
        assert [s.species_string for s in ours] == [s.species_string for s in theirs]
        assert ours.labels == theirs.labels
        shrunk += len(theirs) < len(cell)
    assert shrunk >= 40  # the test covers the search that finds a smaller cell, not only the no-op


def test_bucketed_deduplication_in_processes_resumes_from_checkpoints(mp20_with_twins, tmp_path):
    records, twins = mp20_with_twins
    serial = deduplicate(records + twins)
    folder = tmp_path / "dedup"
    first = deduplicate(records + twins, workers=2, checkpoints=folder)
    assert first.duplicate_of == serial.duplicate_of and first.units == serial.units
    assert first.comparisons == serial.comparisons
    saved = sorted(folder.glob("*.json.gz"))
    assert saved
    again = deduplicate(records + twins, checkpoints=folder)  # every bucket read back, none compared again
    assert again.duplicate_of == serial.duplicate_of and again.units == serial.units


def test_reading_resumes_from_saved_chunks_with_the_same_outcome(tmp_path):
    """An interrupted read keeps the chunks it saved (their files are not rewritten) and ends with
    the records and report of an uninterrupted one."""
    folder = tmp_path / "read"
    whole, whole_report = read_dataset(CSVDataset(MP20))
    chunked, _ = read_dataset(CSVDataset(MP20, workers=2), checkpoints=folder)
    from xrdcore.data.labels import labelled
    from xrdcore.data.report import ReadReport

    files = sorted(folder.glob("*.json.gz"))
    assert len(files) == 1  # 46 entries, one chunk of 500
    small = tmp_path / "small"
    report = ReadReport("csv", DEFAULT_SYMPREC, "skip")
    list(labelled(CSVDataset(MP20), report, checkpoints=small, chunk=10))
    files = sorted(small.glob("*.json.gz"))
    assert len(files) == 5
    files[-1].unlink()
    files[-2].unlink()  # as if killed while reading the fourth chunk
    kept = {f: f.stat().st_mtime_ns for f in files[:-2]}
    report = ReadReport("csv", DEFAULT_SYMPREC, "skip")
    resumed = list(labelled(CSVDataset(MP20), report, checkpoints=small, chunk=10))
    assert all(f.stat().st_mtime_ns == t for f, t in kept.items())
    for result in (chunked, resumed):
        assert [r.id for r in result] == [r.id for r in whole]
        assert [r.space_group for r in result] == [r.space_group for r in whole]
        assert all((a.structure.frac_coords == b.structure.frac_coords).all() for a, b in zip(result, whole))
    assert report.to_dict() == whole_report.to_dict()
