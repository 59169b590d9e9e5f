"""Space groups held out of training and ranked by reference embeddings; per-view heads."""

import numpy as np
import pytest
import torch

from conftest import TINY_INPUT, TINY_RCNET
from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid
from xrdcore.hookspecs import hookimpl
from xrdcore.interfaces import Encoder
from xrdcore.registry import Registry
from xrdcore.train import InputSpec, TrainConfig, build_model, train
from xrdcore.train.model import class_logits, level_loss
from xrdcore.train.unseen import choose_holdout, holdout_indices, reference_scores


def test_holdout_is_fixed_by_the_data_and_keeps_held_out_groups_out_of_training(mp20_cache):
    chosen = choose_holdout(mp20_cache, 2)
    assert chosen == choose_holdout(mp20_cache, 2) and len(chosen) == 2
    parts = holdout_indices(mp20_cache, chosen)
    sg = mp20_cache.space_groups
    for split in ("train", "val", "test"):
        assert not np.isin(sg[parts[split]], chosen).any()
    assert set(sg[parts["reference"]]) == set(chosen) and set(sg[parts["unseen"]]) <= set(chosen)
    everything = np.concatenate([parts[k] for k in ("train", "val", "test", "reference", "unseen")])
    assert sorted(everything) == sorted(np.concatenate([mp20_cache.indices(s) for s in ("train", "val", "test")]))
    # references come from train/val, queries from test: the split keeps duplicates apart
    assert set(parts["unseen"]) <= set(mp20_cache.indices("test"))
    assert choose_holdout(mp20_cache, 0) == [] and holdout_indices(mp20_cache, []).keys() == {"train", "val", "test"}
    with pytest.raises(ValueError, match="cannot hold out 40 space groups"):
        choose_holdout(mp20_cache, 40)
    with pytest.raises(ValueError, match="1 do not qualify"):
        choose_holdout(mp20_cache, [1, *chosen])


def test_reference_scores_sum_cosine_similarity_over_views():
    # two classes, two views: class 7 points along e0 in view 0 and e1 in view 1; class 9 the reverse
    e0, e1 = torch.eye(2)
    references = torch.stack([torch.stack([e0, e1]), torch.stack([2 * e0, e1]), torch.stack([e1, e0])])
    queries = torch.stack([torch.stack([e0, e1]), torch.stack([e1, e0]), torch.stack([e0, e0])])
    scores = reference_scores(queries, references, [7, 7, 9], [7, 9])
    assert torch.allclose(scores, torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))


def test_a_run_with_held_out_space_groups_ranks_them_against_references(mp20_cache, tmp_path):
    config = TrainConfig("rcnet", hierarchy="multilevel", encoder_options=TINY_RCNET, input=InputSpec(**TINY_INPUT),
                         epochs=2, batch_size=8, warmup_epochs=1, holdout_space_groups=2)
    result = train(config, mp20_cache, tmp_path / "run", device="cpu", progress=False)
    unseen = result["unseen"]
    held = choose_holdout(mp20_cache, 2)
    assert unseen["space_groups"] == held and unseen["classes"] == 2 and unseen["views"] == 1
    assert unseen["queries"] == len(holdout_indices(mp20_cache, held)["unseen"])
    assert set(unseen["predictions"]["top1"]) <= set(held) and unseen["top5"] == 1.0  # 2 classes: top-5 is all
    assert 0.0 <= unseen["top1"] <= 1.0
    assert not set(result["test"]["predictions"]["true"]) & set(held)  # the classification test excludes them
    with pytest.raises(ValueError, match="holdout_space_groups must be a count"):
        TrainConfig("rcnet", holdout_space_groups=[0, 300])


class TwoViewEncoder(Encoder):
    """Two views of a profile (its halves) through one shared linear layer."""

    input_kind = "profile"

    def __init__(self, grid: AngleGrid = DEFAULT_GRID, width: int = 8):
        super().__init__()
        self.views, self.half = 2, grid.length // 2
        self.shared = torch.nn.Linear(self.half, width)
        self.embed_dim = 2 * width

    def view_embeddings(self, batch):
        halves = torch.stack([batch[:, :self.half], batch[:, self.half:2 * self.half]], dim=1)
        return torch.relu(self.shared(halves))

    def forward(self, batch):
        return self.view_embeddings(batch).flatten(1)


class TwoViewPlugin:
    @hookimpl
    def register_encoders(self, register):
        register("two-view", TwoViewEncoder)


def two_view_registry() -> Registry:
    registry = Registry(entry_points=[])
    registry.add_plugin("two-view", TwoViewPlugin())
    return registry


def test_per_view_heads_sum_the_views_losses_and_logits(mp20_cache, tmp_path):
    registry = two_view_registry()
    config = TrainConfig("two-view", hierarchy="multilevel", heads="per-view", input=InputSpec(**TINY_INPUT),
                         epochs=4, batch_size=8, warmup_epochs=1, lr=3e-3)
    model, _ = build_model(config, registry)
    x = torch.rand(5, InputSpec(**TINY_INPUT).grid.length)
    embedding, logits = model(x)
    assert embedding.shape == (5, 16) and logits["space_group"].shape == (5, 2, 230)
    assert all(len(heads) == 2 for heads in model.heads.values())
    views = model.encoder.view_embeddings(x)
    first = model.heads["space_group"][0](views[:, 0]) + model.heads["space_group"][1](views[:, 1])
    assert torch.allclose(class_logits(logits["space_group"]), first, atol=1e-6)
    target = torch.tensor([0, 1, 2, 3, 4])
    expected = sum(torch.nn.functional.cross_entropy(logits["space_group"][:, v], target) for v in range(2))
    assert torch.allclose(level_loss(logits["space_group"], target), expected)
    result = train(config, mp20_cache, tmp_path / "run", device="cpu", progress=False, registry=registry)
    losses = [h["train_loss"] for h in result["history"]]
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="heads must be one of"):
        TrainConfig("two-view", heads="each")

