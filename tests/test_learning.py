"""Can the pipeline learn at all? A real model fits the labels of 64 real MOFs (cache → rendered
profiles → encoder → heads → loss → optimiser), and the harness flags a model that learned nothing."""

import json

import numpy as np
import pytest
import torch

from xrdcore.data.cache import BuildSpec, build_cache
from xrdcore.train import InputSpec, TrainConfig, load_run, train
from xrdcore.train.inputs import SplitInputs
from xrdcore.train.trainer import predict_scores


@pytest.fixture(scope="module")
def mofs(tmp_path_factory):
    """The first 84 CoRE MOF 2019-ASR entries: 64 training structures after validation and de-duplication."""
    spec = BuildSpec("coremof", limit=84, fractions=(0.85, 0.075, 0.075))
    return build_cache(tmp_path_factory.mktemp("mofs") / "cache", spec, progress=False)


def test_a_real_model_fits_64_real_mofs(mofs, tmp_path):
    import xrdcore

    train_rows = mofs.indices("train")
    assert 60 <= len(train_rows) <= 70
    assert len(np.unique(mofs.space_groups[train_rows])) >= 8  # a real multi-class problem
    small = xrdcore.get_registry().get("encoder", "rcnet").size_options("small")
    config = TrainConfig("rcnet", encoder_options=small, input=InputSpec(grid={"stop": 50.0}),
                         epochs=50, batch_size=16, lr=3e-3, warmup_epochs=2, patience=None, weight_decay=0.0)
    result = train(config, mofs, tmp_path / "run", device="cpu", progress=False)
    steps = 50 * int(np.ceil(len(train_rows) / 16))
    assert steps <= 300 and result["history"][-1]["train_loss"] < 0.1 * result["history"][0]["train_loss"]
    model, config, _ = load_run(tmp_path / "run", which="last")
    inputs = SplitInputs(mofs, "train", config.input, torch.device("cpu"))
    predicted = predict_scores(model, inputs)["space_group"].argmax(1).numpy() + 1
    accuracy = float(np.mean(predicted == mofs.space_groups[train_rows]))
    assert accuracy >= 0.9, f"training accuracy {accuracy:.2f}: the pipeline cannot fit 64 labels"


def test_the_harness_flags_a_model_that_learned_nothing(mp20_cache, tmp_path):
    from xrdcore.bench.harness import BenchSettings, run_bench

    frozen = BenchSettings(encoders="mlp", hierarchies="flat", schedulers="sum", quick=True,
                           training={"epochs": 1, "lr": 1e-9, "batch_size": 8, "warmup_epochs": 0.0},
                           input={"grid": {"step": 0.5}})
    results = run_bench(mp20_cache, tmp_path, frozen, device="cpu", progress=False)
    (row,) = results["runs"]
    assert row["learned"] is False and row["p_vs_majority"] >= 0.05
    assert "learned nothing" in (tmp_path / "results.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["runs"][0]["learned"] is False
