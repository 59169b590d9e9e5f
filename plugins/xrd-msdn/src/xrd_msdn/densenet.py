"""DenseNet encoders for zone-axis images: ``msdn`` (one stream per view, shared weights) and
``densenet`` (the single-stream baseline on the views merged into one image).

A stream is a DenseNet-BC (Huang et al. 2017): a stem, dense blocks whose layers are
[BN-ReLU-1×1 conv to ``bottleneck`` × growth channels, BN-ReLU-3×3 conv to ``growth_rate``
channels] with every layer's output concatenated to its input, transitions of BN-ReLU-1×1 conv
(channels × ``compression``) and 2×2 average pooling between blocks, then BN-ReLU and global
average pooling: a ``(D,)`` embedding per image.

Defaults follow Tiong et al. where the paper says something: growth rate 32, dense blocks of 3,
6, 12 and 8 layers, transitions of a 1×1 convolution and 2×2 average pooling. The paper does not
give the width of the 1×1 convolution nor a compression; the defaults are the reading that
matches its parameter count (1.54M): a 1×1 convolution to ``growth_rate`` channels (``bottleneck=1``)
and transitions that keep the channels (``compression=1``) give a stream of 1,479,168 parameters,
1,550,664 with one 72-class output layer. DenseNet-BC's usual widths (``bottleneck=4``,
``compression=0.5``) would give 2.31M for blocks (3, 6, 12, 8) and 1.81M for the (3, 6, 8, 8) of
the paper's table. The stem is DenseNet's ImageNet stem (7×7 stride-2 convolution to 2 × growth
channels, 3×3 stride-2 max pool), which the paper does not describe either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from xrdcore.interfaces import Encoder
from xrdcore.validate import fraction, positive_int

__all__ = ["DenseNetEncoder", "DenseNetStream", "MSDNEncoder"]

#: dense-block sizes of Tiong et al. (the paper's text; its table has 8 for the third block)
PAPER_BLOCKS = (3, 6, 12, 8)


class _DenseLayer(nn.Module):
    """BN-ReLU-1×1 conv (bottleneck × growth) → BN-ReLU-3×3 conv (growth); returns only the new
    features (the block concatenates)."""

    def __init__(self, n_in: int, growth: int, bottleneck: int, dropout: float):
        super().__init__()
        width = bottleneck * growth
        self.norm1, self.conv1 = nn.BatchNorm2d(n_in), nn.Conv2d(n_in, width, 1, bias=False)
        self.norm2, self.conv2 = nn.BatchNorm2d(width), nn.Conv2d(width, growth, 3, padding=1, bias=False)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.relu(self.norm1(x)))
        x = self.conv2(F.relu(self.norm2(x)))
        return F.dropout(x, self.dropout, self.training) if self.dropout else x


class _DenseBlock(nn.Module):
    def __init__(self, layers: int, n_in: int, growth: int, bottleneck: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(_DenseLayer(n_in + i * growth, growth, bottleneck, dropout)
                                    for i in range(layers))
        self.out_channels = n_in + layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, n_in: int, n_out: int):
        super().__init__(nn.BatchNorm2d(n_in), nn.ReLU(), nn.Conv2d(n_in, n_out, 1, bias=False), nn.AvgPool2d(2))


class DenseNetStream(nn.Module):
    """One DenseNet-BC stream: ``(N, channels, H, W)`` → ``(N, out_channels)``.

    ``stem="large"``: 7×7 stride-2 conv + 3×3 stride-2 max pool (÷4, for 224-pixel images);
    ``"small"``: one 3×3 conv (÷1). ``min_size``: the smallest H and W it takes (every pooling
    must see at least one pixel)."""

    def __init__(self, channels: int, growth_rate: int, block_config: Sequence[int], bottleneck: int,
                 compression: float, stem: str, dropout: float):
        super().__init__()
        init = 2 * growth_rate
        if stem == "large":
            self.stem = nn.Sequential(nn.Conv2d(channels, init, 7, stride=2, padding=3, bias=False),
                                      nn.BatchNorm2d(init), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
            reduction = 4
        else:
            self.stem = nn.Conv2d(channels, init, 3, padding=1, bias=False)
            reduction = 1
        stages, n = [], init
        for i, layers in enumerate(block_config):
            block = _DenseBlock(layers, n, growth_rate, bottleneck, dropout)
            stages.append(block)
            n = block.out_channels
            if i < len(block_config) - 1:
                out = max(1, int(n * compression))
                stages.append(_Transition(n, out))
                n = out
                reduction *= 2
        self.features = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(n)
        self.out_channels = n
        self.min_size = reduction
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.features(self.stem(x))))
        return x.mean((2, 3))


class _ImageEncoder(Encoder):
    """What both encoders share: the arguments, the stream and the input check."""

    input_kind = "images"

    def __init__(self, views: int, channels: int, image_size: int, growth_rate: int,
                 block_config: Sequence[int], bottleneck: int, compression: float, stem: str, dropout: float):
        super().__init__()
        self.views = positive_int("views", views)
        self.channels = positive_int("channels", channels)
        self.image_size = positive_int("image_size", image_size)
        block_config = tuple(block_config)
        if not block_config:
            raise ValueError("block_config needs at least one dense block")
        for layers in block_config:
            positive_int("block_config entries", layers)
        if stem not in ("large", "small"):
            raise ValueError(f"stem must be 'large' or 'small', got {stem!r}")
        if isinstance(compression, bool) or not isinstance(compression, (int, float)) or not 0 < compression <= 1:
            raise ValueError(f"compression must be in (0, 1], got {compression!r}")
        self.stream = DenseNetStream(self.channels, positive_int("growth_rate", growth_rate), block_config,
                                     positive_int("bottleneck", bottleneck), float(compression), stem,
                                     fraction("dropout", dropout))
        if image_size < self.stream.min_size:
            raise ValueError(f"image_size {image_size} is smaller than the {self.stream.min_size} pixels this "
                             f"stream needs (stem {stem!r}, {len(block_config)} blocks)")

    def _check(self, batch: Any) -> torch.Tensor:
        expected = f"(B, V={self.views}, C={self.channels}, H, W) with H, W >= {self.stream.min_size}"
        if not isinstance(batch, torch.Tensor):
            raise TypeError(f"{type(self).__name__} takes an images tensor {expected}, got {type(batch).__name__}")
        if (batch.dim() != 5 or batch.shape[1] != self.views or batch.shape[2] != self.channels
                or min(batch.shape[3:]) < self.stream.min_size):
            raise ValueError(f"{type(self).__name__} expected images of shape {expected}, got {tuple(batch.shape)}")
        if not batch.is_floating_point():
            raise ValueError(f"{type(self).__name__} expected a floating-point images tensor, got {batch.dtype}")
        return batch


class MSDNEncoder(_ImageEncoder):
    """Multistream DenseNet (Tiong et al.): the same DenseNet stream on each of the ``views``
    images (shared weights). ``view_embeddings`` ``(B, V, D)``: one embedding per view, for the
    paper's per-stream heads (summed loss, summed logits) and per-view reference scoring;
    ``forward`` ``(B, V·D)``: their concatenation, so any head, hierarchy and scheduler of the
    platform can sit on it. ``views``, ``channels`` and ``image_size`` come from the data."""

    def __init__(self, views: int = 3, channels: int = 3, image_size: int = 224, growth_rate: int = 32,
                 block_config: Sequence[int] = PAPER_BLOCKS, bottleneck: int = 1, compression: float = 1.0,
                 stem: Literal["large", "small"] = "large", dropout: float = 0.0):
        super().__init__(views, channels, image_size, growth_rate, block_config, bottleneck, compression, stem,
                         dropout)
        self.view_dim = self.stream.out_channels
        self.embed_dim = self.views * self.view_dim

    def view_embeddings(self, batch: torch.Tensor) -> torch.Tensor:
        x = self._check(batch)
        b, v = x.shape[:2]
        return self.stream(x.flatten(0, 1)).view(b, v, self.view_dim)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.view_embeddings(batch).flatten(1)


class DenseNetEncoder(_ImageEncoder):
    """Single-stream DenseNet baseline: the ``views`` images merged into one ``channels``-channel
    image by their elementwise maximum (with the simulator's colours by axis, each view keeps its
    own channel), through one stream of the same configuration as ``msdn`` → ``(B, D)``."""

    def __init__(self, views: int = 3, channels: int = 3, image_size: int = 224, growth_rate: int = 32,
                 block_config: Sequence[int] = PAPER_BLOCKS, bottleneck: int = 1, compression: float = 1.0,
                 stem: Literal["large", "small"] = "large", dropout: float = 0.0):
        super().__init__(views, channels, image_size, growth_rate, block_config, bottleneck, compression, stem,
                         dropout)
        self.embed_dim = self.stream.out_channels

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.stream(self._check(batch).amax(1))
