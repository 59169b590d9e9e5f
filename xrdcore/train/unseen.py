"""Space groups a model never saw: held out of training, then ranked by reference embeddings.

A trained encoder embeds a *reference* set of structures of the held-out groups; a query is
scored against each held-out group by the cosine similarity of its embedding to the group's mean
reference embedding, summed over the encoder's views (MSDN: the three zone axes). References are
the held-out structures of the cache's train and validation splits, queries those of its test
split, so no query has a duplicate among the references (the split de-duplicates).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xrdcore.data.cache import PeakCache


def choose_holdout(cache: PeakCache, request: int | Sequence[int]) -> list[int]:
    """The space groups to hold out: ``request`` numbers as given, or that many chosen (seeded by
    the split hash, so every run on the same data holds out the same groups) among the groups
    with references (train or val) and queries (test)."""
    reference = set(cache.space_groups[np.concatenate([cache.indices("train"), cache.indices("val")])].tolist())
    query = set(cache.space_groups[cache.indices("test")].tolist())
    eligible = sorted(reference & query)
    if isinstance(request, int):
        if request == 0:
            return []
        if request < 2 or request > len(eligible):
            raise ValueError(f"{cache.path}: cannot hold out {request} space groups: {len(eligible)} have structures "
                             f"both in train/val (references) and test (queries); ask for 2 to {len(eligible)}")
        rng = np.random.default_rng(int(cache.manifest["split_hash"].rsplit(":", 1)[-1][:12], 16))
        return sorted(int(sg) for sg in rng.choice(eligible, size=request, replace=False))
    chosen = sorted({int(sg) for sg in request})
    missing = [sg for sg in chosen if sg not in eligible]
    if missing or len(chosen) < 2:
        raise ValueError(f"{cache.path}: held-out space groups need references (train/val) and queries (test); "
                         f"{', '.join(map(str, missing)) or 'fewer than 2 given'} do not qualify")
    return chosen


def holdout_indices(cache: PeakCache, holdout: Sequence[int]) -> dict[str, np.ndarray]:
    """Cache positions of every split without the held-out groups, plus ``reference`` and ``unseen``."""
    held = np.isin(cache.space_groups, np.asarray(list(holdout), dtype=np.int64))
    parts = {split: cache.indices(split) for split in ("train", "val", "test")}
    out = {split: idx[~held[idx]] for split, idx in parts.items()}
    if len(holdout):
        out["reference"] = np.sort(np.concatenate([parts["train"][held[parts["train"]]],
                                                   parts["val"][held[parts["val"]]]]))
        out["unseen"] = parts["test"][held[parts["test"]]]
    return out


@torch.no_grad()
def view_embeddings(model: Any, data: Any, batch_size: int = 256,
                    autocast: Any = contextlib.nullcontext) -> torch.Tensor:
    """``(N, V, D)`` float32 embeddings of a whole split (eval mode), on the CPU."""
    was_training = model.training
    model.eval()
    parts = []
    for rows in torch.split(torch.arange(len(data)), batch_size):
        inputs, _ = data.batch(rows)
        with autocast():
            parts.append(model.encoder.view_embeddings(inputs).float().cpu())
    model.train(was_training)
    return torch.cat(parts)


def reference_scores(queries: torch.Tensor, references: torch.Tensor, reference_labels: Sequence[int],
                     classes: Sequence[int]) -> torch.Tensor:
    """``(N, K)``: for each query ``(N, V, D)`` and class, the cosine similarity to the class's mean
    normalised reference embedding, summed over the V views."""
    labels = torch.as_tensor(np.asarray(reference_labels), dtype=torch.long)
    refs = F.normalize(references.float(), dim=-1)
    centroids = torch.stack([refs[labels == c].mean(0) for c in classes])  # (K, V, D)
    return torch.einsum("nvd,kvd->nk", F.normalize(queries.float(), dim=-1), F.normalize(centroids, dim=-1))


def score_unseen(model: Any, reference: Any, unseen: Any, holdout: Sequence[int],
                 autocast: Any = contextlib.nullcontext) -> dict[str, Any]:
    """Top-1 and top-5 accuracy of ranking the held-out space groups for every unseen query."""
    classes = sorted(set(reference.space_groups.tolist()))
    queries = view_embeddings(model, unseen, autocast=autocast)
    scores = reference_scores(queries, view_embeddings(model, reference, autocast=autocast),
                              reference.space_groups.cpu().numpy(), classes)
    true = unseen.space_groups.cpu().numpy()
    ranked = np.asarray(classes)[torch.argsort(scores, dim=1, descending=True).numpy()]
    hits = ranked == true[:, None]
    return {"space_groups": [int(sg) for sg in holdout], "classes": len(classes), "references": len(reference),
            "queries": len(true), "views": int(queries.shape[1]),
            "top1": float(hits[:, :1].any(1).mean()) if len(true) else None,
            "top5": float(hits[:, :5].any(1).mean()) if len(true) else None,
            "chance_top1": 1.0 / len(classes),
            "predictions": {"true": true.tolist(), "top1": ranked[:, 0].tolist()}}
