"""xrdcore.predict on the tiny trained run: a simulated pattern of one of its training structures, real
PV-Lab thin-film patterns that cover part of the grid, the plot with and without the training data,
and the refusals."""

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import write_xy
from xrdcore.cli import main
from xrdcore.crystal import level, space_group
from xrdcore.diffraction.grid import AngleGrid
from xrdcore.diffraction.profile import PeakBatch, render
from xrdcore.diffraction.readers import PatternError, read_pattern, resample
from xrdcore.predict import SUPERCLASS_LEVELS, format_prediction, nearest_reference, plot_prediction, predict
from xrdcore.train import RunError, load_run

PVLAB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pvlab_thinfilm_xy"
FILM = PVLAB / "I4Imcm" / "0% Sn 100%Pb Perovskite at 0.5M 4to1 dmftodmso.xy"  # 10.000-80.014°
CLOSE_UP = PVLAB / "pm-3m" / "0.65M DT perovskite 14 deg peak.xy"  # 13.75-14.40°
needs_pvlab = pytest.mark.skipif(not FILM.is_file(), reason=f"shared data folder {PVLAB} is absent")
PNG = b"\x89PNG\r\n\x1a\n"


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "config.json").read_text())


def copy_run(run_dir: Path, to: Path, *, skip: tuple[str, ...] = (), **changes) -> Path:
    """A copy of the run without the files named in ``skip``, with config.json entries replaced
    (``data_path``, ``input_kind``)."""
    shutil.copytree(run_dir, to, ignore=shutil.ignore_patterns(*skip))
    data = record(to)
    if "data_path" in changes:
        data["data"]["path"] = str(changes["data_path"])
    if "input_kind" in changes:
        data["config"]["input"]["kind"] = changes["input_kind"]
    (to / "config.json").write_text(json.dumps(data))
    return to


@pytest.fixture(scope="module")
def prediction(tiny_run, simulated):
    return predict(tiny_run, simulated[0], top=5, background="none")


def test_simulated_training_pattern(tiny_run, mp20_cache, simulated, prediction):
    p, (path, index) = prediction, simulated
    model, config, run = load_run(tiny_run)
    # preprocessed like training: on the run's grid, maximum 1, and close to the training input itself
    np.testing.assert_array_equal(p.profile, resample(read_pattern(path), config.input.grid))
    np.testing.assert_array_equal(p.two_theta, config.input.grid.values)
    training = config.input.make(PeakBatch.from_peak_lists([mp20_cache.peaks(index)]))[0].numpy()
    assert p.profile.dot(training) / np.linalg.norm(p.profile) / np.linalg.norm(training) > 0.98
    assert p.coverage.fraction == 1.0 and p.warnings == []
    assert (p.encoder, p.hierarchy) == (run["encoder"]["qualified_name"], "multilevel")

    with torch.no_grad():
        logits = model(torch.from_numpy(p.profile)[None])[1]
    sg = torch.softmax(logits["space_group"][0], 0)
    expected = torch.topk(sg, 5)
    assert [s.number for s in p.space_groups] == [int(i) + 1 for i in expected.indices]
    np.testing.assert_allclose([s.probability for s in p.space_groups], expected.values.numpy(), rtol=1e-5)
    probabilities = [s.probability for s in p.space_groups]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6
    assert all(s.symbol == space_group(s.number).symbol for s in p.space_groups)

    top1 = p.space_groups[0].number
    heads = run["hierarchy"]["levels"]
    assert [row.level for row in p.levels] == heads + [n for n in SUPERCLASS_LEVELS if n not in heads]
    assert all(row.head == (row.level in heads) for row in p.levels)
    disagreeing = []
    for row in p.levels:
        lv = level(row.level)
        if not row.head:  # summed over the space-group head
            summed = np.bincount(lv.table, weights=sg.numpy().astype(np.float64), minlength=len(lv))
            own = int(summed.argmax())
            assert row.probability == pytest.approx(summed[own], rel=1e-5)
        else:
            own = int(logits[row.level][0].argmax())
        of_top1 = int(lv.index(np.array([top1]))[0])
        assert (row.predicted, row.of_top_space_group) == (lv.classes[own], lv.classes[of_top1])
        if own != of_top1:
            disagreeing.append(row.level)
    assert "space_group" not in disagreeing
    assert [d.split()[0] for d in p.disagreements] == disagreeing
    for message, name in zip(p.disagreements, disagreeing):
        row = next(r for r in p.levels if r.level == name)
        assert f"top space group {space_group(top1).symbol} (No. {top1})" in message
        assert row.predicted in message and row.of_top_space_group in message


def test_top_is_capped_at_the_number_of_space_groups(tiny_run, simulated):
    p = predict(tiny_run, simulated[0], top=500)
    assert len(p.space_groups) == 230 and len({s.number for s in p.space_groups}) == 230
    assert sum(s.probability for s in p.space_groups) == pytest.approx(1, abs=1e-4)


