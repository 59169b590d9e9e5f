"""Generator runs, retrieval and generation scores, `xrdcore generate` and the generation task of the
harness, with a small generator written here: it embeds a pattern as its intensity-weighted
histogram of peak positions, draws candidates from a library of structures with the composition
(built from the training split by ``fit``), and ranks them by how well their simulated pattern
matches."""

import json

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

import xrdcore
from xrdcore.bench.generation import GenerationSettings, merge_options, run_generation_bench
from xrdcore.diffraction.pxrd import peak_list
from xrdcore.generation import (
    GeneratorRunError,
    fit_generator,
    generate,
    hit_rates,
    load_generator,
    score_generation,
    score_retrieval,
)
from xrdcore.hookspecs import hookimpl
from xrdcore.interfaces import Generator
from xrdcore.registry import Registry

EDGES = np.arange(5.0, 91.0, 1.0)


def histogram(peaks) -> torch.Tensor:
    counts, _ = np.histogram(peaks.two_theta, bins=EDGES, weights=peaks.intensity)
    return torch.tensor(counts, dtype=torch.float32)


class LibraryGenerator(Generator):
    """Candidates: library structures of the same composition (cycled), plus ``invalid`` broken ones."""

    def __init__(self, invalid: int = 0):
        self.invalid, self.library = invalid, {}

    def fit(self, cache, out, *, device="cpu", seed=0, progress=False):
        entries = [cache.structure(int(i)) for i in cache.indices("train")]
        out.mkdir(parents=True)
        (out / "library.json").write_text(json.dumps([s.as_dict() for s in entries]))
        self.load(out)
        return {"structures": len(entries)}

    def load(self, out, *, device="cpu"):
        self.library = {}
        for data in json.loads((out / "library.json").read_text()):
            self.add(Structure.from_dict(data))

    def add(self, structure):
        self.library.setdefault(structure.composition.formula, []).append(structure)

    def embed_patterns(self, peaks):
        return torch.stack([histogram(p) for p in peaks])

    def embed_structures(self, structures):
        return torch.stack([histogram(peak_list(s)) for s in structures])

    def sample(self, condition, composition, n):
        found = self.library.get(composition.formula, [])
        broken = Structure(Lattice.cubic(3.0), ["Na", "Na"], [[0, 0, 0], [0.01, 0, 0]], properties={"valid": False})
        good = [found[i % len(found)].copy() for i in range(n - self.invalid)] if found else []
        return [broken] * (n - len(good)) + good

    def rank(self, condition, candidates):
        scores = []
        for c in candidates:
            if not c.properties.get("valid", True):
                scores.append(1e9)  # ranked first on purpose: invalid candidates never match
                continue
            scores.append(float(torch.nn.functional.cosine_similarity(condition, self.embed_structures([c])[0], 0)))
        return scores


class LibraryPlugin:
    @hookimpl
    def register_generators(self, register):
        register("library", LibraryGenerator, tiny={"invalid": 1})


def registry() -> Registry:
    r = Registry(entry_points=[])
    r.add_plugin("library", LibraryPlugin())
    return r


def test_hit_rates_count_ties_against_the_true_pair():
    similarity = torch.tensor([[0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.3, 0.8, 0.7]])
    assert hit_rates(similarity, (1, 2, 3)) == {"top1": 1 / 3, "top2": 1.0, "top3": 1.0}
    with pytest.raises(ValueError, match="square, non-empty"):
        hit_rates(similarity[:2])


def test_options_merge_nested_settings_into_a_variant():
    tiny = {"training": {"epochs": 10, "lr": 1e-3}, "steps": 10}
    assert merge_options(tiny, {"training": {"epochs": 100}, "steps": 5}) == \
        {"training": {"epochs": 100, "lr": 1e-3}, "steps": 5}
    assert tiny == {"training": {"epochs": 10, "lr": 1e-3}, "steps": 10}


def test_generation_scores_use_ranked_candidates_at_both_tolerances(mp20_cache):
    generator = LibraryGenerator(invalid=1)
    test = [mp20_cache.structure(int(i)) for i in mp20_cache.indices("test")]
    for structure in test:
        generator.add(structure)
    scores = score_generation(generator, mp20_cache, "test", n_candidates=3, ks=(1, 2, 3))
    assert scores["n"] == len(test) and scores["validity"] == pytest.approx(2 / 3)
    for setting in ("paper", "code"):
        assert scores[setting]["top1"]["match_rate"] == 0.0  # the invalid candidate is ranked first
        assert scores[setting]["top2"]["match_rate"] == 1.0 and scores[setting]["top2"]["mean_rmse"] < 1e-6
    assert scores["paper"]["tolerance"] == {"stol": 0.7, "angle_tol": 5.0, "ltol": 0.2}
    assert scores["code"]["tolerance"] == {"stol": 0.9, "angle_tol": 10.0, "ltol": 0.3}
    with pytest.raises(ValueError, match="every k must be between 1 and the number of candidates"):
        score_generation(generator, mp20_cache, "test", n_candidates=3, ks=(5,))
    retrieval = score_retrieval(generator, mp20_cache, "test", ks=(1, len(test)))
    assert retrieval["n"] == len(test) and retrieval[f"top{len(test)}"] == 1.0 and retrieval["top1"] >= 0.5


