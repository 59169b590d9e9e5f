"""The mamba encoder through xrdcore's public API: the paper's sizes, other grids, ablations, angle
tokens, arguments, learning (its conformance is the core's kit: test_conformance.py)."""

import pytest
import torch

import xrdcore
from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid

NAME = "xrd-mamba:mamba"
QUICK_GRID = {"grid": AngleGrid(step=0.05)}  # 1,700 points, as in xrdcore bench --quick


def spread(length: int) -> AngleGrid:
    """The default 2θ range in ``length`` points."""
    return AngleGrid(step=85.0 / length)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Many small ops: on a busy two-core machine OpenMP's spin-waiting makes two threads up to 50×
    slower than one, and these tests check behaviour, not speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    return xrdcore.get_registry().get("encoder", NAME).tiny


def profiles(batch, length, seed=0):
    """Relative intensities (max 1) with a few sharp peaks."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, length, generator=g) ** 8
    return x / x.amax(1, keepdim=True)


def test_defaults_are_the_paper_model():
    encoder = xrdcore.create_encoder(NAME)
    assert encoder.grid == DEFAULT_GRID and encoder.input_length == DEFAULT_GRID.length
    assert encoder.embed_dim == 1024 and len(encoder.cnn) == 13 and len(encoder.blocks) == 8
    mixer = encoder.blocks[0]
    assert mixer.state_size == 16 and mixer.dt_rank == 1 and mixer.conv.kernel_size == (4,)
    assert mixer.in_proj.out_features == 2 * 2 * 8  # expand 2, k 8, plus the gate
    ssm_parameters = sum(p.numel() for p in encoder.blocks.parameters())
    assert 5_000 < ssm_parameters < 20_000  # the paper's SSM part is ~10K; the CNN dominates


@pytest.mark.parametrize("length", [1700, 300])
def test_tiny_variant_handles_other_grids(tiny, length):
    encoder = xrdcore.create_encoder(NAME, grid=spread(length), **tiny)
    out = encoder(profiles(3, length))
    assert out.shape == (3, encoder.embed_dim) and torch.isfinite(out).all()
    out.sum().backward()


@pytest.mark.parametrize("tokens", ["angle", "bin", "intensity"])
@pytest.mark.parametrize("ssm", [True, False])
def test_each_ablation_builds_and_trains(tiny, tokens, ssm):
    encoder = xrdcore.create_encoder(NAME, grid=spread(200), tokens=tokens, ssm=ssm, **tiny)
    assert len(encoder.blocks) == (tiny["depth"] if ssm else 0)
    first_conv_inputs = encoder.cnn[0].body[1].in_channels
    assert first_conv_inputs == (1 if tokens == "intensity" and not ssm else tiny["token_dim"])
    out = encoder(profiles(2, 200))
    out.sum().backward()
    assert torch.isfinite(out).all()


def test_angle_tokens_use_the_normalised_grid_angle():
    encoder = xrdcore.create_encoder(NAME, **QUICK_GRID, depth=1, cnn_channels=(4,))
    angles = encoder.angles.squeeze(1)
    assert angles[0] == 0 and angles[1] == pytest.approx(0.05 / 85) and angles[-1] == pytest.approx(1 - 0.05 / 85)
    x = torch.zeros(1, 1700)
    x[0, 100] = 1.0  # one peak at 10 degrees: one token, its angle embedding; every other token zero
    tokens = encoder.crystal_planes(x)
    expected = encoder.embed.weight[:, 0] * angles[100] + encoder.embed.bias
    torch.testing.assert_close(tokens[0, 100], expected)
    assert tokens[0, :100].abs().sum() == 0


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"tokens": "peaks"}, ValueError, "tokens must be one of 'angle', 'bin', 'intensity'"),
    ({"ssm": "no"}, TypeError, "ssm must be true or false"),
    ({"token_dim": 0}, ValueError, "token_dim must be a positive int"),
    ({"depth": 2.5}, ValueError, "depth must be a positive int"),
    ({"cnn_channels": ()}, ValueError, "cnn_channels must not be empty"),
    ({"cnn_channels": (8, -1)}, ValueError, "each of cnn_channels must be a positive int"),
    ({"grid": {"start": 90.0, "stop": 5.0}}, ValueError, "0 <= start < stop"),
    ({"grid": (5.0, 90.0)}, ValueError, "grid must be an AngleGrid or a mapping"),
    ({"scan_backend": "gpu"}, ValueError, "scan_backend must be one of"),
    ({"scan_chunk_size": 0}, ValueError, "scan_chunk_size must be a positive int"),
])
def test_bad_arguments_raise_clear_errors(tiny, kwargs, error, match):
    with pytest.raises(error, match=match):
        xrdcore.create_encoder(NAME, **{**tiny, "grid": spread(100), **kwargs})


def test_wrong_input_shape_names_the_expected_length(tiny):
    encoder = xrdcore.create_encoder(NAME, grid=spread(300), **tiny)
    with pytest.raises(ValueError, match=r"expects \(batch, 300\) profiles.*got \(2, 299\)"):
        encoder(torch.rand(2, 299))
    with pytest.raises(ValueError, match=r"expects \(batch, 300\) profiles"):
        encoder(torch.rand(2, 1, 300))


def test_a_few_steps_with_a_linear_head_lower_the_loss(tiny):
    """Tiny synthetic task: is the single peak in the low- or the high-angle half of the grid?"""
    torch.manual_seed(0)
    length, n = 120, 64
    positions = torch.randint(0, length, (n,))
    x = torch.zeros(n, length)
    x[torch.arange(n), positions] = 1.0
    y = (positions >= length // 2).long()
    encoder = xrdcore.create_encoder(NAME, grid=spread(length), **tiny)
    head = torch.nn.Linear(encoder.embed_dim, 2)
    optimiser = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(head(encoder(x)), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5, losses
