"""Conformance tests over every registered encoder (built-in or plugin), plus the built-in baselines'
own checks (sizes at the published defaults, minimum lengths, shape errors)."""

from __future__ import annotations

import inspect

import pytest
import torch
from pymatgen.core import Lattice, Structure

import xrdcore

L = 1000  # 10-60 deg at 0.05 deg
GRID = (10.0, 60.0, 0.05)
IMAGES = {"views": 3, "channels": 3, "image_size": 32}
#: expected parameter-count ranges at default sizes (input_length 8500)
DEFAULT_PARAMS = {
    "mlp": (45e6, 55e6),        # 8500*4000 + 4000*3000 + 3000*1000 + 1000*800 ≈ 49.8M
    "cnn": (3e6, 8e6),          # flatten 80*13 → 2300 → 1150 ≈ 5.5M
    "nopoolcnn": (25e6, 40e6),  # flatten 80*152 → 2300 dominates ≈ 31M
    "rcnet": (2e6, 8e6),        # kernel-30 convs, widths 16..128 ≈ 5.0M
}
NAMES = xrdcore.list_encoders()
BUILTINS = ["cnn", "mlp", "nopoolcnn", "rcnet"]


def _factory(name):
    return xrdcore.get_registry().get("encoder", name).load()


def _build(name, length=L, **overrides):
    """The encoder's registered small variant (``tiny``) at ``length`` points."""
    kwargs = dict(xrdcore.get_registry().get("encoder", name).tiny, **overrides)
    parameters = inspect.signature(_factory(name)).parameters
    if "input_length" in parameters:
        kwargs.setdefault("input_length", length)
    for key, value in IMAGES.items():
        if key in parameters:
            kwargs.setdefault(key, value)
    return xrdcore.create_encoder(name, **kwargs)


def _batch(encoder, b=3, length=L):
    torch.manual_seed(0)
    if encoder.input_kind == "profile":
        return torch.rand(b, length)
    if encoder.input_kind == "peaks":
        p = 12
        return {"two_theta": torch.sort(torch.rand(b, p) * 50 + 10).values,
                "intensity": torch.rand(b, p), "mask": torch.arange(p).expand(b, p) < 8}
    if encoder.input_kind == "images":
        return torch.rand(b, IMAGES["views"], IMAGES["channels"], IMAGES["image_size"], IMAGES["image_size"])
    pytest.skip(f"no generic test input for input kind {encoder.input_kind!r}")


def _n_params(module):
    return sum(p.numel() for p in module.parameters())


# the real data: three structure types, several cell sizes each ------------------------------------
def _nacl(a):
    return Structure(Lattice.cubic(a), ["Na"] * 4 + ["Cl"] * 4,
                     [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                      [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])


def _cscl(a):
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [.5, .5, .5]])


def _si(a):
    fcc = [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]]
    return Structure(Lattice.cubic(a), ["Si"] * 8, fcc + [[x + .25, y + .25, z + .25] for x, y, z in fcc])


@pytest.fixture(scope="module")
def patterns():
    """(profiles (12, L), labels): NaCl Fm-3m, CsCl Pm-3m, Si Fd-3m at four lattice constants each."""
    makers = [(_nacl, 5.64), (_cscl, 4.12), (_si, 5.43)]
    structures, labels = [], []
    for label, (make, a) in enumerate(makers):
        for scale in (0.97, 0.99, 1.01, 1.03):
            structures.append(make(a * scale))
            labels.append(label)
    x = xrdcore.create_simulator("pxrd", two_theta=GRID).simulate(structures)
    assert x.shape == (12, L) and torch.isfinite(x).all()
    return x.float(), torch.tensor(labels)


# conformance over every registered encoder --------------------------------------------------------
def test_builtins_are_registered_with_descriptions():
    registry = xrdcore.get_registry()
    for name in BUILTINS:
        component = registry.get("encoder", name)
        assert component.builtin and component.plugin == "xrdcore"
        assert isinstance(component.target, str) or callable(component.target)
        assert len(component.description) > 20


