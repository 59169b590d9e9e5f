"""XtalNetGenerator: it recovers a structure it was overfitted on, reports invalid candidates,
round-trips through storage, and trains on a real cache (train split, selected on val)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from xrd_xtalnet.crystals import CrystalBatch, composition_numbers, invalid_reason, is_valid, to_structure
from xrd_xtalnet.diffusion import CrystalDiffusion
from xrd_xtalnet.generator import GeneratorConfig, XtalNetGenerator, train_generator
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
    untrained = XtalNetGenerator(diffusion=CrystalDiffusion(denoiser=SMALL, timesteps=100,
                                                            volume_per_atom=target.volume / 2), seed=1)
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
    generator = XtalNetGenerator(diffusion=diffusion, seed=1, steps=100)
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
    generator = XtalNetGenerator(**TINY_GENERATOR)
    condition = torch.randn(generator.cpcp.shared_dim)
    scores = generator.rank(condition, [good, close, broken])
    assert math.isfinite(scores[0]) and scores[1] == scores[2] == -math.inf


def test_composition_is_the_cell_content():
    assert composition_numbers("Na4Cl4").tolist() == [11] * 4 + [17] * 4
    assert composition_numbers("ClNa").tolist() == [11, 17]
    for bad in ("Na0.5Cl", ""):
        with pytest.raises(ValueError):
            composition_numbers(bad)


def test_sampling_is_reproducible_and_survives_storage(tmp_path):
    torch.manual_seed(0)
    first = XtalNetGenerator(**TINY_GENERATOR, seed=3)
    from xrd_xtalnet.generator import save_generator

    save_generator(first.diffusion, first.cpcp, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["kind"] == "xtalnet-generator"
    second = XtalNetGenerator(tmp_path / "run", seed=3, steps=TINY_GENERATOR["steps"])
    condition = torch.randn(first.cpcp.shared_dim)
    a, b = first.sample(condition, "Mg2O2", 3), second.sample(condition, "Mg2O2", 3)
    for x, y in zip(a, b):
        assert np.allclose(x.lattice.matrix, y.lattice.matrix) and np.allclose(x.frac_coords, y.frac_coords)
    assert first.rank(condition, a) == pytest.approx(second.rank(condition, b))
    assert not np.allclose(first.sample(condition, "Mg2O2", 1)[0].frac_coords, a[0].frac_coords)  # stream continues
    with pytest.raises(ValueError):
        XtalNetGenerator(tmp_path / "run", cpcp=TINY_GENERATOR["cpcp"])
    with pytest.raises(ValueError):
        second.sample(None, "MgO", 2)  # a conditioned model needs its condition


def test_training_on_a_cache_selects_on_validation(mp20_cache, cpcp_run, tmp_path):
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
    generator = XtalNetGenerator(tmp_path / "gen", steps=5)
    assert generator.diffusion.cond_dim == generator.cpcp.shared_dim
    peaks = mp20_cache.peaks(int(mp20_cache.indices("test")[0]))
    condition = generator.embed_pattern(peaks)
    assert condition.shape == (generator.cpcp.shared_dim,)
    assert torch.linalg.vector_norm(condition).item() == pytest.approx(1.0, abs=1e-5)
    candidates = generator.sample(condition, mp20_cache.structure(int(mp20_cache.indices("test")[0])).composition, 2)
    assert len(candidates) == 2 and len(generator.rank(condition, candidates)) == 2
