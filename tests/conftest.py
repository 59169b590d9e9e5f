"""Shared fixtures: a small real data set (46 MP-20 structures) built into a peak cache once per
test session, and a tiny model trained on it, for the training, benchmark and predict tests."""

import os
from pathlib import Path

import pytest

# spinning OpenMP threads slow small models 30-50x on a busy machine (set before torch loads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DATA = Path(__file__).with_name("data")

#: a fast, small input: 5–90° at 0.05° (1,700 points), Gaussian peaks
TINY_INPUT = {"two_theta": (5.0, 90.0, 0.05)}
TINY_RCNET = {"blocks": 2, "kernel_size": 5, "channels": (8,)}


@pytest.fixture(scope="session")
def mp20_cache(tmp_path_factory):
    from xrdcore.data.cache import BuildSpec, build_cache

    spec = BuildSpec("csv", {"path": str(DATA / "mp20_sample.csv")})
    return build_cache(tmp_path_factory.mktemp("mp20") / "cache", spec, progress=False)


@pytest.fixture(scope="session")
def tiny_run(mp20_cache, tmp_path_factory):
    """A finished run: a two-block RCNet with every hierarchy level, three epochs."""
    from xrdcore.train import InputSpec, TrainConfig, train

    config = TrainConfig("rcnet", hierarchy="multilevel", encoder_options=TINY_RCNET,
                         input=InputSpec(**TINY_INPUT), epochs=3, batch_size=8, warmup_epochs=1)
    out = tmp_path_factory.mktemp("runs") / "rcnet"
    train(config, mp20_cache, out, device="cpu", progress=False)
    return out
