"""CPCP: the symmetric InfoNCE (formula and gradcheck), the clamped temperature, its peak input
(the core's), training on a real cache (what is trained, selected and scored on), retrieval as the
harness scores it, learning, storage."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from xrdcore.generation import hit_rates, score_retrieval

from xrd_xtalnet.cpcp import (
    CPCP,
    CPCPConfig,
    cpcp_config,
    info_nce,
    load_cpcp,
    retrieval_hit_rates,
    save_cpcp,
    similarity,
    train_cpcp,
)
from xrd_xtalnet.crystals import to_structure
from xrd_xtalnet.pairs import pattern_inputs, split_pairs
from xrd_xtalnet.plugin import TINY_CPCP


def _explicit_info_nce(p, c, scale):
    p = p / p.norm(dim=1, keepdim=True)
    c = c / c.norm(dim=1, keepdim=True)
    total = 0.0
    n = len(p)
    for i in range(n):
        row = [float(scale * p[i] @ c[j]) for j in range(n)]
        col = [float(scale * p[j] @ c[i]) for j in range(n)]
        total += -row[i] + math.log(sum(math.exp(v) for v in row))
        total += -col[i] + math.log(sum(math.exp(v) for v in col))
    return total / (2 * n)


def test_info_nce_is_the_symmetric_clip_loss():
    g = torch.Generator().manual_seed(0)
    p, c = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(5, 7, generator=g, dtype=torch.float64)
    assert info_nce(p, c, 3.0).item() == pytest.approx(_explicit_info_nce(p, c, 3.0), rel=1e-12)
    assert info_nce(p, c, 3.0).item() == pytest.approx(info_nce(c, p, 3.0).item(), rel=1e-12)  # symmetric
    assert info_nce(p, p, 50.0).item() < 1e-3 < info_nce(p, c, 50.0).item()
    with pytest.raises(ValueError):
        info_nce(p, c[:4], 1.0)


def test_info_nce_gradients_pass_gradcheck():
    g = torch.Generator().manual_seed(1)
    p = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(info_nce, (p, c, scale), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradgradcheck(info_nce, (p, c, scale), eps=1e-6, atol=1e-6)


def test_temperature_starts_at_clip_value_and_is_clamped():
    model = CPCP(**TINY_CPCP)
    assert model.scale.item() == pytest.approx(1 / 0.07)
    with torch.no_grad():
        model.log_scale.fill_(10.0)
    assert model.scale.item() == pytest.approx(100.0)  # clamped in the forward pass
    model.clamp_()
    assert model.log_scale.item() == pytest.approx(math.log(100.0))  # and in the parameter
    with pytest.raises(ValueError):
        CPCP(**{**TINY_CPCP, "temperature": 0.001})


def test_peak_input_is_the_cores_for_cache_peak_lists(mp20_cache):
    from xrdcore.diffraction.profile import PeakBatch
    from xrdcore.train.inputs import InputSpec

    peaks = [mp20_cache.peaks(int(i)) for i in mp20_cache.indices("train")[:5]]
    ours, core = pattern_inputs(peaks), InputSpec(kind="peaks").make(PeakBatch.from_peak_lists(peaks))
    assert ours.keys() == core.keys()
    for key in ours:
        assert ours[key].dtype == core[key].dtype and torch.equal(ours[key], core[key]), key
    low, high = mp20_cache.manifest["spec"]["two_theta_range"]
    ranged = pattern_inputs(peaks, two_theta_range=(low, high))  # the cache's own range changes nothing
    assert all(torch.allclose(ranged[k].float(), ours[k].float()) for k in ours)


def test_training_selects_on_validation_and_scores_test_once(cpcp_run, mp20_cache):
    out, results = cpcp_run
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert json.loads((out / "results.json").read_text())["selected_epoch"] == results["selected_epoch"]
    history = results["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    best = min(history, key=lambda h: h["val_loss"])
    assert results["selected_epoch"] == best["epoch"] and results["val"]["loss"] == best["val_loss"]
    assert results["pairs"]["test"]["kept"] == len(mp20_cache.indices("test")) == results["test"]["n"]
    assert results["data"]["split_hash"] == mp20_cache.manifest["split_hash"]
    model = load_cpcp(out)
    again = retrieval_hit_rates(model, mp20_cache, "test", max_atoms=20)
    assert {k: again[k] for k in ("top1", "top3", "top5", "top10", "n")} == \
        {k: results["test"][k] for k in ("top1", "top3", "top5", "top10", "n")}
    assert all(h["scale"] <= 100.0 for h in history)


def test_the_harness_scores_the_same_retrieval_through_the_generator(cpcp_run, mp20_cache):
    """The core's score_retrieval, through the generator's embed_patterns/embed_structures (peak
    lists and structures one by one), agrees with CPCP's own split retrieval."""
    from xrd_xtalnet.diffusion import CrystalDiffusion
    from xrd_xtalnet.generator import XtalNetGenerator

    out, results = cpcp_run
    model = load_cpcp(out)
    generator = XtalNetGenerator.from_models(CrystalDiffusion(denoiser={"cond_dim": model.shared_dim}), model)
    scored = score_retrieval(generator, mp20_cache, "test", ks=(1, 3, 5, 10), max_atoms=20)
    assert scored["n"] == results["test"]["n"]
    for k in ("top1", "top3", "top5", "top10"):
        assert scored[k] == pytest.approx(results["test"][k]), k