def test_a_generator_run_is_fitted_once_reloaded_and_protected(mp20_cache, tmp_path):
    reg = registry()
    run = tmp_path / "run"
    fitted = fit_generator("library", mp20_cache, run, seed=1, registry=reg)
    record = json.loads((run / "config.json").read_text())
    assert record["generator"]["qualified_name"] == "library:library" and record["seed"] == 1
    assert json.loads((run / "fit.json").read_text()) == {"structures": len(mp20_cache.indices("train"))}
    loaded, _ = load_generator(run, registry=reg)
    assert loaded.library.keys() == fitted.library.keys()
    with pytest.raises(GeneratorRunError, match="other settings or data"):
        fit_generator("library", mp20_cache, run, seed=2, registry=reg)
    (run / "fit.json").unlink()
    with pytest.raises(GeneratorRunError, match="unfinished generator run"):
        load_generator(run, registry=reg)
    with pytest.raises(GeneratorRunError, match="not an xrdcore generator run"):
        load_generator(tmp_path, registry=reg)


def test_generate_writes_ranked_cifs_for_a_measured_pattern(mp20_cache, tmp_path):
    reg = registry()
    fit_generator("library", mp20_cache, tmp_path / "run", registry=reg)
    target = mp20_cache.structure(int(mp20_cache.indices("train")[0]))
    simulator = xrdcore.create_simulator("pxrd", grid={"step": 0.02})
    profile = simulator.simulate([target])[0].numpy()
    pattern = tmp_path / "pattern.xy"
    pattern.write_text("\n".join(f"{t:.3f} {y:.6f}" for t, y in zip(simulator.grid.values, profile)))
    rows = generate(tmp_path / "run", pattern, target.composition.formula, 4, tmp_path / "candidates", registry=reg)
    ranking = json.loads((tmp_path / "candidates" / "ranking.json").read_text())
    assert [r["rank"] for r in ranking["candidates"]] == [1, 2, 3, 4] and ranking["candidates"] == rows
    best = next(r for r in rows if r["valid"])
    assert Structure.from_file(tmp_path / "candidates" / best["file"]).matches(target)
    assert sum(r["valid"] for r in rows) == len(list((tmp_path / "candidates").glob("*.cif")))
    with pytest.raises(ValueError, match="is not a chemical formula"):
        generate(tmp_path / "run", pattern, "Xx2", 4, tmp_path / "other", registry=reg)
    with pytest.raises(GeneratorRunError, match="not empty"):
        generate(tmp_path / "run", pattern, target.composition.formula, 4, tmp_path / "candidates", registry=reg)


def test_the_generation_task_fits_scores_and_reports_every_generator(mp20_cache, tmp_path):
    settings = GenerationSettings(quick=True, candidates=2, ks=(1, 2), retrieval_ks=(1, 10, 3), seeds=(0, 1))
    results = run_generation_bench(mp20_cache, tmp_path, settings, device="cpu", progress=False, registry=registry())
    (row,) = results["runs"]
    assert row["generator"] == "library" and all(s["status"] == "complete" for s in row["seeds"].values())
    # the library holds training structures: a test composition among them gets one valid candidate of two
    train = {mp20_cache.structure(int(i)).composition.formula for i in mp20_cache.indices("train")}
    test = [mp20_cache.structure(int(i)).composition.formula for i in mp20_cache.indices("test")]
    assert row["generation"]["validity"]["mean"] == pytest.approx(np.mean([f in train for f in test]) / 2)
    assert row["retrieval"]["top1"]["n"] == 2
    markdown = (tmp_path / "results.md").read_text()
    assert "## Retrieval" in markdown and "## Generation" in markdown and "| library | code |" in markdown
    assert "| generator | top1 | top3 | top10 |" in markdown  # in the order of k
    assert results["settings"]["quick"] is True and results["data"]["split_hash"] == mp20_cache.manifest["split_hash"]
    again = run_generation_bench(mp20_cache, tmp_path, settings, device="cpu", progress=False, registry=registry(),
                                 resume=True)
    assert again["runs"] == results["runs"]


def test_generation_settings_are_checked_before_any_fit():
    from xrdcore.bench.generation import GenerationSettings

    for bad, message in (({"candidates": 0}, "candidates"), ({"max_atoms": -3}, "max_atoms"),
                         ({"limit": 0}, "limit"), ({"seeds": (-1,)}, "seed")):
        with pytest.raises(ValueError, match=message):
            GenerationSettings(**bad)
    assert GenerationSettings(max_atoms=None, limit=5).limit == 5
