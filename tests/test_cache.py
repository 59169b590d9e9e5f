"""The on-disk peak cache: content, reuse, resume after kill -9, refusals."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import stopped_after_write, visible_files

from xrdcore.cli import main
from xrdcore.data.cache import BuildSpec, CacheError, PeakCache, build_cache, summarise
from xrdcore.data.splits import SplitFileError
from xrdcore.diffraction.pxrd import peak_list

CSV = Path(__file__).with_name("data") / "mp20_sample.csv"
SPEC = BuildSpec("csv", {"path": str(CSV)}, limit=24)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_cache(tmp_path_factory.mktemp("cache") / "mp20", SPEC, chunk_size=5, progress=False)


def test_cached_peaks_are_the_simulator_s_and_splits_partition_the_data(built):
    assert built.manifest["status"] == "complete" and len(built) == 24 and built.manifest["chunks"] == 5
    for i in (0, 7, 23):
        direct = peak_list(built.structure(i))
        cached = built.peaks(i)
        assert cached.two_theta == pytest.approx(direct.two_theta, abs=1e-4)  # stored as float32
        assert cached.intensity == pytest.approx(direct.intensity, abs=1e-4)
        assert np.array_equal(cached.hkl, direct.hkl) and np.array_equal(cached.rotations, direct.rotations)
    parts = [set(built.indices(s).tolist()) for s in ("train", "val", "test")]
    assert sum(map(len, parts)) == 24 and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert {built.ids[i] for i in parts[2]} == set(built.split.ids["test"])
    info = summarise(built)
    assert sum(info["space_groups"].values()) == 24 and info["splits"]["train"] == len(parts[0])


def test_a_structure_that_cannot_be_simulated_leaves_the_others_of_its_job():
    from pymatgen.core import Lattice, Structure

    from xrdcore.data.cache import _simulate_part
    from xrdcore.data.compact import CompactStructure

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    iron = Structure(Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]])
    empty = CompactStructure(4 * np.eye(3), np.zeros((0, 3)), np.zeros(0, dtype=np.int32), ())
    job = [CompactStructure.from_structure(nacl), empty, CompactStructure.from_structure(iron)]
    settings = {"wavelength": 1.54056, "two_theta_range": (5.0, 90.0), "debye_waller": {}}
    k, start, arrays = _simulate_part((3, 40, job, settings))  # simulated together, then one at a time
    assert (k, start) == (3, 40) and arrays["ok"].tolist() == [True, False, True]
    ends = arrays["offsets"]
    for row, structure in ((0, nacl), (2, iron)):
        direct = peak_list(structure)
        assert arrays["two_theta"][ends[row]:ends[row + 1]] == pytest.approx(direct.two_theta, abs=1e-4)
        assert np.array_equal(arrays["hkl"][ends[row]:ends[row + 1]], direct.hkl)


def test_same_inputs_reuse_other_inputs_are_refused(built, tmp_path):
    chunks = {p: p.stat().st_mtime_ns for p in (built.path / "peaks").iterdir()}
    again = build_cache(built.path, SPEC, progress=False)
    assert again.manifest == built.manifest
    assert {p: p.stat().st_mtime_ns for p in (built.path / "peaks").iterdir()} == chunks  # nothing redone
    assert again.manifest["licence"].startswith("as set by the owner")  # provenance travels with the data
    other = BuildSpec("csv", {"path": str(CSV)}, limit=24, seed=1)
    with pytest.raises(CacheError, match="holds a build of other inputs"):
        build_cache(built.path, other, progress=False)


def test_an_edited_input_file_is_not_served_from_the_cache(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    cif = (Path(__file__).with_name("data") / "NaCl.cif").read_text()
    (folder / "nacl.cif").write_text(cif)
    spec = BuildSpec("cif-dir", {"path": str(folder)})
    build_cache(tmp_path / "c", spec, progress=False)
    (folder / "nacl.cif").write_text(cif.replace("5.64", "6.40"))
    with pytest.raises(CacheError, match="holds a build of other inputs"):
        build_cache(tmp_path / "c", BuildSpec("cif-dir", {"path": str(folder)}), progress=False)


def test_bad_simulator_settings_fail_before_reading_and_leave_nothing(tmp_path):
    with pytest.raises(ValueError, match="low < high"):
        build_cache(tmp_path / "c", BuildSpec("csv", {"path": str(CSV)}, two_theta_range=(90, 5)), progress=False)
    assert not (tmp_path / "c").exists()


def test_a_resumed_build_keeps_its_chunk_size(built, tmp_path):
    out = tmp_path / "resume"
    shutil.copytree(built.path, out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "status": "building"}))
    shutil.rmtree(out / "peaks" / "00002")
    resumed = build_cache(out, SPEC, chunk_size=11, progress=False)  # the original layout wins
    assert resumed.chunk_size == 5 and all(np.array_equal(resumed.peaks(i).intensity, built.peaks(i).intensity)
                                           for i in range(len(built)))


def test_a_foreign_or_tampered_directory_is_refused(built, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CacheError, match="not an xrdcore cache"):
        build_cache(tmp_path, SPEC, progress=False)
    copy = tmp_path / "copy"
    shutil.copytree(built.path, copy)
    split = json.loads((copy / "split.json").read_text())
    split["ids"]["test"], split["ids"]["train"] = split["ids"]["train"][:1], split["ids"]["train"][1:] + split["ids"]["test"]
    (copy / "split.json").write_text(json.dumps(split))
    with pytest.raises(SplitFileError, match="do not match the stored hash"):
        PeakCache(copy)


def test_a_killed_build_resumes_to_the_same_result(built, tmp_path):
    out = tmp_path / "killed"
    code = ("import sys; from xrdcore.cli import main; "
            f"sys.exit(main(['data', 'build', {str(CSV)!r}, '--out', {str(out)!r}, '--limit', '24', "
            "'--chunk', '1', '--quiet']))")
    process = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "peaks" / "00003").exists() and process.poll() is None:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "building", "the build finished before it could be killed"
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "peaks").iterdir() if not p.name.startswith(".")}
    assert 0 < len(kept) < 24
    resumed = build_cache(out, BuildSpec("csv", {"path": str(CSV.resolve())}, limit=24), chunk_size=1,
                          progress=False)
    assert resumed.manifest["status"] == "complete"
    # chunks written before the kill were kept, not recomputed
    assert all((out / "peaks" / name).stat().st_mtime_ns == t for name, t in kept.items())
    assert resumed.ids == built.ids and resumed.manifest["split_hash"] == built.manifest["split_hash"]
    for i in range(24):
        assert np.array_equal(resumed.peaks(i).intensity, built.peaks(i).intensity)


def test_a_build_stopped_after_any_of_its_writes_resumes_to_the_same_files(tmp_path, monkeypatch):
    """Each file a build commits in turn is the last before a stop; the rerun must end with the
    uninterrupted build's files (one stopped between structures.jsonl.gz and index.json once
    ended without its index; one stopped after its manifest, with its checkpoints left)."""
    spec = BuildSpec("csv", {"path": str(CSV)}, limit=8)
    reference = visible_files(build_cache(tmp_path / "reference", spec, chunk_size=4, progress=False).path)
    n = 1
    while stopped_after_write(monkeypatch, n, lambda: build_cache(tmp_path / f"stopped-{n}", spec, chunk_size=4,
                                                                  progress=False)):
        resumed = build_cache(tmp_path / f"stopped-{n}", spec, chunk_size=4, progress=False)
        assert resumed.manifest["status"] == "complete"
        assert visible_files(resumed.path) == reference, f"stopped after write {n}"
        n += 1
    assert n > 8  # manifest, read checkpoint, split, report, index, structures, 2 chunks, manifest


def test_cli_build_and_info(capsys, tmp_path):
    out = tmp_path / "cli"
    assert main(["data", "build", str(CSV), "--out", str(out), "--limit", "6", "--quiet"]) == 0
    assert "6 structures of csv" in capsys.readouterr().out
    assert main(["data", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["structures"] == 6 and info["split_hash"].startswith("sha256:")
    assert main(["data", "build", "prototypes", "--out", str(tmp_path / "x"), "--option", "per_grup=1"]) == 2
    assert "it accepts: per_group" in capsys.readouterr().err


def test_a_damaged_index_is_a_clear_error_naming_it(built, tmp_path):
    import shutil

    copy = shutil.copytree(built.path, tmp_path / "copy")
    for text in ("{not json", json.dumps({"ids": ["a"], "space_groups": [1], "formulas": ["X"]})):
        (copy / "index.json").write_text(text)
        with pytest.raises(CacheError, match=r"index\.json: .*rebuild the cache"):
            PeakCache(copy).ids
