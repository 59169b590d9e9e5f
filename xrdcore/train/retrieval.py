"""A nearest-neighbour head on a trained encoder's embedding: retrieval-augmented classification.

A classifier trained on a few thousand structures of 230 classes forgets what a lookup table
remembers: many test MOFs have a near-twin in training (the same framework, other guests or
solvent). The nearest-neighbour baseline (:mod:`xrdcore.bench.baselines`) exploits that on raw
profiles. This head does it in the model's own embedding: the space groups of the ``k`` training
structures most cosine-similar to a pattern, weighted by a softmax of their similarities, mixed
with the classifier's probabilities as ``w · p_model + (1 − w) · p_neighbours``. ``k`` and ``w``
are chosen on the validation split (the classifier alone, ``w = 1``, is among the choices), then
the test split is scored once. The references are the training structures, never augmented.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xrdcore.metrics import evaluate

#: neighbours and mixing weights tried on the validation split
NEIGHBOURS = (1, 5, 10, 20)
WEIGHTS = tuple(round(w, 1) for w in np.linspace(0, 1, 11))
#: softmax temperature on cosine similarities: the nearest of ten neighbours weighs most when it
#: is clearly nearer (similarities differ by a few hundredths between close relatives)
TEMPERATURE = 0.05


def embed(model: Any, data: Any, batch_size: int = 256, autocast: Any = contextlib.nullcontext
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-length embeddings and space-group probabilities of a whole split, in order, on the CPU."""
    from xrdcore.train.model import class_logits

    was_training = model.training
    model.eval()
    embeddings, probabilities = [], []
    with torch.no_grad():
        for rows in torch.split(torch.arange(len(data)), batch_size):
            inputs, _ = data.batch(rows)
            with autocast():
                shared, logits = model(inputs)
            embeddings.append(torch.nn.functional.normalize(shared.float().flatten(1), dim=1).cpu())
            probabilities.append(torch.softmax(class_logits(logits["space_group"]).float(), dim=1).cpu())
    model.train(was_training)
    return torch.cat(embeddings), torch.cat(probabilities)


def neighbour_probabilities(queries: torch.Tensor, references: torch.Tensor, reference_groups: np.ndarray,
                            k: int, temperature: float = TEMPERATURE) -> torch.Tensor:
    """``(N, 230)`` space-group probabilities from the ``k`` most similar references (unit vectors)."""
    k = min(k, len(references))
    similarity, index = (queries @ references.T).topk(k, dim=1)
    groups = torch.as_tensor(np.asarray(reference_groups) - 1, dtype=torch.long)[index]
    return torch.zeros(len(queries), 230).scatter_add_(1, groups, torch.softmax(similarity / temperature, dim=1))


def retrieval_scores(model: Any, splits: Mapping[str, Any], seed: int,
                     autocast: Any = contextlib.nullcontext) -> dict[str, Any]:
    """The head chosen on ``splits["val"]`` with references ``splits["train"]``, and the metrics of
    :func:`xrdcore.metrics.evaluate` on val and test (with the test predictions, for paired tests)."""
    references, _ = embed(model, splits["train"], autocast=autocast)
    train_sg = splits["train"].space_groups.cpu().numpy()
    scored = {}
    for split in ("val", "test"):
        queries, model_p = embed(model, splits[split], autocast=autocast)
        scored[split] = (model_p, {k: neighbour_probabilities(queries, references, train_sg, k) for k in NEIGHBOURS},
                         splits[split].space_groups.cpu().numpy())

    def mixed(split: str, k: int, w: float) -> torch.Tensor:
        model_p, neighbours, _ = scored[split]
        return w * model_p + (1 - w) * neighbours[k]

    true_val = scored["val"][2]
    # the best validation top-1; ties go to the classifier (larger w), then to fewer neighbours
    k, w = max(((k, w) for k in NEIGHBOURS for w in WEIGHTS),
               key=lambda kw: (float((mixed("val", *kw).argmax(1).numpy() + 1 == true_val).mean()), kw[1], -kw[0]))
    result: dict[str, Any] = {"neighbours": k, "weight": w, "temperature": TEMPERATURE,
                              "references": len(references)}
    for split in ("val", "test"):
        probabilities, true = mixed(split, k, w).numpy(), scored[split][2]
        metrics = evaluate(probabilities, true, train_sg=train_sg, seed=seed)
        metrics["predictions"] = {"true": true.tolist(), "top1": (probabilities.argmax(1) + 1).tolist()}
        result[split] = metrics
    return result


def add_to_finished_run(run_dir: Any, cache: Any, device: str = "cpu") -> dict[str, Any]:
    """Score the neighbour head of a run finished before runs recorded it, from its best weights,
    and add it to its metrics.json (written atomically); a run that has it is left as it is."""
    import json
    from pathlib import Path

    from xrdcore.storage import atomic_write_json
    from xrdcore.train.trainer import load_run, resolve_device, run_splits

    path = Path(run_dir) / "metrics.json"
    metrics = json.loads(path.read_text())
    if "retrieval" not in metrics:
        model, config, _ = load_run(run_dir, device=device)
        splits, _ = run_splits(config, cache, Path(run_dir), device=resolve_device(device), registry=None, inputs=None)
        metrics["retrieval"] = retrieval_scores(model, splits, config.seed)
        atomic_write_json(path, metrics)
    return metrics["retrieval"]