def test_generator_options_build_the_cpcp_config():
    config = cpcp_config({"shared_dim": 8}, {"epochs": 2, "lr": 0.01}, max_atoms=12, seed=4)
    assert (config.shared_dim, config.epochs, config.lr, config.max_atoms, config.seed) == (8, 2, 0.01, 12, 4)
    for model, training in (({"dim": 8}, {}), ({}, {"seed": 1}), ({}, {"max_atoms": 3})):
        with pytest.raises(ValueError):
            cpcp_config(model, training)


def test_structures_over_the_atom_limit_are_dropped_and_counted(mp20_cache):
    sizes = [len(mp20_cache.structure(int(i))) for i in mp20_cache.indices("train")]
    pairs = split_pairs(mp20_cache, "train", max_atoms=8)
    assert pairs.counts()["dropped_too_many_atoms"] == sum(n > 8 for n in sizes) > 0
    assert len(pairs) == sum(n <= 8 for n in sizes)
    assert all(len(c[2]) <= 8 for c in pairs.crystals)
    with pytest.raises(ValueError):
        split_pairs(mp20_cache, "train", max_atoms=0)


def test_cpcp_learns_to_pair_patterns_with_their_structures(mp20_cache):
    """A few dozen full-batch steps on 12 real pairs: retrieval among them goes from chance to
    near perfect (a model that ignored either input could not)."""
    torch.manual_seed(0)
    pairs = split_pairs(mp20_cache, "train", max_atoms=20)
    rows = list(range(12))
    x, crystals = pairs.patterns(rows), pairs.crystal_batch(rows)
    model = CPCP(**{**TINY_CPCP, "pxrd": {**TINY_CPCP["pxrd"], "dropout": 0.0}})
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(50):
        loss = model(x, crystals)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        model.clamp_()
    model.eval()
    with torch.no_grad():
        rates = hit_rates(model.embed_patterns(x) @ model.embed_crystals(crystals).T, (1, 3))  # the core's
    assert rates["top1"] >= 0.75, rates


def test_save_load_round_trip_and_similarity(tmp_path, mp20_cache):
    torch.manual_seed(0)
    model = CPCP(**TINY_CPCP).eval()
    save_cpcp(model, tmp_path / "m")
    loaded = load_cpcp(tmp_path / "m")
    pairs = split_pairs(mp20_cache, "val")
    x, crystals = pairs.patterns([0, 1]), pairs.crystal_batch([0, 1])
    with torch.no_grad():
        assert torch.equal(loaded.embed_patterns(x), model.embed_patterns(x))
        assert torch.equal(loaded.embed_crystals(crystals), model.embed_crystals(crystals))
    structures = [pairs.structure(0), pairs.structure(1)]
    bad = to_structure(np.eye(3) * 4.0, np.array([[0, 0, 0], [0.01, 0, 0]]), np.array([11, 17]))
    condition = model.embed_patterns(x)[0].detach()
    scores = similarity(model, condition, [structures[0], bad, structures[1]])
    with torch.no_grad():
        expected = (model.embed_crystals(crystals) @ condition).tolist()
    assert scores[1] == -math.inf
    assert scores[0] == pytest.approx(expected[0], abs=1e-6) and scores[2] == pytest.approx(expected[1], abs=1e-6)
    from xrdcore.train.checkpoint import CheckpointError

    with pytest.raises(CheckpointError):
        load_cpcp(tmp_path / "missing")
    with pytest.raises(FileExistsError):
        train_cpcp(mp20_cache, tmp_path / "m", CPCPConfig(**TINY_CPCP))
