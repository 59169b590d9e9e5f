"""Scoring pattern-conditioned generation: top-k match rate and RMSE of ranked candidates.

Two StructureMatcher settings are always reported, labelled: ``paper`` (stol 0.7, angle_tol 5°,
ltol 0.2: what the XtalNet paper states) and ``code`` (stol 0.9, angle_tol 10°, ltol 0.3: what
the published code's multi-sample evaluation uses). The looser one gives higher numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xrd_xtalnet.crystals import is_valid
from xrd_xtalnet.pairs import split_pairs

if TYPE_CHECKING:
    import torch
    from xrdcore.data.cache import PeakCache
    from xrdcore.diffraction.pxrd import PeakList
    from xrdcore.interfaces import Generator

__all__ = ["TOLERANCES", "evaluate_generation", "match_ranks"]

TOLERANCES: dict[str, dict[str, float]] = {"paper": {"stol": 0.7, "angle_tol": 5.0, "ltol": 0.2},
                                           "code": {"stol": 0.9, "angle_tol": 10.0, "ltol": 0.3}}


def match_ranks(target, candidates, scores: Sequence[float], matcher) -> list[float | None]:
    """Candidates in ranked order (highest score first, ties in sampling order): the normalised RMS
    distance of each to ``target`` under ``matcher``, None where they do not match or are invalid."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    result: list[float | None] = []
    for i in order:
        candidate = candidates[int(i)]
        rms = matcher.get_rms_dist(target, candidate) if is_valid(candidate) else None
        result.append(None if rms is None else float(rms[0]))
    return result


def evaluate_generation(generator: Generator, cache: PeakCache, split: str = "test", n_candidates: int = 10,
                        ks: Sequence[int] = (1, 5, 10), *, max_atoms: int | None = None, limit: int | None = None,
                        condition: Callable[[PeakList], torch.Tensor] | None = None,
                        sample_kwargs: Callable[[int], Mapping[str, Any]] | None = None,
                        progress: bool = False) -> dict[str, Any]:
    """Generate, rank and match for every structure of ``split`` (those with at most ``max_atoms``
    atoms; the first ``limit`` of them if given). Use it on the test split once, with a generator
    selected on the validation split.

    For each structure: the condition is the embedding of its simulated peak list
    (``generator.embed_pattern``, or ``condition(peak_list)``); ``n_candidates`` are drawn with its
    cell content as composition (``generator.sample``, plus ``sample_kwargs(cache_index)``, e.g.
    ``{"space_groups": top_k}`` for the pyxtal baseline); they are ordered by ``generator.rank``;
    the top k (k in ``ks``, each at most ``n_candidates``) are compared with the true structure.

    Returns ``{setting: {"top{k}": {"match_rate", "mean_rmse"}}}`` for the two settings of
    :data:`TOLERANCES` — match rate: the fraction of structures with a matching valid candidate
    among the top k; mean RMSE: StructureMatcher's RMS distance (normalised by (V/N)^{1/3}) of the
    best match within the top k, averaged over the structures with one (None if none) — plus
    ``validity`` (fraction of all candidates that are valid crystals), ``n_structures``, the
    dropped counts, ``per_structure`` (id, valid candidates, ranked RMS per setting) and timing.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from tqdm import tqdm

    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1 or ks[-1] > n_candidates:
        raise ValueError(f"every k must be between 1 and n_candidates={n_candidates}, got {ks}")
    pairs = split_pairs(cache, split, max_atoms)
    rows = range(len(pairs) if limit is None else min(limit, len(pairs)))
    if not len(rows):
        raise ValueError(f"split {split!r} has no structures to evaluate")
    embed = condition or getattr(generator, "embed_pattern", None)
    if embed is None:
        raise ValueError("the generator has no embed_pattern; pass condition=")
    matchers = {name: StructureMatcher(**tol) for name, tol in TOLERANCES.items()}
    started = time.perf_counter()
    per_structure, valid_count, total = [], 0, 0
    for row in tqdm(rows, desc="generation", disable=not progress):
        index = int(pairs.indices[row])
        target = pairs.structure(row)
        pattern = embed(pairs.peak_lists([row])[0])
        extra = dict(sample_kwargs(index)) if sample_kwargs is not None else {}
        candidates = generator.sample(pattern, target.composition, n_candidates, **extra)
        scores = generator.rank(pattern, candidates)
        valid = sum(is_valid(c) for c in candidates)
        valid_count, total = valid_count + valid, total + len(candidates)
        per_structure.append({"id": cache.ids[index], "valid": valid,
                              **{name: match_ranks(target, candidates, scores, m) for name, m in matchers.items()}})
    results: dict[str, Any] = {}
    for name in matchers:
        results[name] = {"tolerance": TOLERANCES[name]}
        for k in ks:
            best = [min((r for r in s[name][:k] if r is not None), default=None) for s in per_structure]
            matched = [r for r in best if r is not None]
            results[name][f"top{k}"] = {"match_rate": len(matched) / len(best),
                                        "mean_rmse": float(np.mean(matched)) if matched else None}
    results.update({"split": split, "n_structures": len(per_structure), "n_candidates": n_candidates,
                    "validity": valid_count / total if total else math.nan,
                    **{f"dropped_{k}": v for k, v in pairs.dropped.items()}, "max_atoms": max_atoms,
                    "per_structure": per_structure, "seconds": round(time.perf_counter() - started, 2)})
    return results
