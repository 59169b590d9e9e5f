"""The nearest-neighbour head on a trained encoder's embedding (xrdcore.train.retrieval), on a real run."""

from __future__ import annotations

import json

import numpy as np
import torch

from xrdcore.train import load_run
from xrdcore.train.inputs import SplitInputs
from xrdcore.train.retrieval import NEIGHBOURS, WEIGHTS, embed, neighbour_probabilities


def test_a_finished_run_records_the_head_chosen_on_validation(tiny_run, mp20_cache):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    retrieval = metrics["retrieval"]
    assert retrieval["neighbours"] in NEIGHBOURS and retrieval["weight"] in WEIGHTS
    assert retrieval["references"] == len(mp20_cache.indices("train"))
    true = mp20_cache.space_groups[mp20_cache.indices("test")].tolist()
    assert retrieval["test"]["predictions"]["true"] == true
    top1 = np.mean(np.asarray(retrieval["test"]["predictions"]["top1"]) == np.asarray(true))
    assert retrieval["test"]["top1"] == top1
    # the classifier alone is among the choices: with weight 1 the head answers as the classifier does
    if retrieval["weight"] == 1.0:
        assert retrieval["test"]["predictions"]["top1"] == metrics["test"]["predictions"]["top1"]


def test_each_training_structure_is_its_own_nearest_neighbour(tiny_run, mp20_cache):
    model, config, _ = load_run(tiny_run)
    train = SplitInputs(mp20_cache, "train", config.input, torch.device("cpu"))
    embeddings, probabilities = embed(model, train)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(len(embeddings)), atol=1e-5)
    assert torch.allclose(probabilities.sum(1), torch.ones(len(probabilities)), atol=1e-5)
    groups = mp20_cache.space_groups[mp20_cache.indices("train")]
    # the head's lookup on real vectors (the training profiles themselves, far apart unlike a barely
    # trained model's embeddings): with k = 1 each finds itself, so its own group
    profiles, _ = train.batch(torch.arange(len(train)))
    vectors = torch.nn.functional.normalize(profiles.flatten(1), dim=1)
    nearest = neighbour_probabilities(vectors, vectors, groups, k=1)
    assert torch.allclose(nearest.sum(1), torch.ones(len(nearest)))
    assert (nearest.argmax(1).numpy() + 1 == groups).all()
    # with every reference and a sharp softmax, the weights follow the similarities: the same answer
    spread = neighbour_probabilities(vectors, vectors, groups, k=len(groups), temperature=1e-3)
    assert (spread.argmax(1).numpy() + 1 == groups).all()
    # a query never seen: its answer is a group of the references, weighted by similarity
    held_out = neighbour_probabilities(vectors[:1], vectors[1:], groups[1:], k=3)
    assert set(np.flatnonzero(held_out[0].numpy()) + 1) <= set(groups[1:].tolist())


def test_a_run_finished_before_the_head_existed_gets_the_same_head(tiny_run, mp20_cache, tmp_path):
    import shutil

    from xrdcore.train.retrieval import add_to_finished_run

    old = shutil.copytree(tiny_run, tmp_path / "old")
    metrics = json.loads((old / "metrics.json").read_text())
    recorded = metrics.pop("retrieval")
    (old / "metrics.json").write_text(json.dumps(metrics))
    assert add_to_finished_run(old, mp20_cache) == json.loads(json.dumps(recorded))
    assert json.loads((old / "metrics.json").read_text())["retrieval"] == json.loads(json.dumps(recorded))
