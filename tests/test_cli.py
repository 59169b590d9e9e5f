"""The ``xrdcore`` command: output, JSON, and one-line errors with exit status 2."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xrdcore.cli import main
from xrdcore.crystal import level
from conftest import user_environment

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_labels_by_number_and_symbol_agree(capsys):
    code, by_number, _ = run(capsys, "labels", "14", "--json")
    assert code == 0
    _, by_symbol, _ = run(capsys, "labels", "P21/c", "--json")
    data = json.loads(by_number)
    assert json.loads(by_symbol) == data
    assert data["symbol"] == "P2_1/c" and data["full_symbol"] == "P 1 2_1/c 1"
    assert {k: v["class"] for k, v in data["levels"].items()} == {
        "space_group": "P2_1/c", "crystal_system": "monoclinic", "lattice_system": "monoclinic",
        "centring": "P", "bravais": "mP", "point_group": "2/m", "laue_class": "2/m",
        "arithmetic_class": "2/mP", "extinction_class": "P2_1/c", "extinction_class_any_setting": "P2_1/c"}


def test_labels_table(capsys):
    code, out, _ = run(capsys, "labels", "Fm-3m")
    assert code == 0
    assert out.splitlines()[0] == "space group 225: Fm-3m  (F 4/m -3 2/m; Oh^5)"
    assert re.search(r"bravais\s+\d+\s+cF", out) and re.search(r"lattice_system\s+\d+\s+cubic", out)


@pytest.mark.parametrize("argv, message", [
    (["labels", "Fm3m"], "unknown space-group symbol 'Fm3m'; did you mean Fm-3m"),
    (["labels", "231"], "space-group number must be 1-230, got 231"),
    (["list", "potentials"], "unknown component kind 'potentials'"),
    (["levels", "point_grup"], "Unknown level 'point_grup'. Did you mean 'point_group'"),
])
def test_errors_are_one_line_with_status_2(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.strip() == f"xrdcore: error: {err.strip().split('error: ', 1)[1]}" and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_usage_errors_are_one_line_with_status_2(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["lables", "14"])
    err = capsys.readouterr().err
    assert raised.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "invalid choice: 'lables'" in err


def test_debug_shows_the_traceback(capsys):
    code = main(["--debug", "labels", "Fm3m"])
    _, err = capsys.readouterr()
    assert code == 2 and "Traceback" in err and "xrdcore: error:" in err.splitlines()[-1]


def test_list_and_plugins_show_builtins(capsys):
    _, out, _ = run(capsys, "list", "hierarchies", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["flat"]["plugin"] == "xrdcore" and rows["flat"]["builtin"]
    assert rows["flat"]["description"].startswith("Space group only")
    _, out, _ = run(capsys, "list", "schedulers", "w*")
    assert out.split()[0] == "weighted" and "sum" not in out
    _, out, _ = run(capsys, "list", "encoders", "*nothing*")
    assert out.strip() == "no encoders match '*nothing*'"
    _, out, _ = run(capsys, "plugins", "--json")
    builtin = next(p for p in json.loads(out)["plugins"] if p["name"] == "xrdcore")
    assert builtin["status"] == "ok" and builtin["components"]["label_hierarchy"] == ["flat", "multilevel"]


def test_levels_lists_counts_and_members(capsys):
    _, out, _ = run(capsys, "levels", "--json")
    assert {k: v["classes"] for k, v in json.loads(out).items()}["arithmetic_class"] == 73
    _, out, _ = run(capsys, "levels", "extinction_class", "--json")
    data = json.loads(out)
    assert len(data["classes"]) == len(level("extinction_class"))
    p41 = next(c for c in data["classes"] if 76 in c["space_groups"])
    assert 78 in p41["space_groups"]


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("xrdcore")
    env = user_environment()
    result = subprocess.run([str(script), "labels", "166"], capture_output=True, text=True, env=env, check=True)
    assert "R-3m" in result.stdout and "rhombohedral" in result.stdout and "hR" in result.stdout


NACL_CIF = (Path(__file__).with_name("data") / "NaCl.cif").read_text()  # rock salt, Fm-3m by symbol


def test_simulate_writes_profile_peaks_and_plot(capsys, tmp_path):
    from pymatgen.core import Structure

    from xrdcore.diffraction.pxrd import peak_list

    cif = tmp_path / "NaCl.cif"
    cif.write_text(NACL_CIF)
    code = main(["simulate", str(cif), "--two-theta", "20", "80", "0.02", "--out", str(tmp_path / "p.xy"),
                 "--plot", str(tmp_path / "p.png")])
    assert code == 0
    data = np.loadtxt(tmp_path / "p.xy")
    assert data.shape == (3000, 2) and data[0, 0] == 20.0 and data[:, 1].max() == 1.0
    assert data[data[:, 1].argmax(), 0] == pytest.approx(31.70, abs=0.02)  # (200) of rock salt
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, out, _ = run(capsys, "simulate", str(cif), "--peaks", "--wavelength", "MoKa1")
    rows = np.array([line.split() for line in out.splitlines() if not line.startswith("#")], dtype=float)
    expected = peak_list(Structure.from_str(NACL_CIF, fmt="cif"), wavelength="MoKa1")
    assert rows[:, 0] == pytest.approx(expected.two_theta, abs=1e-5)
    assert rows[:, 6].astype(int).tolist() == expected.multiplicity.tolist()


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty"), ("data_x\n_cell_length_a 4\n", "no atom sites"),
    ("not a cif at all", "no CIF data block"),
    (NACL_CIF.replace("Cl1 Cl 0.5 0.5 0.5", "Cl1 Cl 0.01 0 0"), "atoms overlap"),
    (NACL_CIF.replace("_atom_site_fract_z", "_atom_site_fract_z\n_atom_site_occupancy")
     .replace("Na1 Na 0 0 0", "Na1 Na 0 0 0 0").replace("Cl1 Cl 0.5 0.5 0.5", "Cl1 Cl 0.5 0.5 0.5 1"),
     "Missing elements Na"),
    (NACL_CIF.replace("Na1 Na", "Es1 Es"), "no X-ray scattering factor for Es")])
def test_simulate_reports_bad_cifs_in_one_line(capsys, tmp_path, text, message):
    cif = tmp_path / "bad file.cif"
    cif.write_text(text)
    code, _, err = run(capsys, "simulate", str(cif))
    assert code == 2 and str(cif) in err and message in err and len(err.strip().splitlines()) == 1


def test_a_registered_data_set_name_wins_over_a_local_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "csv").mkdir()  # a folder called like the registered `csv` data set
    csv_file = Path(__file__).with_name("data") / "mp20_sample.csv"
    args = ["data", "build", "csv", "--out", "out", "--option", f"path={csv_file}", "--limit", "3", "--quiet"]
    assert main(args) == 0 and main(args) == 0  # the same build twice: reused, not "other inputs"
    assert "3 structures of csv" in capsys.readouterr().out
