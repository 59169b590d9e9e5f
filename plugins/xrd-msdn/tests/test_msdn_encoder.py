"""The ``msdn`` and ``densenet`` encoders: one shared stream per view, the views merged by their
maximum, the paper's size by default, clear input errors, speed. Their conformance (shapes,
gradients, determinism, training on simulated images of real structures) is the core's kit:
test_conformance.py."""

from __future__ import annotations

import time

import pytest
import torch
import xrdcore
from xrdcore.interfaces import Encoder

from xrd_msdn.densenet import DenseNetEncoder, MSDNEncoder

NAMES = ["xrd-msdn:msdn", "xrd-msdn:densenet"]


def tiny(name: str, **overrides) -> Encoder:
    kwargs = {**xrdcore.get_registry().get("encoder", name).tiny, "image_size": 64, **overrides}
    return xrdcore.create_encoder(name, **kwargs)


def images(b: int, v: int = 3, c: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, v, c, size, size, generator=torch.Generator().manual_seed(seed))


def test_msdn_is_one_shared_stream_per_view():
    torch.manual_seed(0)
    encoder = tiny("xrd-msdn:msdn").eval()
    assert encoder.views == 3 and encoder.embed_dim == 3 * encoder.view_dim
    x = images(5)
    with torch.no_grad():
        views = encoder.view_embeddings(x)
        torch.testing.assert_close(encoder(x), views.flatten(1), rtol=0, atol=0)
        # the same stream embeds each view on its own: permuting views permutes their embeddings
        torch.testing.assert_close(encoder.view_embeddings(x[:, [2, 0, 1]]), views[:, [2, 0, 1]])
        torch.testing.assert_close(views[:, 1], encoder.stream(x[:, 1]))
    # any number of views, from the data
    assert tiny("xrd-msdn:msdn", views=2)(images(2, v=2)).shape == (2, 2 * encoder.view_dim)


def test_densenet_baseline_merges_the_views_by_their_maximum():
    torch.manual_seed(0)
    encoder = tiny("xrd-msdn:densenet").eval()
    x = images(3)
    with torch.no_grad():
        merged = encoder.stream(x.amax(1))
        torch.testing.assert_close(encoder(x), merged)
        torch.testing.assert_close(encoder(x[:, [1, 2, 0]]), merged)  # the order of views does not matter
        # with colours by axis (view v only in channel v) the merge keeps every view
        coloured = torch.zeros(3, 3, 3, 64, 64)
        for v in range(3):
            coloured[:, v, v] = x[:, v, 0]
        assert torch.equal(coloured.amax(1), x[:, :, 0])


def test_defaults_are_the_papers_network():
    encoder = MSDNEncoder()
    stream = sum(p.numel() for p in encoder.parameters())
    assert [len(block.layers) for block in encoder.stream.features if hasattr(block, "layers")] == [3, 6, 12, 8]
    assert encoder.stream.features[0].layers[0].conv2.out_channels == 32  # growth rate
    assert encoder.view_dim == 992 and encoder.embed_dim == 3 * 992
    # one stream (shared by the three views) and one 72-class output layer: the published 1.54M
    assert abs(stream + 992 * 72 + 72 - 1.54e6) / 1.54e6 < 0.01
    assert sum(p.numel() for p in DenseNetEncoder().parameters()) == stream  # the same configuration
    encoder.eval()
    with torch.no_grad():
        out = encoder.view_embeddings(torch.rand(1, 3, 3, 224, 224))
    assert out.shape == (1, 3, 992) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_wrong_inputs_are_refused_with_the_expected_shape(name):
    encoder = tiny(name)
    for bad in (torch.rand(2, 3, 64, 64), images(2, v=2), images(2, c=1), images(2, size=2)):
        with pytest.raises(ValueError, match=r"expected images of shape \(B, V=3, C=3, H, W\)"):
            encoder(bad)
    with pytest.raises(TypeError, match="images tensor"):
        encoder({"two_theta": torch.rand(2, 5)})
    with pytest.raises(ValueError, match="floating-point"):
        encoder(torch.zeros(2, 3, 3, 64, 64, dtype=torch.long))
    with pytest.raises(ValueError, match="block_config"):
        tiny(name, block_config=())
    with pytest.raises(ValueError, match="image_size"):
        tiny(name, image_size=2)


def test_tiny_msdn_trains_a_batch_of_32_quickly():
    torch.manual_seed(0)
    encoder = tiny("xrd-msdn:msdn")
    x = images(32)
    encoder(x).sum().backward()  # warm-up
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        encoder(x).square().mean().backward()
        seconds.append(time.perf_counter() - start)
    # ~0.2 s on two shared CPU cores; the bound leaves room for a busy machine
    assert min(seconds) < 1.5, seconds