@pytest.mark.parametrize("name", NAMES)
def test_every_argument_has_a_default(name):
    for p in inspect.signature(_factory(name)).parameters.values():
        assert p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.default is not p.empty, (name, p.name)


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_and_determinism(name):
    torch.manual_seed(0)
    encoder = _build(name)
    assert encoder.contract_errors() == []
    x = _batch(encoder)
    out = encoder(x)
    assert out.shape == (3, encoder.embed_dim) and out.dtype.is_floating_point
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in encoder.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: no gradient for {pname}"
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"
    encoder.eval()
    with torch.no_grad():
        assert torch.equal(encoder(x), encoder(x))
        views = encoder.view_embeddings(x)  # one per view; their concatenation is the embedding
        assert views.dim() == 3 and views.shape[0] == 3 and views.shape[1] * views.shape[2] == encoder.embed_dim
        assert torch.allclose(views.flatten(1), encoder(x), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_a_few_training_steps_separate_real_patterns(name, patterns):
    torch.manual_seed(0)
    encoder = _build(name)
    if encoder.input_kind != "profile":
        pytest.skip(f"training test uses pxrd profiles; {name} takes {encoder.input_kind!r}")
    x, y = patterns
    head = torch.nn.Linear(encoder.embed_dim, 3)
    model = torch.nn.Sequential(encoder, head)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.7 * first, f"{name}: loss {first:.3f} → {last:.3f}"


@pytest.mark.parametrize("name", NAMES)
def test_default_size_construction(name):
    kwargs = {"input_length": 8500} if "input_length" in inspect.signature(_factory(name)).parameters else {}
    encoder = xrdcore.create_encoder(name, **kwargs)
    n = _n_params(encoder)
    low, high = DEFAULT_PARAMS.get(name, (1e3, 5e8))
    assert low <= n <= high, f"{name}: {n:,} parameters"
    if name in BUILTINS:
        encoder.eval()
        with torch.no_grad():
            assert encoder(torch.rand(2, 8500)).shape == (2, encoder.embed_dim)


def test_default_embedding_sizes():
    assert xrdcore.create_encoder("mlp", input_length=200).embed_dim == 800
    assert xrdcore.create_encoder("cnn").embed_dim == 1150
    assert xrdcore.create_encoder("nopoolcnn", input_length=1000).embed_dim == 1150
    assert xrdcore.create_encoder("rcnet", input_length=100).embed_dim == 128


# the built-ins' own behaviour ---------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("length", [100, 333, 8500])
def test_builtins_work_at_any_reasonable_length(name, length):
    # the tiny cnn needs >= 388 points; smaller kernels and strides reach 100
    overrides = {"kernels": (4, 4, 3), "strides": (2, 2, 1)} if name == "cnn" else {}
    encoder = _build(name, length=length, **overrides).eval()
    with torch.no_grad():
        assert encoder(torch.rand(2, length)).shape == (2, encoder.embed_dim)


@pytest.mark.parametrize("name, minimum", [("cnn", 3500), ("nopoolcnn", 945)])
def test_too_short_input_names_the_minimum_length(name, minimum):
    with pytest.raises(ValueError, match=f"minimum length is {minimum}"):
        xrdcore.create_encoder(name, input_length=minimum - 1)
    encoder = xrdcore.create_encoder(name, input_length=minimum, hidden=(8,)).eval()
    assert encoder.min_length == minimum
    with torch.no_grad():
        assert encoder(torch.rand(1, minimum)).shape == (1, 8)


@pytest.mark.parametrize("name", BUILTINS)
def test_bad_shapes_are_clear_errors(name):
    encoder = _build(name, length=400)
    with pytest.raises(ValueError, match=r"expects a \(B, L\) profile tensor, got shape \(2, 400, 1\)"):
        encoder(torch.rand(2, 400, 1))
    with pytest.raises(ValueError, match="profile tensor, got shape"):
        encoder(torch.rand(400))
    with pytest.raises(TypeError, match="profile tensor"):
        encoder([[0.0] * 400])


@pytest.mark.parametrize("name", ["mlp", "cnn", "nopoolcnn"])
def test_fixed_length_models_reject_another_length(name):
    with pytest.raises(ValueError, match="input_length=400 but got profiles of length 450"):
        _build(name, length=400)(torch.rand(2, 450))


def test_rcnet_takes_any_length_and_downsamples_every_other_block():
    encoder = _build("rcnet", length=200).eval()
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
    encoder = xrdcore.create_encoder("mlp", input_length=300)
    linears = [m for m in encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (300, 4000), (4000, 3000), (3000, 1000), (1000, 800)]
    assert any(isinstance(m, torch.nn.Dropout) for m in encoder.modules())


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="hidden"):
        xrdcore.create_encoder("mlp", input_length=100, hidden=())
    with pytest.raises(ValueError, match="dropout"):
        xrdcore.create_encoder("mlp", input_length=100, hidden=(4,), dropout=1.5)
    with pytest.raises(ValueError, match="one entry per convolution"):
        xrdcore.create_encoder("cnn", kernels=(10, 5), strides=(2,))
    with pytest.raises(ValueError, match="only 2 blocks"):
        xrdcore.create_encoder("rcnet", blocks=2, channels=(4, 8, 16))
    with pytest.raises(xrdcore.ComponentError, match="accepts"):
        xrdcore.create_encoder("rcnet", depth=3)


@pytest.mark.parametrize("name", NAMES)
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
    if config.input.kind == "images":
        config.input = type(config.input)(kind="images", simulator=config.input.simulator,
                                          simulator_options={**dict(config.input.simulator_options), "size": 32})
    model, description = build_model(config, registry)
    for key, value in component.small.items():
        assert description["encoder"]["kwargs"][key] == value
    encoder = model.encoder
    length = config.input.grid.length if encoder.input_kind == "profile" else L
    batch = _batch(encoder, b=4, length=length)
    _, logits = model(batch)
    loss = torch.nn.functional.cross_entropy(logits["space_group"], torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)