def test_format_names_the_top_space_group_and_every_level(prediction):
    text = format_prediction(prediction)
    assert prediction.space_groups[0].symbol in text and "coverage: 100%" in text
    assert all(row.level in text for row in prediction.levels)
    assert all(d in text for d in prediction.disagreements)
    assert "reference" not in text  # none was searched


@needs_pvlab
def test_measured_film_covering_part_of_the_grid(tiny_run):
    p = predict(tiny_run, FILM, top=3)
    assert p.pattern == FILM and len(p.space_groups) == 3
    assert p.coverage.measured == (10.0, 80.014)
    # the share of the grid's points inside the measurement (fewer than 70/85 on an ln 1/d axis,
    # whose points crowd towards low angles)
    inside = np.mean((p.two_theta >= 10.0) & (p.two_theta <= 80.014))
    assert p.coverage.fraction == pytest.approx(inside, abs=2e-3) and 0.65 < p.coverage.fraction < 0.85
    assert (p.profile[p.two_theta < 10 - 0.025] == 0).all() and p.profile.max() == 1
    assert p.warnings == []  # its strongest peak, at 14°, is well inside the measurement
    assert f"coverage: {p.coverage.fraction:.0%} of the model's 2θ grid" in format_prediction(p)
    with pytest.raises(PatternError) as caught:
        predict(tiny_run, FILM, outside="error")
    assert str(caught.value).startswith(f"{FILM}: pattern covers 10.00-80.01 deg")


@needs_pvlab
def test_a_close_up_of_one_peak_is_flagged(tiny_run):
    p = predict(tiny_run, CLOSE_UP)
    assert p.coverage.fraction < 0.03
    assert len(p.warnings) == 1 and re.search(r"covers only [12]% of the model's 2θ grid", p.warnings[0])
    assert "warning:  the measurement covers only" in format_prediction(p)


@pytest.mark.parametrize("side", ["low", "high"])
def test_a_measurement_cut_at_its_strongest_peak_is_flagged(tiny_run, simulated, tmp_path, side):
    table = np.loadtxt(simulated[0])
    strongest = table[np.argmax(table[:, 1]), 0]
    keep = table[:, 0] >= strongest if side == "low" else table[:, 0] <= strongest
    p = predict(tiny_run, write_xy(tmp_path / "cut.xy", table[keep, 0], table[keep, 1]))
    where = "starts" if side == "low" else "ends"
    assert [w for w in p.warnings if "strongest peaks may lie" in w and f"the measurement {where}" in w]


def test_plot_with_the_training_data(mp20_cache, simulated, prediction, tmp_path):
    index = simulated[1]
    own = nearest_reference(prediction, int(mp20_cache.space_groups[index]))[0]
    assert own.index == index and own.id == mp20_cache.ids[index] and own.similarity > 0.98
    assert own.formula == mp20_cache.structure(index).composition.reduced_formula
    assert own.profile.shape == prediction.profile.shape and own.profile.max() == pytest.approx(1)

    top1 = prediction.space_groups[0].number
    train = mp20_cache.indices("train")
    reference = plot_prediction(prediction, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes().startswith(PNG)
    assert prediction.reference is reference
    if top1 in mp20_cache.space_groups[train]:
        assert prediction.reference_note is None and reference.index in train
        assert mp20_cache.space_groups[reference.index] == reference.space_group == top1
        assert reference.candidates == int((mp20_cache.space_groups[train] == top1).sum())
        assert -1e-6 <= reference.similarity <= 1 + 1e-6
        assert f"reference: {reference.id} {reference.formula}" in format_prediction(prediction)
    else:
        assert reference is None and "no training structure" in prediction.reference_note

    absent = min(set(range(1, 231)) - set(mp20_cache.space_groups[train].tolist()))
    none, why = nearest_reference(prediction, absent)
    assert none is None and f"has space group {space_group(absent).symbol} (No. {absent})" in why


def test_plot_without_the_training_data(tiny_run, simulated, tmp_path):
    moved = copy_run(tiny_run, tmp_path / "run", data_path=tmp_path / "moved-cache")
    p = predict(moved, simulated[0])
    assert plot_prediction(p, tmp_path / "plots" / "plot.png") is None
    assert (tmp_path / "plots" / "plot.png").read_bytes().startswith(PNG)
    assert p.reference is None and p.reference_note == (f"the run's training data {tmp_path / 'moved-cache'} "
                                                        "no longer exists")
    assert f"reference: none, {p.reference_note}" in format_prediction(p)


def test_refusals(tiny_run, simulated, tmp_path):
    pattern = simulated[0]
    with pytest.raises(RunError, match=f"^{re.escape(str(tmp_path))}: not an xrdcore run directory"):
        predict(tmp_path, pattern)
    unfinished = copy_run(tiny_run, tmp_path / "unfinished", skip=("best.safetensors", "metrics.json"))
    with pytest.raises(RunError, match=f"^{re.escape(str(unfinished))}: unfinished run, no checkpoints/best"):
        predict(unfinished, pattern)
    images = copy_run(tiny_run, tmp_path / "images", input_kind="images")
    with pytest.raises(RunError, match=f"^{re.escape(str(images))}: .*simulated diffraction images"):
        predict(images, pattern)
    for bad in (tmp_path / "missing.xy", write_xy(tmp_path / "flat.xy", np.arange(5.0, 5.1, 0.01), np.ones(10))):
        with pytest.raises(PatternError) as caught:
            predict(tiny_run, bad)
        assert str(caught.value).startswith(f"{bad}: ")
    for top in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="top must be a positive integer"):
            predict(tiny_run, pattern, top=top)
    with pytest.raises(ValueError, match="outside must be 'zero' or 'error'"):
        predict(tiny_run, pattern, outside="pad")


