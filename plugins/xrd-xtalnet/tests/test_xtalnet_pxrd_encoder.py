"""PeakTransformer: shapes, masking (padding and empty patterns), order invariance, 2θ bins, the
strongest-peak cut, speed of the tiny variant, and learning space groups from real peaks."""

from __future__ import annotations

import time

import pytest
import torch
from xrdcore.diffraction.grid import AngleGrid

from xrd_xtalnet.pairs import split_pairs
from xrd_xtalnet.plugin import TINY_PXRD
from xrd_xtalnet.pxrd_encoder import PeakTransformer, sinusoidal_codes, strongest_peaks


def _peaks(b=4, p=12, real=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"two_theta": torch.sort(torch.rand(b, p, generator=g) * 80 + 5).values,
            "intensity": torch.rand(b, p, generator=g), "mask": torch.arange(p).expand(b, p) < real}


def test_defaults_are_the_published_sizes():
    encoder = PeakTransformer()
    assert encoder.embed_dim == 512 and len(encoder.transformer.layers) == 8
    layer = encoder.transformer.layers[0]
    assert layer.linear1.out_features == 2048 and layer.self_attn.num_heads == 8 and layer.norm_first
    assert encoder.n_bins == 8501  # 5-90 deg at 0.01 deg


@pytest.mark.parametrize("position", ["learned", "sinusoidal"])
def test_padding_is_ignored_and_peak_order_does_not_matter(position):
    torch.manual_seed(0)
    encoder = PeakTransformer(**TINY_PXRD, position=position).eval()
    x = _peaks()
    out = encoder(x)
    assert out.shape == (4, 32) and torch.isfinite(out).all()
    garbage = dict(x, two_theta=torch.where(x["mask"], x["two_theta"], torch.full_like(x["two_theta"], 77.0)),
                   intensity=torch.where(x["mask"], x["intensity"], torch.full_like(x["intensity"], 5.0)))
    assert torch.allclose(encoder(garbage), out, atol=1e-5)
    longer = {k: torch.cat([v, v[:, :3] * 0 + (False if k == "mask" else 50)], dim=1) for k, v in x.items()}
    assert torch.allclose(encoder(longer), out, atol=1e-5)
    perm = torch.randperm(12)
    assert torch.allclose(encoder({k: v[:, perm] for k, v in x.items()}), out, atol=1e-5)
    changed = dict(x, intensity=x["intensity"].clone())
    changed["intensity"][0, 0] += 0.5
    assert not torch.allclose(encoder(changed)[0], out[0], atol=1e-4)  # a real peak does matter
    assert torch.allclose(encoder(changed)[1:], out[1:], atol=1e-5)  # and only for its own pattern


def test_a_pattern_without_peaks_gives_finite_outputs_and_gradients():
    torch.manual_seed(0)
    encoder = PeakTransformer(**TINY_PXRD)
    x = _peaks()
    x["mask"][1] = False
    out = encoder(x)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters() if p.grad is not None)
    encoder.eval()
    empty = {k: v[:2] for k, v in _peaks(b=2).items()}
    empty["mask"][:] = False
    with torch.no_grad():
        first, second = encoder(empty)
    assert torch.allclose(first, second)  # every empty pattern is the CLS token alone


def test_bins_cover_the_grid_and_clamp_outside_it():
    encoder = PeakTransformer(**TINY_PXRD, grid=AngleGrid(10.0, 60.0, 0.5))
    assert encoder.n_bins == 101
    index = encoder.bin_index(torch.tensor([10.0, 10.24, 10.26, 60.0, 3.0, 95.0]))
    assert index.tolist() == [0, 0, 1, 100, 0, 100]
    assert PeakTransformer(**TINY_PXRD, grid={"start": 5, "step": 0.1, "stop": 15}).n_bins == 101
    for bad in [{"start": 10, "stop": 5}, {"step": 0}, (5, 90, 0.1), "5-90"]:
        with pytest.raises(ValueError):
            PeakTransformer(**TINY_PXRD, grid=bad)
    with pytest.raises(ValueError):
        PeakTransformer(d_model=30, heads=4)
    with pytest.raises(ValueError):
        PeakTransformer(position="rotary")


def test_sinusoidal_codes_are_the_transformer_formula():
    codes = sinusoidal_codes(torch.tensor([0.0, 3.0]), 6)
    assert codes.shape == (2, 6)
    for i in range(3):
        frequency = 10000 ** (-2 * i / 6)
        assert codes[1, 2 * i].item() == pytest.approx(torch.sin(torch.tensor(3.0 * frequency, dtype=torch.float64)).item())
        assert codes[1, 2 * i + 1].item() == pytest.approx(torch.cos(torch.tensor(3.0 * frequency, dtype=torch.float64)).item())
    assert codes[0, 1::2].tolist() == [1.0] * 3


def test_strongest_peaks_keeps_the_strongest_real_ones_in_two_theta_order():
    x = {"two_theta": torch.tensor([[10.0, 20.0, 30.0, 40.0, 50.0]]), "intensity": torch.tensor([[0.1, 0.9, 0.3, 1.0, 2.0]]),
         "mask": torch.tensor([[True, True, True, True, False]])}
    kept = strongest_peaks(x, 3)
    assert kept["two_theta"].tolist() == [[20.0, 30.0, 40.0]] and kept["mask"].all()
    assert strongest_peaks(x, 10)["two_theta"].shape == (1, 5)
    encoder = PeakTransformer(**{**TINY_PXRD, "max_peaks": 3}).eval()
    assert torch.allclose(encoder(x), encoder(kept))


def test_tiny_forward_backward_of_32_patterns_of_200_peaks_is_fast():
    torch.manual_seed(0)
    encoder = PeakTransformer(**TINY_PXRD)
    x = _peaks(b=32, p=200, real=180)
    encoder(x).sum().backward()  # warm-up
    times = []
    for _ in range(5):
        started = time.perf_counter()
        encoder(x).square().mean().backward()
        times.append(time.perf_counter() - started)
    assert min(times) < 0.3, times


def test_learns_space_groups_from_real_peaks(mp20_cache):
    """Used as an ordinary encoder with a linear head on the cache's own peak lists, it fits the
    training patterns' space groups (a model ignoring its input cannot)."""
    torch.manual_seed(0)
    pairs = split_pairs(mp20_cache, "train")
    rows = list(range(24))
    x = pairs.patterns(rows)
    labels = torch.as_tensor(mp20_cache.space_groups[pairs.indices[rows]])
    classes, y = torch.unique(labels, return_inverse=True)
    encoder = PeakTransformer(**TINY_PXRD, dropout=0.0)
    head = torch.nn.Linear(encoder.embed_dim, len(classes))
    optimiser = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(head(encoder(x)), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    accuracy = (head(encoder(x)).argmax(1) == y).float().mean().item()
    assert accuracy > 0.8, accuracy
    assert len(classes) > 5
