"""The plugin on the core's platform, with real components end to end: the harness's generation
task for both generators, ``xrdcore train-generator`` + ``xrdcore generate`` on a rendered
pattern, and the PXRD encoder as an ordinary space-group classifier (``xrdcore.train`` on peaks,
then ``predict`` on a measured-style pattern)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xrdcore
from pymatgen.core import Structure
from xrdcore.cli import main

from xrd_xtalnet.plugin import TINY_PXRD, TINY_TRAINING

GENERATORS = ("xtalnet", "pyxtal-random")


def _write_pattern(structure, path):
    """A 2-column .xy file (2θ in degrees, intensity) of the structure's simulated profile."""
    simulator = xrdcore.create_simulator("pxrd", grid={"step": 0.02})
    profile = simulator.simulate([structure])[0].numpy()
    path.write_text("\n".join(f"{t:.3f} {y:.6f}" for t, y in zip(simulator.grid.values, profile)) + "\n")
    return path


def test_generation_task_fits_and_scores_both_generators(mp20_cache, tmp_path):
    out = tmp_path / "bench"
    code = main(["bench", "--task", "generation", "--dataset", str(mp20_cache.path), "--generators",
                 ",".join(GENERATORS), "--plugins", "xrd-xtalnet", "--quick", "--limit-patterns", "3",
                 "--generator-option", "xtalnet.steps=5", "--out", str(out), "--device", "cpu", "--quiet"])
    assert code in (0, None)
    results = json.loads((out / "results.json").read_text())
    rows = {r["generator"]: r for r in results["runs"]}
    assert set(rows) == set(GENERATORS)
    for name in GENERATORS:
        assert rows[name]["seeds"] == {"0": {"status": "complete"}}, rows[name]["seeds"]
        assert rows[name]["generation"]["n"] == 3 and rows[name]["generation"]["candidates"] == 10
        fit = json.loads((out / "runs" / name / "seed0" / "fit.json").read_text())
        assert fit["seed"] == 0 and set(fit["cpcp"]["pairs"]) == {"train", "val"}
    config = json.loads((out / "runs" / "xtalnet" / "seed0" / "config.json").read_text())
    assert config["generator"]["options"]["steps"] == 5  # the command-line option over the tiny variant
    assert config["generator"]["options"]["training"]["epochs"] == 10
    markdown = (out / "results.md").read_text()
    assert "## Retrieval" in markdown and "## Generation" in markdown
    for name in GENERATORS:
        for setting in ("paper", "code"):
            assert f"| {name} | {setting} |" in markdown, (name, setting)
    # the same CPCP stage, options and seed: the same model, so the same retrieval
    from safetensors.torch import load_file

    a, b = (load_file(str(out / "runs" / name / "seed0" / "model" / "cpcp" / "model.safetensors"))
            for name in GENERATORS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert rows["xtalnet"]["retrieval"] == rows["pyxtal-random"]["retrieval"]


def test_train_generator_then_generate_for_a_pattern(mp20_cache, tmp_path):
    """The tiny variant, its denoiser trained for 100 epochs instead of 10: on the 37 training
    structures of the sample, 10 epochs are 20 optimiser steps, too few for the lattice to come out
    as a crystal (its samples are then reported invalid, with a degenerate-lattice reason)."""
    run = tmp_path / "run"
    training = json.dumps({**TINY_TRAINING, "epochs": 100})
    assert main(["train-generator", "xtalnet", "--dataset", str(mp20_cache.path), "--out", str(run), "--tiny",
                 "--generator-option", f"training={training}", "--device", "cpu", "--quiet"]) in (0, None)
    assert (run / "fit.json").is_file() and (run / "model" / "generator.json").is_file()
    assert json.loads((run / "fit.json").read_text())["diffusion"]["epochs"] == 100
    target = mp20_cache.structure(int(mp20_cache.indices("test")[0]))
    pattern = _write_pattern(target, tmp_path / "pattern.xy")
    formula = target.composition.formula.replace(" ", "")
    out = tmp_path / "candidates"
    assert main(["generate", str(run), str(pattern), "--composition", formula, "-n", "12", "--out", str(out)]) in (0, None)
    ranking = json.loads((out / "ranking.json").read_text())
    rows = ranking["candidates"]
    assert [r["rank"] for r in rows] == list(range(1, 13))
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    valid = [r for r in rows if r["valid"]]
    assert valid, "no valid candidate among 12"
    assert sorted(p.name for p in out.glob("*.cif")) == sorted(r["file"] for r in valid)
    for row in valid:
        structure = Structure.from_file(out / row["file"])
        assert structure.composition.reduced_formula == target.composition.reduced_formula
        assert len(structure) == len(target)
    assert all(r["invalid_reason"] for r in rows if not r["valid"])
    assert ranking["peaks"] > 0


def test_pxrd_encoder_classifies_on_peaks_and_predicts_a_pattern(mp20_cache, tmp_path):
    from xrdcore.predict import predict
    from xrdcore.train import InputSpec, TrainConfig, train

    config = TrainConfig("xrd-xtalnet:xtalnet-pxrd", encoder_options=TINY_PXRD, input=InputSpec(kind="peaks"),
                         epochs=2, batch_size=16, patience=None, seed=0)
    metrics = train(config, mp20_cache, tmp_path / "classifier", device="cpu", progress=False)
    assert (tmp_path / "classifier" / "metrics.json").is_file()
    assert metrics["test"]["n"] == len(mp20_cache.indices("test")) and 0 <= metrics["test"]["top1"] <= 1
    structure = mp20_cache.structure(int(mp20_cache.indices("test")[1]))
    prediction = predict(tmp_path / "classifier", _write_pattern(structure, tmp_path / "pattern.xy"), top=5)
    scores = prediction.space_groups
    assert len(scores) == 5 and len({s.number for s in scores}) == 5
    assert all(1 <= s.number <= 230 for s in scores)
    probabilities = [s.probability for s in scores]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6
    assert prediction.encoder == "xrd-xtalnet:xtalnet-pxrd"
    assert np.isfinite(prediction.profile).all()


@pytest.mark.parametrize("name", GENERATORS)
def test_an_unfinished_or_foreign_model_directory_is_refused(name, tmp_path):
    from xrdcore.train.checkpoint import CheckpointError

    generator = xrdcore.create_generator(f"xrd-xtalnet:{name}")
    with pytest.raises(CheckpointError):
        generator.load(tmp_path)