def test_a_run_still_training_predicts_with_a_warning(tiny_run, simulated, tmp_path):
    running = copy_run(tiny_run, tmp_path / "running", skip=("metrics.json",))
    p = predict(running, simulated[0])
    assert p.warnings == [("the run has not finished (no metrics.json): these are the weights of its best "
                           "epoch so far")]


def test_cli_predict_prints_the_top_groups_and_writes_the_plot(tiny_run, simulated, tmp_path, capsys):
    from xrdcore.cli import main

    assert main(["predict", str(tiny_run), str(simulated[0]), "--top", "3", "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "top 3 space groups:" in out and "crystal_system" in out and f"plot: {tmp_path / 'p.png'}" in out
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["predict", str(tmp_path), str(simulated[0])]) == 2
    assert "not an xrdcore run directory" in capsys.readouterr().err


def test_a_mo_pattern_as_pdcif_or_xy_with_its_wavelength_answers_as_the_pattern_moved_to_cu(tiny_run, tmp_path):
    """NaCl simulated at Mo Kα1: the pdCIF (which states it), the .xy with --wavelength, and the same
    pattern moved to Cu Kα1 (the run's data) and saved as .xy give one answer."""
    from pymatgen.core import Lattice, Structure

    from xrdcore.diffraction.pxrd import peak_list
    from xrdcore.diffraction.readers import at_wavelength

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    mo = peak_list(nacl, wavelength="MoKa1", two_theta_range=(2.0, 45.0))
    grid = AngleGrid(2.0, 45.0, 0.01)
    profile = render(PeakBatch.from_peak_lists([mo]), grid, caglioti=(0.0, 0.0, 0.002))[0].numpy()
    rows = "\n".join(f"{t:.4f} {y:.6f}" for t, y in zip(grid.values, profile))
    (tmp_path / "mo.cif").write_text(f"data_nacl\n_diffrn_radiation_wavelength 0.7093\nloop_\n_pd_meas_2theta_scan\n"
                                     f"_pd_proc_intensity_total\n{rows}\n")
    (tmp_path / "mo.xy").write_text(rows + "\n")
    moved = at_wavelength(read_pattern(tmp_path / "mo.cif"), 1.54056)
    (tmp_path / "cu.xy").write_text("\n".join(f"{t:.17g} {y:.17g}" for t, y in zip(moved.two_theta, moved.intensity)))
    from_cif = predict(tiny_run, tmp_path / "mo.cif")
    from_xy = predict(tiny_run, tmp_path / "mo.xy", wavelength="0.7093")
    at_cu = predict(tiny_run, tmp_path / "cu.xy")
    for p in (from_xy, at_cu):
        assert [s.number for s in p.space_groups] == [s.number for s in from_cif.space_groups]
        assert [s.probability for s in p.space_groups] == pytest.approx([s.probability for s in from_cif.space_groups],
                                                                         abs=1e-6)
    assert "0.7093 Å (from the file), moved to the run's data's 1.54056 Å" in format_prediction(from_cif)
    assert "0.7093 Å (as given), moved to" in format_prediction(from_xy)
    assert "not stated; taken to be the run's data's 1.54056 Å" in format_prediction(at_cu)
    with pytest.raises(PatternError, match=r"mo\.cif: the file states 0\.7093 Å, the command says 1\.54056 Å"):
        predict(tiny_run, tmp_path / "mo.cif", wavelength="CuKa1")


def test_a_batch_answers_every_file_reports_a_bad_one_and_goes_on(tiny_run, simulated, tmp_path, capsys):
    folder = tmp_path / "patterns"
    folder.mkdir()
    for name in ("a.xy", "b.xy"):
        shutil.copy(simulated[0], folder / name)
    (folder / "broken.xy").write_text("10 1\n11 oops\n")
    (folder / "notes.md").write_text("not a pattern, not searched")
    out = tmp_path / "answers.csv"
    assert main(["predict", str(tiny_run), str(folder), "--top", "2", "--out", str(out)]) == 1  # one failed
    printed = capsys.readouterr()
    assert "broken.xy: line 2 has a non-numeric value 'oops'" in printed.err
    assert "2 of 3 patterns answered" in printed.out
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["file"]).name for r in rows] == ["a.xy", "b.xy", "broken.xy"]
    single = predict(tiny_run, simulated[0], top=2)
    for row in rows[:2]:
        assert row["status"] == "ok" and int(row["space_group_1"]) == single.space_groups[0].number
        assert float(row["probability_2"]) == pytest.approx(single.space_groups[1].probability, abs=1e-6)
        assert row["crystal_system"] == next(lv.predicted for lv in single.levels if lv.level == "crystal_system")
    assert rows[2]["status"] == "failed" and "non-numeric" in rows[2]["error"]
    as_json = tmp_path / "answers.json"
    assert main(["predict", str(tiny_run), str(folder / "*.xy"), str(simulated[0]), "--out", str(as_json)]) == 1
    assert [Path(r["file"]).name for r in json.loads(as_json.read_text())] == ["a.xy", "b.xy", "broken.xy",
                                                                                 "simulated.xy"]
    assert main(["predict", str(tiny_run), str(folder / "a.xy"), str(folder / "b.xy"), "--plot", "x.png"]) == 2


