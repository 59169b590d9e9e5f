"""Shared by the core's tests: small input settings and a tiny model trained on the MP-20 sample
(``mp20_cache``, from the repository's conftest.py)."""

import pytest

#: a fast, small input: 5–90° at 0.05° (1,700 points), Gaussian peaks
TINY_INPUT = {"two_theta": (5.0, 90.0, 0.05)}
TINY_RCNET = {"blocks": 2, "kernel_size": 5, "channels": (8,)}


@pytest.fixture(scope="session")
def tiny_run(mp20_cache, tmp_path_factory):
    """A finished run: a two-block RCNet with every hierarchy level, three epochs."""
    from xrdcore.train import InputSpec, TrainConfig, train

    config = TrainConfig("rcnet", hierarchy="multilevel", encoder_options=TINY_RCNET,
                         input=InputSpec(**TINY_INPUT), epochs=3, batch_size=8, warmup_epochs=1)
    out = tmp_path_factory.mktemp("runs") / "rcnet"
    train(config, mp20_cache, out, device="cpu", progress=False)
    return out
