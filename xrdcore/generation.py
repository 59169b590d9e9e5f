"""Pattern-conditioned structure generation: generator runs, retrieval and generation scores, and
ranked candidates for a measured pattern (``xrdcore train-generator``, ``xrdcore generate``).

A generator run directory::

    config.json    the generator (name, plugin, version, options), seed, data, environment
    model/         what the generator's ``fit`` wrote (its own format)
    fit.json       written when ``fit`` returned: what the training did (a run without it is unfinished)

Scores. *Retrieval*: every pattern of a split against every structure of the split (contrastive
generators only): the rank of its own structure, top-k hit rates. *Generation*: for each pattern,
``n`` candidates of its structure's cell content, ranked by the generator; a candidate matches if
pymatgen's StructureMatcher finds it equivalent to the true structure. Two tolerance settings are
always reported, labelled: ``paper`` (stol 0.7, angle_tol 5°, ltol 0.2, as the XtalNet paper states)
and ``code`` (0.9, 10°, 0.3, what its published multi-sample evaluation uses; looser, higher numbers).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xrdcore.data.cache import PeakCache
from xrdcore.storage import atomic_write_json, atomic_write_text, holds_other_files
from xrdcore.validate import positive_int

GENERATOR_RUN_FORMAT = "xrdcore-generator-run/1"
TOLERANCES: dict[str, dict[str, float]] = {"paper": {"stol": 0.7, "angle_tol": 5.0, "ltol": 0.2},
                                           "code": {"stol": 0.9, "angle_tol": 10.0, "ltol": 0.3}}


class GeneratorRunError(ValueError):
    """A generator run that cannot start or be used as asked; the message names the directory."""


def is_valid(structure: Any) -> bool:
    return bool(getattr(structure, "properties", {}).get("valid", True))


def evaluation_indices(cache: PeakCache, split: str, max_atoms: int | None = None,
                       limit: int | None = None) -> np.ndarray:
    """Cache positions of the split's ordered structures with at most ``max_atoms`` atoms (the
    first ``limit`` of them): what retrieval and generation are scored on (a generator draws whole
    atoms; a partially occupied site has no single right answer)."""
    keep = []
    for i in cache.indices(split):
        structure = cache.structure(int(i))
        if structure.is_ordered and (max_atoms is None or len(structure) <= max_atoms):
            keep.append(int(i))
    indices = np.asarray(keep, dtype=np.int64)
    return indices[:limit] if limit is not None else indices


# --- runs ----------------------------------------------------------------------------------------

def fit_generator(name: str, cache: PeakCache, out: str | Path, *, options: dict[str, Any] | None = None,
                  seed: int = 0, device: str = "cpu", progress: bool = False, registry: Any | None = None) -> Any:
    """Build the registered generator ``name`` and fit it on ``cache`` into the run directory
    ``out``; a finished run is loaded instead, an unfinished one fitted again from scratch (a
    generator's own files are its business), a directory of other settings refused."""
    from xrdcore import get_registry
    from xrdcore.environment import environment

    registry = registry or get_registry()
    out = Path(out)
    component = registry.get("generator", name)
    options = json.loads(json.dumps(options or {}))
    plugin = registry.plugins[component.plugin]
    record = {"format": GENERATOR_RUN_FORMAT, "seed": seed, "data": cache.describe(),
              "generator": {"name": name, "qualified_name": component.qualified_name, "plugin": plugin.name,
                            "version": plugin.version, "options": options}}
    generator = registry.create("generator", name, **options)
    if (out / "config.json").exists():
        stored = json.loads((out / "config.json").read_text())
        mine = {k: stored.get(k) for k in ("seed", "generator")}
        if mine != {k: record[k] for k in ("seed", "generator")} or stored["data"]["key"] != record["data"]["key"]:
            raise GeneratorRunError(f"{out}: holds a generator run of other settings or data; choose another directory")
        if (out / "fit.json").exists():
            generator.load(out / "model", device=device)
            return generator
    elif holds_other_files(out):
        raise GeneratorRunError(f"{out}: exists and is not a generator run directory")
    atomic_write_json(out / "config.json", {**record, "environment": environment(torch.device(device), registry)})
    model = out / "model"
    if model.exists():  # an interrupted fit: start it again
        import shutil

        shutil.rmtree(model)
    fitted = generator.fit(cache, model, device=device, seed=seed, progress=progress)
    atomic_write_json(out / "fit.json", fitted)
    return generator


def load_generator(run_dir: str | Path, device: str = "cpu", registry: Any | None = None) -> tuple[Any, dict]:
    """The generator of a finished run (its plugin must be installed) and the run's config."""
    from xrdcore import get_registry

    run_dir = Path(run_dir)
    try:
        record = json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        record = {}
    if record.get("format") != GENERATOR_RUN_FORMAT:
        raise GeneratorRunError(f"{run_dir}: not an xrdcore generator run (no {GENERATOR_RUN_FORMAT} config.json)")
    if not (run_dir / "fit.json").exists():
        raise GeneratorRunError(f"{run_dir}: unfinished generator run (no fit.json); run it again to finish it")
    spec = record["generator"]
    generator = (registry or get_registry()).create("generator", spec["qualified_name"], **spec["options"])
    generator.load(run_dir / "model", device=device)
    return generator, record


# --- scores --------------------------------------------------------------------------------------

def hit_rates(similarity: torch.Tensor, ks: Sequence[int] = (1, 3, 5, 10)) -> dict[str, float]:
    """Top-k hit rates of a square similarity matrix whose diagonal holds the true pairs: the
    fraction of rows whose own column is among their k highest (ties count against it)."""
    if similarity.dim() != 2 or similarity.shape[0] != similarity.shape[1] or not len(similarity):
        raise ValueError(f"hit rates need a square, non-empty similarity matrix, got shape {tuple(similarity.shape)}")
    own = similarity.diagonal()
    rank = (similarity > own[:, None]).sum(1) + (similarity == own[:, None]).sum(1) - 1  # 0: first
    return {f"top{k}": float((rank < k).double().mean()) for k in ks}


@torch.no_grad()
def score_retrieval(generator: Any, cache: PeakCache, split: str = "test", ks: Sequence[int] = (1, 3, 5, 10),
                    max_atoms: int | None = None, batch_size: int = 64) -> dict[str, Any] | None:
    """Top-k hit rates of every pattern of ``split`` against all its structures, or None for a
    generator that does not embed structures."""
    indices = evaluation_indices(cache, split, max_atoms)
    if not len(indices):
        raise ValueError(f"{cache.path}: split {split!r} has no structures to retrieve (max_atoms={max_atoms})")
    patterns, crystals = [], []
    try:
        for start in range(0, len(indices), batch_size):
            chunk = [int(i) for i in indices[start:start + batch_size]]
            patterns.append(generator.embed_patterns([cache.peaks(i) for i in chunk]).float().cpu())
            crystals.append(generator.embed_structures([cache.structure(i) for i in chunk]).float().cpu())
    except NotImplementedError:
        return None
    a = torch.nn.functional.normalize(torch.cat(patterns), dim=1)
    b = torch.nn.functional.normalize(torch.cat(crystals), dim=1)
    return {"split": split, "n": len(indices), "max_atoms": max_atoms, "chance_top1": 1.0 / len(indices),
            **hit_rates(a @ b.T, ks)}


def score_generation(generator: Any, cache: PeakCache, split: str = "test", n_candidates: int = 10,
                     ks: Sequence[int] = (1, 5, 10), *, max_atoms: int | None = None, limit: int | None = None,
                     progress: bool = False) -> dict[str, Any]:
    """For each pattern of ``split`` (``max_atoms``, ``limit``): ``n_candidates`` of its cell
    content, ranked by the generator, matched against the true structure. Per tolerance setting
    and k: the match rate (a valid match among the top k) and the mean normalised RMS distance of
    the best match within the top k over the matched patterns; plus the share of valid candidates."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from tqdm import tqdm

    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1 or ks[-1] > n_candidates:
        raise ValueError(f"every k must be between 1 and the number of candidates ({n_candidates}), got {ks}")
    indices = evaluation_indices(cache, split, max_atoms, limit)
    if not len(indices):
        raise ValueError(f"{cache.path}: split {split!r} has no structures to generate (max_atoms={max_atoms})")
    matchers = {name: StructureMatcher(**tolerance) for name, tolerance in TOLERANCES.items()}
    started, per_pattern, valid, total = time.perf_counter(), [], 0, 0
    for index in tqdm(indices, desc="generation", disable=not progress):
        target = cache.structure(int(index))
        condition = generator.embed_patterns([cache.peaks(int(index))])[0]
        candidates = generator.sample(condition, target.composition, n_candidates)
        order = np.argsort(-np.asarray(generator.rank(condition, candidates), dtype=float), kind="stable")
        ranked = [candidates[int(i)] for i in order]
        good = sum(is_valid(c) for c in ranked)
        valid, total = valid + good, total + len(ranked)
        rms = {name: [_rms(matcher, target, c) for c in ranked] for name, matcher in matchers.items()}
        per_pattern.append({"id": cache.ids[int(index)], "valid": good, "rms": rms})
    scores: dict[str, Any] = {}
    for name in matchers:
        scores[name] = {"tolerance": TOLERANCES[name]}
        for k in ks:
            best = [min((r for r in p["rms"][name][:k] if r is not None), default=None) for p in per_pattern]
            matched = [r for r in best if r is not None]
            scores[name][f"top{k}"] = {"match_rate": len(matched) / len(best),
                                       "mean_rmse": float(np.mean(matched)) if matched else None}
    return {"split": split, "n": len(per_pattern), "candidates": n_candidates, "max_atoms": max_atoms,
            "validity": valid / total, **scores, "per_pattern": per_pattern,
            "seconds": round(time.perf_counter() - started, 2)}


def _rms(matcher: Any, target: Any, candidate: Any) -> float | None:
    if not is_valid(candidate):
        return None
    result = matcher.get_rms_dist(target, candidate)
    return None if result is None else float(result[0])


# --- a measured pattern --------------------------------------------------------------------------

def generate(run_dir: str | Path, pattern_path: str | Path, composition: str, n: int, out: str | Path,
             device: str = "cpu", registry: Any | None = None) -> list[dict[str, Any]]:
    """Candidates for a measured pattern: its peaks (:func:`find_peaks`) condition the run's
    generator, ``n`` structures of ``composition`` (the cell content) are drawn and ranked, and the
    valid ones are written to ``out`` as ``rank01_<formula>_<space group>.cif``, ... with
    ``ranking.json`` (every candidate: rank, score, validity, space group by spglib)."""
    from pymatgen.core import Composition
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from xrdcore.diffraction.peaks import find_peaks
    from xrdcore.diffraction.readers import read_pattern

    positive_int("n", n)
    try:
        parsed = Composition(composition)
    except Exception as exc:  # noqa: BLE001 - pymatgen raises several types for a bad formula
        raise ValueError(f"composition {composition!r} is not a chemical formula: {exc}") from None
    if not parsed.valid or not len(parsed):
        raise ValueError(f"composition {composition!r} is not a chemical formula of real elements")
    composition = parsed
    out = Path(out)
    if holds_other_files(out):
        raise GeneratorRunError(f"{out}: exists and is not empty; choose a new --out")
    generator, _ = load_generator(run_dir, device, registry)
    pattern = read_pattern(pattern_path)
    peaks = find_peaks(pattern.two_theta, pattern.intensity)
    if not len(peaks):
        raise ValueError(f"{pattern.source}: no peaks found in the pattern")
    condition = generator.embed_patterns([peaks])[0]
    candidates = generator.sample(condition, composition, n)
    scores = generator.rank(condition, candidates)
    rows = []
    for rank, i in enumerate(np.argsort(-np.asarray(scores, dtype=float), kind="stable"), 1):
        candidate = candidates[int(i)]
        row: dict[str, Any] = {"rank": rank, "score": float(scores[int(i)]), "valid": is_valid(candidate),
                               "formula": candidate.composition.reduced_formula}
        if row["valid"]:
            number = SpacegroupAnalyzer(candidate, symprec=0.1).get_space_group_number()
            name = re.sub(r"[^A-Za-z0-9]", "", row["formula"])
            row.update(space_group=number, file=f"rank{rank:02d}_{name}_sg{number}.cif")
            atomic_write_text(out / row["file"], candidate.to(fmt="cif"))
        else:
            row["invalid_reason"] = candidate.properties.get("invalid_reason")
        rows.append(row)
    atomic_write_json(out / "ranking.json", {"run": str(Path(run_dir).resolve()), "pattern": str(pattern.source),
                                             "composition": composition.formula, "peaks": len(peaks),
                                             "candidates": rows})
    return rows
