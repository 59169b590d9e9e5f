"""The two baselines that need no learning, on the same split as every model: the majority class,
and a nearest-neighbour lookup of the test pattern among the training patterns. A model that does
not beat the first has learned nothing; one that does not beat the second has learned less than a
lookup table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from xrdcore.crystal.spacegroups import N_SPACE_GROUPS
from xrdcore.data.cache import PeakCache
from xrdcore.diffraction.profile import PeakBatch
from xrdcore.train.inputs import RECIPE_GRID, InputSpec

#: the lookup's input, chosen on CoRE MOF validation top-1 (docs/training.md): peaks broadened to a
#: FWHM of 0.6° on the recipe's 2θ range and step, uniform in 2θ, and log intensities, so that
#: near-misses in peak position and weak peaks both count
NEAREST_NEIGHBOUR_INPUT = InputSpec(grid=replace(RECIPE_GRID, axis="two_theta"), caglioti=(0.0, 0.0, 0.36),
                                    intensity="log", augment="none")


def majority_scores(train_sg: np.ndarray, n: int) -> np.ndarray:
    """Scores (n, 230) of always answering the training split's class frequencies."""
    frequency = np.bincount(np.asarray(train_sg) - 1, minlength=N_SPACE_GROUPS).astype(float)
    return np.tile(frequency / frequency.sum(), (n, 1))


def nearest_neighbour_scores(cache: PeakCache, train: np.ndarray, query: np.ndarray,
                             spec: InputSpec = NEAREST_NEIGHBOUR_INPUT, batch: int = 512) -> np.ndarray:
    """Scores (len(query), 230): for each space group, the highest cosine similarity between the
    query's profile and any training profile of that group (-1 for groups absent from training),
    so top-k ranks the groups of the k most similar distinct training patterns."""
    reference = _profiles(cache, train, spec, batch)
    reference = torch.nn.functional.normalize(reference, dim=1)
    groups = torch.as_tensor(cache.space_groups[train] - 1)
    scores = np.full((len(query), N_SPACE_GROUPS), -1.0, dtype=np.float32)
    for start in range(0, len(query), batch):
        rows = query[start:start + batch]
        similarity = torch.nn.functional.normalize(_profiles(cache, rows, spec, batch), dim=1) @ reference.T
        best = torch.full((len(rows), N_SPACE_GROUPS), -1.0)
        best.scatter_reduce_(1, groups.expand(len(rows), -1), similarity, "amax", include_self=True)
        scores[start:start + len(rows)] = best.numpy()
    return scores


def _profiles(cache: PeakCache, rows: np.ndarray, spec: InputSpec, batch: int) -> torch.Tensor:
    return torch.cat([spec.make(PeakBatch.from_peak_lists([cache.peaks(int(i)) for i in rows[s:s + batch]]))
                      for s in range(0, len(rows), batch)])


def baseline_predictions(cache: PeakCache, train: np.ndarray, test: np.ndarray,
                         spec: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Both baselines' score matrices on ``test``, keyed ``majority`` and ``nearest_neighbour``."""
    lookup = InputSpec.from_dict(spec) if spec is not None else NEAREST_NEIGHBOUR_INPUT
    return {"majority": majority_scores(cache.space_groups[train], len(test)),
            "nearest_neighbour": nearest_neighbour_scores(cache, train, test, lookup)}
