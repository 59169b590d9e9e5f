"""PyxtalRandomGenerator: placements in centred groups (primitive and conventional readings of the
cell content), its retrieval classifier over the training library, failures reported as invalid
candidates, and fit/load."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from xrd_xtalnet.baseline import PyxtalRandomGenerator, compatible_space_groups, placements, primitive_cell
from xrd_xtalnet.crystals import is_valid
from xrd_xtalnet.plugin import TINY_BASELINE

PAPER = {"stol": 0.7, "angle_tol": 5, "ltol": 0.2}


def _rock_salt():
    half = 5.64 / 2
    return Structure(Lattice([[0, half, half], [half, 0, half], [half, half, 0]]), ["Na", "Cl"],
                     [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_placements_read_the_cell_content_as_primitive_then_conventional():
    assert placements("NaCl", 225) == [4]  # Fm-3m: a primitive cell (1 + 1 atoms) only
    assert placements("Na4", 225) == [4, 1]  # 16 atoms in the conventional cell, or 4 (4a)
    assert placements("Na4Cl4", 225) == [1]  # 16 + 16 do not fit the conventional cell; 4a + 4b do
    assert placements("Na3Cl", 229) == [2]  # Im-3m: 6b + 2a in the conventional cell
    assert placements("NaCl", 1) == [1] and placements("Na5Cl", 225) == []
    assert placements("Si2", 227) == [4]  # diamond: 8a in the conventional cell
    assert compatible_space_groups("NaCl", [225, 229, 1, 221]) == [225, 1, 221]
    with pytest.raises(ValueError):
        compatible_space_groups("NaCl", [231])


@pytest.mark.parametrize("group, species, counts", [(225, ["Na", "Cl"], [4, 4]), (166, ["Bi"], [6]),
                                                    (139, ["Si", "O"], [2, 4]), (38, ["O"], [4]), (15, ["O"], [8])])
def test_primitive_cell_of_a_centred_conventional_cell(group, species, counts):
    """The fixed centring transformation gives the cell with 1/f of the atoms, the same crystal."""
    import warnings

    from pyxtal import pyxtal

    crystal = pyxtal()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crystal.from_random(3, group, species, counts, random_state=7)
    conventional = crystal.to_pymatgen()
    primitive = primitive_cell(conventional, group)
    factor = {"F": 4, "R": 3}.get(crystal.group.symbol[0], 2)
    assert len(primitive) * factor == len(conventional)
    assert primitive.volume * factor == pytest.approx(conventional.volume)
    assert StructureMatcher(primitive_cell=False, scale=False, attempt_supercell=True).fit(conventional, primitive)


def test_fixed_groups_draw_the_cell_content_and_find_rock_salt():
    """NaCl (a 2-atom primitive cell) in Fm-3m can only be rock salt: every candidate matches it."""
    baseline = PyxtalRandomGenerator(space_groups=[225, 2], sample_seed=0)
    candidates = baseline.sample(None, "NaCl", 4)
    assert [c.composition.formula for c in candidates] == ["Na1 Cl1"] * 4
    assert baseline.last_report["drawn"] == [225, 2, 225, 2]
    assert all(is_valid(c) for c in candidates)
    matcher = StructureMatcher(**PAPER)
    assert [matcher.fit(c, _rock_salt()) for c in candidates[::2]] == [True, True]
    assert [c.properties["cell"] for c in candidates[:2]] == ["primitive", "conventional"]
    again = PyxtalRandomGenerator(space_groups=[225, 2], sample_seed=0).sample(None, "NaCl", 4)
    assert all(np.allclose(a.frac_coords, b.frac_coords) for a, b in zip(candidates, again))  # reproducible


def test_no_fitting_group_gives_invalid_candidates_with_a_reason():
    baseline = PyxtalRandomGenerator(space_groups=[225, 229, 221], sample_seed=0, cpcp=TINY_BASELINE["cpcp"])
    candidates = baseline.sample(None, "Na5Cl", 3)  # 5 + 1 atoms: no Wyckoff set of these cubic groups fits
    assert len(candidates) == 3 and not any(is_valid(c) for c in candidates)
    assert all("Wyckoff positions for Na5 Cl1" in c.properties["invalid_reason"] for c in candidates)
    assert all(c.composition.formula == "Na5 Cl1" for c in candidates)
    assert baseline.rank(torch.randn(baseline.cpcp.shared_dim), candidates) == [-math.inf] * 3
    assert baseline.last_report["placeholders"] == 3
    with pytest.raises(ValueError):
        PyxtalRandomGenerator(space_groups=[0])
    with pytest.raises(RuntimeError, match="fit or load"):
        PyxtalRandomGenerator().sample(torch.zeros(3), "NaCl", 1)  # no library and no fixed groups


@pytest.fixture(scope="module")
def fitted(mp20_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline") / "model"
    baseline = PyxtalRandomGenerator(**TINY_BASELINE)
    facts = baseline.fit(mp20_cache, out, seed=1)
    return baseline, facts, out


def test_fit_stores_the_training_library(fitted, mp20_cache):
    baseline, facts, out = fitted
    assert json.loads(json.dumps(facts)) == facts
    train = [int(i) for i in mp20_cache.indices("train") if len(mp20_cache.structure(int(i))) <= 20]
    assert facts["library"]["structures"] == len(train) == len(baseline.library_space_groups)
    assert baseline.library_space_groups.tolist() == [int(mp20_cache.space_groups[i]) for i in train]
    assert json.loads((out / "library.json").read_text())["ids"] == [mp20_cache.ids[i] for i in train]
    structures = [mp20_cache.structure(i) for i in train]
    assert torch.allclose(baseline.library_embeddings, baseline.embed_structures(structures), atol=1e-6)
    assert set(facts["cpcp"]["pairs"]) == {"train", "val"}  # the test split is not read


def test_classifier_takes_the_groups_of_the_nearest_training_structures(fitted, mp20_cache):
    baseline, _, _ = fitted
    embeddings, groups = baseline.library_embeddings, baseline.library_space_groups
    for row in (0, 5, 11):  # a library structure's own embedding: its group comes first
        ranked = baseline.rank_space_groups(embeddings[row])
        assert ranked[0][0] == groups[row] and ranked[0][1] == pytest.approx(1.0, abs=1e-5)
        assert len({g for g, _ in ranked}) == len(ranked) == len(set(groups.tolist()))
        assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    target = mp20_cache.structure(int(mp20_cache.indices("test")[0]))
    condition = baseline.embed_patterns([mp20_cache.peaks(int(mp20_cache.indices("test")[0]))])[0]
    chosen = baseline.space_groups_for(condition, target.composition)
    fitting = [g for g, _ in baseline.rank_space_groups(condition) if placements(target.composition, g)]
    assert chosen == fitting[:TINY_BASELINE["top_k"]] and len(chosen) == min(5, len(fitting))
    candidates = baseline.sample(condition, target.composition, 6)
    assert len(candidates) == 6 and all(c.composition == target.composition for c in candidates)
    assert set(baseline.last_report["drawn"]) <= set(chosen)
    assert len(baseline.rank(condition, candidates)) == 6


def test_load_restores_the_library_and_model(fitted, mp20_cache):
    baseline, _, out = fitted
    loaded = PyxtalRandomGenerator(**TINY_BASELINE)
    loaded.load(out)
    assert torch.equal(loaded.library_embeddings, baseline.library_embeddings)
    assert np.array_equal(loaded.library_space_groups, baseline.library_space_groups)
    peaks = [mp20_cache.peaks(int(i)) for i in mp20_cache.indices("val")]
    assert torch.equal(loaded.embed_patterns(peaks), baseline.embed_patterns(peaks))
    baseline.load(out)
    condition = loaded.embed_patterns(peaks[:1])[0]
    composition = mp20_cache.structure(int(mp20_cache.indices("val")[0])).composition
    a, b = baseline.sample(condition, composition, 3), loaded.sample(condition, composition, 3)
    assert all(np.allclose(x.frac_coords, y.frac_coords) for x, y in zip(a, b))  # the same stream after load


def test_a_pyxtal_call_that_runs_too_long_is_interrupted():
    import time

    from xrd_xtalnet.baseline import PlacementTimeout, _time_limit

    started = time.perf_counter()
    with pytest.raises(PlacementTimeout, match="no placement within 0.2 s"), _time_limit(0.2):
        time.sleep(5)
    assert time.perf_counter() - started < 2
    with _time_limit(None):  # no limit
        time.sleep(0.01)
    with pytest.raises(ValueError, match="time_limit must be positive"):
        PyxtalRandomGenerator(time_limit=0)
