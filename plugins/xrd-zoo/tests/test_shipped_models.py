"""The shipped models as a user gets them: listed with their cards' facts, checked against their
sha256, the card's numbers those of the weights shipped, and `xrdcore predict --model NAME file`
answering with no training and no network, at any stated wavelength."""

import json
from pathlib import Path

import numpy as np
import pytest

import xrdcore
from xrdcore.cli import main
from xrdcore.diffraction.grid import AngleGrid
from xrdcore.diffraction.profile import PeakBatch, render
from xrdcore.diffraction.pxrd import peak_list
from xrdcore.diffraction.readers import at_wavelength, read_pattern
from xrdcore.zoo import sha256

SHIPPED = ("inorganic", "mof")
DOCS = Path(__file__).resolve().parents[3] / "docs" / "models"


def test_models_lists_every_shipped_model_with_its_card_facts(capsys):
    assert main(["models"]) == 0
    printed = capsys.readouterr().out
    assert all(f"{name}: " in printed for name in SHIPPED) and "unusable" not in printed
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(SHIPPED) <= set(rows)
    for name in SHIPPED:
        row = rows[name]
        top1 = row["test"]["top1"]
        assert top1["ci95"][0] <= top1["value"] <= top1["ci95"][1] and top1["n"] > 0
        assert row["data"]["split_hash"].startswith("sha256:") and len(row["sha256"]) == 64
        assert row["input"]["wavelength"] == pytest.approx(1.54056) and row["licence"]


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_is_what_its_card_says(name, capsys):
    model = xrdcore.load_model(name)
    net, config, record = model.load()
    card = model.card
    assert sum(p.numel() for p in net.parameters()) == card["parameters"]
    assert sha256(model.weights) == card["sha256"] and model.weights.stat().st_size == card["size_bytes"]
    assert list(card["input"]["two_theta"]) == list(record["config"]["input"]["two_theta"])
    assert record["data"]["split_hash"] == card["training_data"]["split_hash"]
    assert f"{card['metrics']['test']['top1']['value']:.1%}" in model.card_text
    assert (DOCS / f"{name}.md").read_text() == model.card_text  # the docs show the shipped card
    assert main(["models", "show", name]) == 0
    assert capsys.readouterr().out.startswith(f"# `{name}`")


def _nacl_at(wavelength: str, two_theta: tuple[float, float]):
    from pymatgen.core import Lattice, Structure

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    grid = AngleGrid(*two_theta, 0.01)
    peaks = PeakBatch.from_peak_lists([peak_list(nacl, wavelength=wavelength, two_theta_range=two_theta)])
    return grid.values, render(peaks, grid, caglioti=(0.0, 0.0, 0.004))[0].numpy()


def test_predict_with_the_inorganic_model_answers_a_file(tmp_path, capsys):
    x, y = _nacl_at("CuKa1", (5.0, 90.0))
    np.savetxt(tmp_path / "nacl.xy", np.column_stack([x, y]))
    assert main(["predict", "--model", "inorganic", str(tmp_path / "nacl.xy"), "--wavelength", "CuKa1"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("model:    inorganic (") and "wavelength: 1.54056 Å (as given)" in printed
    assert "background: auto (SNIP" in printed and "crystal_system" in printed


def test_mo_pdcif_and_xy_answer_as_the_same_pattern_moved_to_cu(tmp_path):
    """NaCl simulated at Mo Kα1 (2-40°): the pdCIF stating 0.7093 Å, the .xy with --wavelength 0.7093,
    and the pattern moved to Cu Kα1 give the inorganic model's same answer."""
    x, y = _nacl_at("MoKa1", (2.0, 40.0))
    rows = "\n".join(f"{t:.4f} {v:.6f}" for t, v in zip(x, y))
    (tmp_path / "mo.cif").write_text(f"data_nacl\n_diffrn_radiation_wavelength 0.7093\nloop_\n"
                                     f"_pd_meas_2theta_scan\n_pd_proc_intensity_total\n{rows}\n")
    (tmp_path / "mo.xy").write_text(rows + "\n")
    moved = at_wavelength(read_pattern(tmp_path / "mo.cif"), 1.54056)
    np.savetxt(tmp_path / "cu.xy", np.column_stack([moved.two_theta, moved.intensity]), fmt="%.17g")
    model = xrdcore.load_model("inorganic")
    answers = [model.predict(tmp_path / "mo.cif"), model.predict(tmp_path / "mo.xy", wavelength="0.7093"),
               model.predict(tmp_path / "cu.xy", wavelength="CuKa1")]
    for p in answers[1:]:
        assert [s.number for s in p.space_groups] == [s.number for s in answers[0].space_groups]
        assert [s.probability for s in p.space_groups] == pytest.approx(
            [s.probability for s in answers[0].space_groups], abs=1e-5)
    assert "0.7093 Å (from the file), moved to the run's data's 1.54056 Å" in answers[0].wavelength_note
