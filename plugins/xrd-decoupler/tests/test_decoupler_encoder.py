"""The ``decoupler`` encoder: conformance through the registry (tiny variant), the paper's sizes
by default, the sin θ channel, empty-patch masking, any length, and clear errors."""

from __future__ import annotations

import math

import pytest
import torch
import xrdcore
from xrdcore.diffraction.grid import AngleGrid
from xrdcore.interfaces import Encoder

from xrd_decoupler.encoder import DecouplerEncoder, sinusoidal_positions

NAME = "xrd-decoupler:decoupler"


def spread(length: int) -> AngleGrid:
    """The default 2θ range in ``length`` points."""
    return AngleGrid(step=85.0 / length)


def tiny(grid: AngleGrid | int, **overrides) -> DecouplerEncoder:
    grid = spread(grid) if isinstance(grid, int) else grid
    kwargs = {**xrdcore.get_registry().get("encoder", NAME).tiny, "grid": grid, **overrides}
    return xrdcore.create_encoder(NAME, **kwargs)


def sticks(b: int, length: int, seed: int = 0, peaks: int = 6) -> torch.Tensor:
    """Stick patterns: a few peaks, zero elsewhere, max 1 (as in the published input)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(b, length)
    for i in range(b):
        where = torch.randint(0, length, (peaks,), generator=g)
        x[i, where] = torch.rand(peaks, generator=g) + 0.05
        x[i] /= x[i].max()
    return x


@pytest.mark.parametrize("length", [1700, 1703, 999, 45, 7])
def test_conformance_of_the_tiny_variant_at_any_length(length):
    torch.manual_seed(0)
    encoder = tiny(length)
    assert isinstance(encoder, Encoder) and encoder.input_kind == "profile"
    assert encoder.contract_errors() == []
    x = sticks(4, length)
    out = encoder(x)
    assert out.shape == (4, encoder.embed_dim) and torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    encoder.eval()
    with torch.no_grad():
        assert torch.equal(encoder(x), encoder(x))


def test_defaults_are_the_papers_sizes():
    encoder = xrdcore.create_encoder(NAME)
    assert encoder.input_length == 8500 and encoder.embed_dim == 64
    assert (encoder.grid.start, encoder.grid.stop) == (5.0, 90.0)
    assert encoder.grid.step == pytest.approx(0.01)
    glob = encoder.global_
    assert glob.patch_size == 10 and glob.d_model == 32 and len(glob.transformer.layers) == 2
    assert glob.patch_conv[0].out_channels == 16 and glob.patch_linear.out_features == 15
    assert encoder.local.project.out_features == 32
    encoder.eval()
    with torch.no_grad():
        out = encoder(sticks(2, 8500))
    assert out.shape == (2, 64) and torch.isfinite(out).all()


def test_sin_theta_channel_comes_from_the_grid():
    encoder = tiny(AngleGrid(step=0.05))
    angles = 5.0 + 0.05 * torch.arange(1700, dtype=torch.float64)
    expected = torch.sin(torch.deg2rad(angles / 2)).float()  # θ = 2θ / 2, the Bragg angle
    torch.testing.assert_close(encoder.local.sin_theta, expected)
    assert encoder.local.sin_theta[0].item() == pytest.approx(math.sin(math.radians(2.5)), rel=1e-6)
    # the angle is an input: the same pattern on another grid gives another local embedding
    torch.manual_seed(0)
    a = tiny(AngleGrid(5.0, 55.0, 0.5)).eval()
    torch.manual_seed(0)
    b = tiny(AngleGrid(40.0, 90.0, 0.5)).eval()
    x = sticks(2, 100)
    with torch.no_grad():
        assert not torch.allclose(a.local(x), b.local(x))
        torch.testing.assert_close(a.global_(x), b.global_(x))  # the global module sees intensity only


def test_empty_patches_are_masked_as_documented():
    encoder = tiny(100, patch_size=10, empty_threshold=1e-3)
    x = torch.zeros(3, 100)
    x[0, 5] = 1.0          # patch 0
    x[0, 47] = 0.5         # patch 4
    x[0, 71] = 5e-4        # patch 7: below the threshold, still empty
    x[1, :] = 0.2          # nothing empty
    mask = encoder.global_.empty_mask(x)  # row 2 is blank: its first patch is kept as the one key
    expected = torch.ones(3, 10, dtype=torch.bool)
    expected[0, [0, 4]] = False
    expected[1] = False
    expected[2, 0] = False
    assert torch.equal(mask, expected)
    assert encoder.global_.patches(torch.arange(25.0)[None]).shape == (1, 3, 10)  # last patch padded


def test_masked_patches_do_not_change_the_global_embedding():
    torch.manual_seed(0)
    encoder = tiny(200, patch_size=10).eval()
    x = sticks(3, 200, peaks=4)
    with torch.no_grad():
        reference = encoder.global_(x)
        # values below the threshold inside empty patches are ignored entirely ...
        quiet = x.clone()
        empty = encoder.global_.empty_mask(x).repeat_interleave(10, dim=1)
        quiet[empty] = 4e-4
        torch.testing.assert_close(encoder.global_(quiet), reference, rtol=1e-5, atol=1e-6)
        # ... and so are empty patches appended at the end (any length works)
        longer = torch.cat([x, torch.zeros(3, 57)], dim=1)
        torch.testing.assert_close(encoder.global_(longer), reference, rtol=1e-5, atol=1e-6)
        # ... and the patterns it is batched with do not matter (empty patches are dropped per batch)
        for i in range(3):
            torch.testing.assert_close(encoder.global_(x[i:i + 1]), reference[i:i + 1], rtol=1e-5, atol=1e-6)
        dense = torch.cat([x[:1], torch.rand(1, 200)])
        torch.testing.assert_close(encoder.global_(dense)[:1], reference[:1], rtol=1e-5, atol=1e-6)


def test_blank_and_nearly_blank_patterns_stay_finite():
    encoder = tiny(300)
    x = torch.zeros(4, 300)
    x[1, 17] = 1.0
    out = encoder(x)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters() if p.grad is not None)


def test_sinusoidal_positions():
    codes = sinusoidal_positions(5, 7)
    assert codes.shape == (5, 7)
    torch.testing.assert_close(codes[0], torch.tensor([0.0, 1, 0, 1, 0, 1, 0]))
    assert codes[3, 0].item() == pytest.approx(math.sin(3.0))
    assert codes[3, 1].item() == pytest.approx(math.cos(3.0))
    assert codes[2, 2].item() == pytest.approx(math.sin(2 / 1e4 ** (2 / 7)), rel=1e-6)


def test_bad_inputs_are_clear_errors():
    encoder = tiny(200)
    with pytest.raises(ValueError, match=r"expects a \(B, L\) profile tensor, got shape \(2, 200, 1\)"):
        encoder(torch.rand(2, 200, 1))
    with pytest.raises(ValueError, match="input_length=200 but got profiles of length 250"):
        encoder(torch.rand(2, 250))
    with pytest.raises(TypeError, match="profile tensor"):
        encoder([[0.0] * 200])
    assert encoder(torch.ones(2, 200, dtype=torch.int64)).dtype == torch.float32


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="grid must be an AngleGrid or a mapping"):
        xrdcore.create_encoder(NAME, grid=(5.0, 90.0, 0.05))
    with pytest.raises(ValueError, match="unknown 2θ grid fields 'width'"):
        xrdcore.create_encoder(NAME, grid={"width": 0.05})
    small = spread(100)
    with pytest.raises(ValueError, match="divisible by heads=5"):
        xrdcore.create_encoder(NAME, grid=small, heads=5)
    with pytest.raises(ValueError, match="local_channels"):
        xrdcore.create_encoder(NAME, grid=small, local_channels=())
    with pytest.raises(ValueError, match="patch_size"):
        xrdcore.create_encoder(NAME, grid=small, patch_size=0)
    with pytest.raises(ValueError, match="dropout"):
        xrdcore.create_encoder(NAME, grid=small, dropout=1.0)
    with pytest.raises(xrdcore.ComponentError, match="accepts"):
        xrdcore.create_encoder(NAME, patch=10)
    assert xrdcore.create_encoder(NAME, grid={"step": 0.05}).input_length == 1700  # as JSON settings give it
