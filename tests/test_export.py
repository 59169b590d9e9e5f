"""A peak cache exported to one file and imported elsewhere: the same labels, split and (to the
stated precision) the same peaks and profiles; damaged or foreign files are refused by name."""

import json

import numpy as np
import pytest
import torch
from conftest import stopped_after_write, visible_files

from xrdcore.cli import main
from xrdcore.data.cache import CacheError, PeakCache
from xrdcore.data.export import ExportError, export_cache, import_cache, read_export
from xrdcore.diffraction.profile import PeakBatch, render
from xrdcore.train.inputs import InputSpec


@pytest.fixture(scope="module")
def exported(mp20_cache, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    summary = export_cache(mp20_cache.path, folder / "mp20.xrdexport")
    return summary, import_cache(folder / "mp20.xrdexport", folder / "imported")


def test_labels_split_and_peaks_survive_the_round_trip(mp20_cache, exported):
    summary, imported = exported
    assert summary["structures"] == len(mp20_cache) == len(imported)
    assert imported.ids == mp20_cache.ids and imported.formulas == mp20_cache.formulas
    assert (imported.space_groups == mp20_cache.space_groups).all()
    assert imported.manifest["split_hash"] == mp20_cache.manifest["split_hash"]
    assert imported.describe()["split_counts"] == mp20_cache.describe()["split_counts"]
    for i in range(len(mp20_cache)):
        a, b = mp20_cache.peaks(i), imported.peaks(i)
        assert len(a) == len(b) and np.abs(a.two_theta - b.two_theta).max() <= 6e-5  # 1e-4° quantum, float32
        assert np.allclose(b.intensity, a.intensity, rtol=1.5e-3)
        assert np.allclose(b.d, a.d, rtol=1e-5) and b.wavelength == a.wavelength
        assert np.allclose(b.lattice, a.lattice)


def test_profiles_rendered_from_an_import_match_the_original(mp20_cache, exported):
    _, imported = exported
    rows = list(range(len(mp20_cache)))
    original = render(PeakBatch.from_peak_lists([mp20_cache.peaks(i) for i in rows]))
    again = render(PeakBatch.from_peak_lists([imported.peaks(i) for i in rows]))
    assert (again - original).abs().max() < 5e-3


def test_what_an_import_does_not_carry_is_refused_clearly(exported):
    _, imported = exported
    with pytest.raises(CacheError, match="no structures"):
        imported.structure(0)
    with pytest.raises(ValueError, match="preferred orientation.*Miller indices"):
        InputSpec(augment="laboratory").check_cache(imported)
    InputSpec(augment="none").check_cache(imported)


def test_damaged_or_foreign_files_are_refused(exported, tmp_path):
    summary, _ = exported
    data = open(summary["file"], "rb").read()
    cases = {"foreign": b"PK\x03\x04" + data[4:], "truncated": data[:len(data) // 2],
             "flipped": data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:],
             "huge-header": data[:15] + (2**40).to_bytes(8, "little") + data[23:]}
    messages = {"foreign": "not an xrdcore export", "truncated": "truncated or damaged|lies outside",
                "flipped": "SHA-256", "huge-header": "does not fit"}
    for name, content in cases.items():
        path = tmp_path / f"{name}.xrdexport"
        path.write_bytes(content)
        with pytest.raises(ExportError, match=messages[name]) as error:
            read_export(path)
        assert str(path) in str(error.value)


def test_import_refuses_a_used_directory_and_a_tampered_split(exported, tmp_path):
    summary, _ = exported
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        import_cache(summary["file"], tmp_path / "used")
    header, _ = read_export(summary["file"])
    assert header["split"]["hash"] == header["manifest"]["split_hash"]


def test_an_import_stopped_after_any_of_its_writes_resumes_to_the_same_files(exported, tmp_path, monkeypatch):
    """Each file an import commits in turn is the last before a stop; the same command again ends
    with the uninterrupted import's files."""
    _, imported = exported
    file = imported.manifest["imported_from"]["file"]
    reference = visible_files(imported.path)
    n = 1
    while stopped_after_write(monkeypatch, n, lambda: import_cache(file, tmp_path / f"stopped-{n}")):
        resumed = import_cache(file, tmp_path / f"stopped-{n}")
        assert visible_files(resumed.path) == reference, f"stopped after write {n}"
        n += 1
    assert n > resumed.manifest["chunks"]


def test_cli_export_and_import(mp20_cache, tmp_path, capsys):
    file = tmp_path / "c.xrdexport"
    assert main(["data", "export", str(mp20_cache.path), str(file)]) == 0
    assert "structures" in capsys.readouterr().out
    assert main(["data", "import", str(file), str(tmp_path / "c")]) == 0
    assert PeakCache(tmp_path / "c").manifest["imported_from"]["format"] == "xrdcore-export/1"
    assert main(["data", "import", str(tmp_path / "missing.xrdexport"), str(tmp_path / "d")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_an_imported_cache_trains(exported, tmp_path):
    from xrdcore.train import TrainConfig, train

    _, imported = exported
    config = TrainConfig("mlp", encoder_options={"hidden": (16,)}, epochs=1, batch_size=16,
                         input=InputSpec(grid={"step": 0.5}))
    result = train(config, imported, tmp_path / "run", device="cpu", progress=False)
    assert result["status"] == "complete" and json.loads((tmp_path / "run" / "config.json").read_text())[
        "data"]["split_hash"] == imported.manifest["split_hash"]
    assert torch.isfinite(torch.tensor(result["test"]["loss"]))


def test_an_export_without_weak_peaks_is_smaller_and_says_it_is_other_data(mp20_cache, exported, tmp_path):
    full, imported_full = exported
    summary = export_cache(mp20_cache.path, tmp_path / "strong.xrdexport", min_intensity=1.0)
    strong = import_cache(tmp_path / "strong.xrdexport", tmp_path / "strong")
    assert summary["bytes"] < full["bytes"] and summary["peaks"] < full["peaks"]
    assert strong.manifest["key"] == f"{mp20_cache.manifest['key']}+peaks>=1.0%" != imported_full.manifest["key"]
    assert strong.manifest["split_hash"] == mp20_cache.manifest["split_hash"] and strong.ids == mp20_cache.ids
    for i in range(len(mp20_cache)):
        a, b = mp20_cache.peaks(i), strong.peaks(i)
        keep = a.intensity >= 1.0
        assert len(b) == keep.sum() and np.abs(a.two_theta[keep] - b.two_theta).max() <= 6e-5
    assert import_cache(tmp_path / "strong.xrdexport", tmp_path / "strong").manifest == strong.manifest  # a rerun
    with pytest.raises(ExportError, match="min_intensity"):
        export_cache(mp20_cache.path, tmp_path / "bad.xrdexport", min_intensity=150)