def test_same_absences_are_listed_with_their_probabilities(tiny_run, simulated):
    """P2/m (No. 10) shares its lattice and absences with P2 and Pm: whatever the model answers, the
    groups listed are exactly the others of the top group's extinction class, most probable first."""
    p = predict(tiny_run, simulated[0], top=230)
    best = p.space_groups[0].number
    absences = level("extinction_class_any_setting")
    expected = set(absences.members(int(absences.index(best)))) - {best}
    assert {s.number for s in p.alternatives} == expected
    probability = {s.number: s.probability for s in p.space_groups}
    assert [s.probability for s in p.alternatives] == sorted((probability[n] for n in expected), reverse=True)
    assert set(level("extinction_class_any_setting").members(int(absences.index(10)))) == {3, 6, 10}


def test_background_auto_answers_a_pattern_on_a_hump_like_the_clean_one(tiny_run, simulated, tmp_path):
    table = np.loadtxt(simulated[0])
    hump = 0.3 * np.exp(-0.5 * ((table[:, 0] - 25) / 6) ** 2) + 0.05  # an amorphous hump and a floor
    humped = write_xy(tmp_path / "humped.xy", table[:, 0], table[:, 1] + hump * table[:, 1].max())
    clean = predict(tiny_run, simulated[0], background="none")
    auto, raw = predict(tiny_run, humped), predict(tiny_run, humped, background="none")
    assert "SNIP" in auto.background_note and "background: auto (SNIP" in format_prediction(auto)

    def cosine(a, b):
        return a.dot(b) / np.linalg.norm(a) / np.linalg.norm(b)

    assert cosine(auto.profile, clean.profile) > 0.97 > cosine(raw.profile, clean.profile)
    assert auto.space_groups[0].number == clean.space_groups[0].number


def test_a_pattern_that_covers_too_little_once_moved_to_the_run_wavelength_is_refused(tiny_run, tmp_path):
    """Mo Kα1 2-8° is 4.3-17.4° at Cu Kα1: less than half of the run's 5-90° grid (uniform in ln 1/d),
    so no answer."""
    x = np.arange(2.0, 8.0, 0.01)
    path = write_xy(tmp_path / "short-mo.xy", x, 1 + np.exp(-0.5 * ((x - 6) / 0.05) ** 2))
    with pytest.raises(PatternError, match=r"short-mo\.xy: moved to the run's 1\.54056 Å the pattern covers "
                                           r"4\.3\d-17\.\d\d° 2θ, 4\d% of the model's grid 5-90°: too little"):
        predict(tiny_run, path, wavelength="MoKa1")
    assert predict(tiny_run, path).coverage.fraction < 0.5  # at the run's own wavelength: a warning only
    assert predict(tiny_run, path, wavelength="CuKa1").coverage.fraction < 0.5  # stated, but not moved


def test_a_bad_wavelength_stops_a_batch_once_with_one_line(tiny_run, simulated, capsys):
    from xrdcore.cli import main

    pattern = str(simulated[0])
    assert main(["predict", str(tiny_run), pattern, pattern, "--wavelength", "XxKa9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xrdcore: error:") and "XxKa9" in err[0]
