"""The built-in baselines' own behaviour: published sizes at the default grid, minimum lengths, any
other grid, clear shape and argument errors; and every encoder's ``small`` variant. What every
encoder must do (shapes, gradients, determinism, training, checkpoints) is the test kit's
``check_encoder``, run over all of them in test_conformance.py."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import xrdcore
import xrdcore.testing as kit
from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid
from xrdcore.train.inputs import InputSpec

#: expected parameter-count ranges at default sizes (the default grid's 8,500 points)
DEFAULT_PARAMS = {
    "mlp": (45e6, 55e6),        # 8500*4000 + 4000*3000 + 3000*1000 + 1000*800 ≈ 49.8M
    "cnn": (3e6, 8e6),          # flatten 80*13 → 2300 → 1150 ≈ 5.5M
    "nopoolcnn": (25e6, 40e6),  # flatten 80*152 → 2300 dominates ≈ 31M
    "rcnet": (2e6, 8e6),        # kernel-30 convs, widths 16..128 ≈ 5.0M
}
BUILTINS = ["cnn", "mlp", "nopoolcnn", "rcnet"]


def grid(points: int) -> AngleGrid:
    """The default 2θ range in ``points`` points."""
    return replace(DEFAULT_GRID, step=(DEFAULT_GRID.stop - DEFAULT_GRID.start) / points)


def tiny(name: str, points: int, **overrides) -> xrdcore.interfaces.Encoder:
    """The registered tiny variant on a grid of ``points`` points, built as a run builds it."""
    return kit.build_encoder(name, spec=InputSpec(grid=grid(points)), **overrides)


def test_builtins_are_registered_with_descriptions():
    registry = xrdcore.get_registry()
    for name in BUILTINS:
        component = registry.get("encoder", name)
        assert component.builtin and component.plugin == "xrdcore"
        assert isinstance(component.target, str) or callable(component.target)
        assert len(component.description) > 20


@pytest.mark.parametrize("name", BUILTINS)
def test_default_size_construction(name):
    encoder = xrdcore.create_encoder(name)
    n = sum(p.numel() for p in encoder.parameters())
    low, high = DEFAULT_PARAMS[name]
    assert low <= n <= high, f"{name}: {n:,} parameters"
    encoder.eval()
    with torch.no_grad():
        assert encoder(torch.rand(2, DEFAULT_GRID.length)).shape == (2, encoder.embed_dim)


def test_default_embedding_sizes():
    assert xrdcore.create_encoder("mlp", grid=grid(200)).embed_dim == 800
    assert xrdcore.create_encoder("cnn").embed_dim == 1150
    assert xrdcore.create_encoder("nopoolcnn", grid=grid(1000)).embed_dim == 1150
    assert xrdcore.create_encoder("rcnet", grid=grid(100)).embed_dim == 128


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("points", [100, 333, 8500])
def test_builtins_work_at_any_reasonable_length(name, points):
    # the tiny cnn needs >= 388 points; smaller kernels and strides reach 100
    overrides = {"kernels": (4, 4, 3), "strides": (2, 2, 1)} if name == "cnn" else {}
    encoder = tiny(name, points, **overrides).eval()
    with torch.no_grad():
        assert encoder(torch.rand(2, points)).shape == (2, encoder.embed_dim)


@pytest.mark.parametrize("name, minimum", [("cnn", 3500), ("nopoolcnn", 945)])
def test_too_short_input_names_the_minimum_length(name, minimum):
    with pytest.raises(ValueError, match=f"minimum length is {minimum}"):
        xrdcore.create_encoder(name, grid=grid(minimum - 1))
    encoder = xrdcore.create_encoder(name, grid=grid(minimum), hidden=(8,)).eval()
    assert encoder.min_length == minimum
    with torch.no_grad():
        assert encoder(torch.rand(1, minimum)).shape == (1, 8)


@pytest.mark.parametrize("name", BUILTINS)
def test_bad_shapes_are_clear_errors(name):
    encoder = tiny(name, 400)
    with pytest.raises(ValueError, match=r"expects a \(B, L\) profile tensor, got shape \(2, 400, 1\)"):
        encoder(torch.rand(2, 400, 1))
    with pytest.raises(ValueError, match="profile tensor, got shape"):
        encoder(torch.rand(400))
    with pytest.raises(TypeError, match="profile tensor"):
        encoder([[0.0] * 400])


@pytest.mark.parametrize("name", ["mlp", "cnn", "nopoolcnn"])
def test_fixed_length_models_reject_another_length(name):
    with pytest.raises(ValueError, match="input_length=400 but got profiles of length 450; build it with"):
        tiny(name, 400)(torch.rand(2, 450))


def test_rcnet_takes_any_length_and_downsamples_every_other_block():
    encoder = tiny("rcnet", 200).eval()
    with torch.no_grad():
        assert encoder(torch.rand(2, 250)).shape == (2, 16)
        assert encoder(torch.rand(2, 7)).shape == (2, 16)
    full = xrdcore.create_encoder("rcnet")
    strides = [b.conv1.conv.stride[0] for b in full.blocks]
    assert len(strides) == 16 and strides == [1, 2] * 8
    assert {b.conv1.conv.kernel_size[0] for b in full.blocks} == {30}
    widths = [b.conv2.conv.out_channels for b in full.blocks]
    assert widths == sorted(widths) and widths[0] < widths[-1]


def test_mlp_uses_the_published_hidden_sizes_and_dropout():
    encoder = xrdcore.create_encoder("mlp", grid=grid(300))
    linears = [m for m in encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (300, 4000), (4000, 3000), (3000, 1000), (1000, 800)]
    assert any(isinstance(m, torch.nn.Dropout) for m in encoder.modules())


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="hidden"):
        xrdcore.create_encoder("mlp", grid=grid(100), hidden=())
    with pytest.raises(ValueError, match="dropout"):
        xrdcore.create_encoder("mlp", grid=grid(100), hidden=(4,), dropout=1.5)
    with pytest.raises(ValueError, match="one entry per convolution"):
        xrdcore.create_encoder("cnn", kernels=(10, 5), strides=(2,))
    with pytest.raises(ValueError, match="only 2 blocks"):
        xrdcore.create_encoder("rcnet", blocks=2, channels=(4, 8, 16))
    with pytest.raises(xrdcore.ComponentError, match="accepts"):
        xrdcore.create_encoder("rcnet", depth=3)


@pytest.mark.parametrize("name", xrdcore.list_encoders())
def test_every_encoder_has_a_small_variant_that_trains_on_the_default_input(name):
    """``--size small`` is what the CoRE MOF reference leaderboard trains: every encoder, built-in
    or plugin, registers one, and it takes a training step on the default input of its kind."""
    from xrdcore.bench.harness import BenchSettings, Combination, run_config
    from xrdcore.train import build_model

    registry = xrdcore.get_registry()
    component = registry.get("encoder", name)
    assert component.small is not None, f"{name} registers no small variant"
    settings = BenchSettings(encoders=name, size="small")
    config = run_config(Combination(name, "flat", "sum"), 0, settings, registry)
    if config.input.kind == "images":  # the small images, smaller: one step is all this test takes
        options = {**dict(config.input.simulator_options), "size": 32}
        config.input = replace(config.input, simulator_options=options)
    model, description = build_model(config, registry)
    for key, value in component.small.items():
        assert description["encoder"]["kwargs"][key] == value
    batch, labels = kit.sample_batch(config.input, 4)
    _, logits = model(batch)
    loss = torch.nn.functional.cross_entropy(logits["space_group"], labels - 1)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)
