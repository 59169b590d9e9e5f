"""XtalNetGenerator: it recovers a structure it was overfitted on, reports invalid candidates, fits
on a real cache (train split, selected on val, test untouched) and restores what it wrote with
``load``, embeds cache peak lists and measured-profile peaks alike."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from xrd_xtalnet.cpcp import load_cpcp
from xrd_xtalnet.crystals import CrystalBatch, composition_numbers, invalid_reason, is_valid, to_structure
from xrd_xtalnet.diffusion import CrystalDiffusion
from xrd_xtalnet.generator import GeneratorConfig, XtalNetGenerator, load_diffusion, train_generator
from xrd_xtalnet.plugin import TINY_GENERATOR

PAPER = {"stol": 0.7, "angle_tol": 5, "ltol": 0.2}
SMALL = {"hidden": 64, "layers": 2, "frequencies": 4, "time_dim": 16, "cond_dim": 8}


def _rock_salt():
    """NaCl, rock salt, in its two-atom primitive cell (a = 5.64 Å)."""
    half = 5.64 / 2
    return Structure(Lattice([[0, half, half], [half, 0, half], [half, half, 0]]), ["Na", "Cl"],
                     [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_overfitted_generator_recovers_its_training_structure():
    """The denoiser trained on one real structure (a fixed condition) samples it back; the same
    generator untrained does not (so the match is learned, not a lenient matcher)."""
    torch.manual_seed(0)
    target = _rock_salt()
    diffusion = CrystalDiffusion(denoiser=SMALL, timesteps=100, volume_per_atom=target.volume / len(target))
    condition = torch.randn(8, generator=torch.Generator().manual_seed(5))
    matcher = StructureMatcher(**PAPER)
    untrained = XtalNetGenerator.from_models(CrystalDiffusion(denoiser=SMALL, timesteps=100,
                                                              volume_per_atom=target.volume / 2), sample_seed=1)
    assert not any(matcher.fit(c, target) for c in untrained.sample(condition, "NaCl", 16) if is_valid(c))
    crystals = CrystalBatch.from_structures([target] * 16)
    conditions = condition.expand(16, -1)
    optimiser = torch.optim.Adam(diffusion.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, 1500)
    noise = torch.Generator().manual_seed(0)
    for _ in range(1500):
        loss, _ = diffusion.loss(crystals, conditions, noise)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    generator = XtalNetGenerator.from_models(diffusion, sample_seed=1, steps=100)
    candidates = generator.sample(condition, "NaCl", 16)
    assert all(c.composition.formula == "Na1 Cl1" for c in candidates)
    rms = [matcher.get_rms_dist(c, target) for c in candidates if is_valid(c)]
    matched = [r[0] for r in rms if r is not None]
    assert len(matched) >= 12, rms
    assert np.median(matched) < 0.05, matched


def test_invalid_candidates_are_reported_not_dropped_or_fatal():
    good = to_structure(np.eye(3) * 4.0, np.array([[0, 0, 0], [0.5, 0.5, 0.5]]), np.array([11, 17]))
    assert good.properties == {"valid": True, "invalid_reason": None} and is_valid(good)
    close = to_structure(np.eye(3) * 4.0, np.array([[0, 0, 0], [0.05, 0, 0]]), np.array([11, 17]))
    assert not close.properties["valid"] and "0.200 Å apart" in close.properties["invalid_reason"]
    image = to_structure(np.diag([0.4, 9.0, 9.0]), np.array([[0, 0, 0]]), np.array([11]))
    assert not is_valid(image)  # an atom 0.4 Å from its own image
    flat = to_structure(np.array([[4.0, 0, 0], [0, 4.0, 0], [4.0, 4.0, 1e-6]]), np.array([[0, 0, 0]]), np.array([11]))
    assert "degenerate" in flat.properties["invalid_reason"]
    huge = to_structure(np.eye(3) * 40.0, np.array([[0, 0, 0], [0.5, 0.5, 0.5]]), np.array([11, 17]))
    assert "degenerate" in huge.properties["invalid_reason"]  # 32,000 Å³ per atom is no solid
    skewed = np.array([[1, 0, 0], [40, 1, 0], [-25, 31, 1]]) @ (np.eye(3) * 4.0)  # the same cubic lattice
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0.5]]) @ np.eye(3) * 4.0 @ np.linalg.inv(skewed)
    reduced = to_structure(skewed, frac, np.array([11, 17]))
    assert is_valid(reduced) and np.allclose(sorted(reduced.lattice.abc), [4.0, 4.0, 4.0])
    assert StructureMatcher(**PAPER).fit(reduced, good)
    broken = to_structure(np.full((3, 3), np.nan), np.array([[0, 0, 0]]), np.array([11]))
    assert "non-finite" in broken.properties["invalid_reason"]
    assert invalid_reason(np.eye(3) * 4.0, np.array([[0, 0, 0]])) is None
    plain = Structure(Lattice.cubic(4.0), ["Na", "Na"], [[0, 0, 0], [0.01, 0, 0]])
    assert not is_valid(plain)  # structures from elsewhere are checked when asked
    generator = XtalNetGenerator(**TINY_GENERATOR)  # unfitted: untrained models built from the options
    condition = torch.randn(generator.cpcp.shared_dim)
    scores = generator.rank(condition, [good, close, broken])
    assert math.isfinite(scores[0]) and scores[1] == scores[2] == -math.inf


def test_composition_is_the_cell_content():
    assert composition_numbers("Na4Cl4").tolist() == [11] * 4 + [17] * 4
    assert composition_numbers("ClNa").tolist() == [11, 17]
    for bad in ("Na0.5Cl", ""):
        with pytest.raises(ValueError):
            composition_numbers(bad)


def test_options_are_checked_when_built_not_after_training():
    generator = XtalNetGenerator(**TINY_GENERATOR)
    assert generator.diffusion.cond_dim == generator.cpcp.shared_dim == TINY_GENERATOR["cpcp"]["shared_dim"]
    for bad in ({"training": {"epoch": 3}}, {"cpcp_training": {"seed": 1}}, {"diffusion": {"volume_per_atom": 9.0}},
                {"diffusion": {"denoiser": {"cond_dim": 4}}}, {"cpcp": {"pxdr": {}}}, {"max_atoms": 0}):
        with pytest.raises(ValueError):
            XtalNetGenerator(**{**TINY_GENERATOR, **bad})
    with pytest.raises(ValueError):
        generator.sample(None, "MgO", 2)  # a conditioned model needs its condition
    with pytest.raises(RuntimeError, match="without a CPCP model"):
        XtalNetGenerator.from_models(generator.diffusion).rank(torch.zeros(16), [])


@pytest.fixture(scope="module")
def fitted(mp20_cache, tmp_path_factory):
    """The tiny generator fitted on the MP-20 sample (seed 3), and what fit returned and wrote."""
    out = tmp_path_factory.mktemp("xtalnet") / "model"
    generator = XtalNetGenerator(**TINY_GENERATOR)
    facts = generator.fit(mp20_cache, out, seed=3)
    return generator, facts, out


def test_fit_trains_both_stages_on_train_selects_on_val_and_reports(fitted, mp20_cache):
    generator, facts, out = fitted
    assert json.loads(json.dumps(facts)) == facts  # JSON-safe
    assert facts["seed"] == 3 and facts["max_atoms"] == 20
    sizes = {split: [len(mp20_cache.structure(int(i))) for i in mp20_cache.indices(split)] for split in ("train", "val")}
    for stage in ("cpcp", "diffusion"):
        stored = json.loads((out / stage / "results.json").read_text())
        assert facts[stage]["selected_epoch"] == stored["selected_epoch"]
        assert set(facts[stage]["pairs"]) == {"train", "val"}  # the test split is not read
        for split, n in sizes.items():
            assert facts[stage]["pairs"][split]["kept"] == sum(k <= 20 for k in n)
        assert stored["config"]["seed"] == 3
    cpcp_history = json.loads((out / "cpcp" / "results.json").read_text())["history"]
    assert facts["cpcp"]["selected_epoch"] == min(cpcp_history, key=lambda h: h["val_loss"])["epoch"]
    assert "test" not in json.loads((out / "cpcp" / "results.json").read_text())
    assert len(cpcp_history) == TINY_GENERATOR["cpcp_training"]["epochs"]
    assert generator.diffusion.cond_dim == generator.cpcp.shared_dim


def test_load_restores_what_fit_wrote(fitted, mp20_cache):
    generator, _, out = fitted
    loaded = XtalNetGenerator(**TINY_GENERATOR)
    loaded.load(out)
    peaks = [mp20_cache.peaks(int(i)) for i in mp20_cache.indices("test")[:3]]
    condition = generator.embed_patterns(peaks)
    assert torch.equal(loaded.embed_patterns(peaks), condition)
    structures = [mp20_cache.structure(int(i)) for i in mp20_cache.indices("test")[:3]]
    assert torch.equal(loaded.embed_structures(structures), generator.embed_structures(structures))
    generator.load(out)  # both sampling streams restart at the fit's seed
    composition = structures[0].composition
    a, b = generator.sample(condition[0], composition, 3), loaded.sample(condition[0], composition, 3)
    for x, y in zip(a, b):
        assert np.allclose(x.lattice.matrix, y.lattice.matrix) and np.allclose(x.frac_coords, y.frac_coords)
        assert x.composition == composition
    assert generator.rank(condition[0], a) == pytest.approx(loaded.rank(condition[0], b))
    again = generator.sample(condition[0], composition, 1)[0]
    assert not np.allclose(again.frac_coords, a[0].frac_coords)  # the stream continues between calls
    from xrdcore.train.checkpoint import CheckpointError

    with pytest.raises(CheckpointError):
        XtalNetGenerator().load(out / "cpcp")


def test_measured_peaks_embed_like_cache_peaks(fitted, mp20_cache):
    """FoundPeaks (no hkl, no lattice) go through the same path; peaks outside CPCP's 2θ range are
    left out and the rest rescaled, so a cache peak list with extra peaks outside embeds the same."""
    from xrdcore.diffraction.peaks import FoundPeaks

    generator, _, _ = fitted
    peaks = mp20_cache.peaks(int(mp20_cache.indices("val")[0]))
    found = FoundPeaks(np.asarray(peaks.two_theta, dtype=float), np.asarray(peaks.intensity, dtype=float))
    embedding = generator.embed_patterns([peaks])
    assert embedding.shape == (1, generator.cpcp.shared_dim)
    assert torch.allclose(generator.embed_patterns([found]), embedding, atol=1e-6)
    low, high = mp20_cache.manifest["spec"]["two_theta_range"]
    padded = FoundPeaks(np.concatenate([[low - 2.0], found.two_theta, [high + 3.0]]),
                        np.concatenate([[400.0], found.intensity * 0.5, [80.0]]))  # strongest peak outside
    assert torch.allclose(generator.embed_patterns([padded]), embedding, atol=1e-5)
    assert not torch.allclose(generator.embed_patterns([FoundPeaks(found.two_theta, found.intensity[::-1].copy())]),
                              embedding, atol=1e-4)


def test_training_stage_alone_selects_on_validation(mp20_cache, cpcp_run, tmp_path):
    cpcp_dir, _ = cpcp_run
    config = GeneratorConfig(diffusion={"denoiser": {"hidden": 16, "layers": 1, "frequencies": 2, "time_dim": 8},
                                        "timesteps": 50}, max_atoms=12, epochs=3, batch_size=16)
    results = train_generator(mp20_cache, cpcp_dir, tmp_path / "gen", config)
    history = results["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert results["selected_epoch"] == min(history, key=lambda h: h["val_loss"])["epoch"]
    assert "test" not in results["pairs"] and "test" not in results  # the test split is not touched
    sizes = [len(mp20_cache.structure(int(i))) for i in mp20_cache.indices("train")]
    assert results["pairs"]["train"]["kept"] == sum(n <= 12 for n in sizes)
    train = [mp20_cache.structure(int(i)) for i in mp20_cache.indices("train")]
    kept = [s for s in train if len(s) <= 12]
    assert results["diffusion"]["volume_per_atom"] == pytest.approx(np.mean([s.volume / len(s) for s in kept]))
    generator = XtalNetGenerator.from_models(load_diffusion(tmp_path / "gen"), load_cpcp(cpcp_dir), steps=5)
    peaks = mp20_cache.peaks(int(mp20_cache.indices("test")[0]))
    condition = generator.embed_patterns([peaks])[0]
    assert condition.shape == (generator.cpcp.shared_dim,)
    assert torch.linalg.vector_norm(condition).item() == pytest.approx(1.0, abs=1e-5)
    candidates = generator.sample(condition, mp20_cache.structure(int(mp20_cache.indices("test")[0])).composition, 2)
    assert len(candidates) == 2 and len(generator.rank(condition, candidates)) == 2
    with pytest.raises(FileExistsError):
        train_generator(mp20_cache, cpcp_dir, tmp_path / "gen", config)
