"""Built-in baseline encoders for ``profile`` inputs (``(B, L)`` intensity on a fixed 2θ grid).

* :class:`MLPEncoder` (``mlp``) and :class:`CNNEncoder` / :class:`NoPoolCNNEncoder` (``cnn``,
  ``nopoolcnn``): the baselines of Salgado et al., npj Comput. Mater. 2023.
* :class:`RCNetEncoder` (``rcnet``): a 1-D pre-activation ResNet in the style of RCNet
  (Chen et al., JACS 2024).

Every size comes from constructor arguments (all with defaults); the input length is that of the
data's 2θ ``grid`` (:class:`~xrdcore.diffraction.profile.AngleGrid`), never a constant. Each encoder
returns the embedding only: the classification heads (and RCNet's confidence head) sit on top of it
elsewhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid, as_grid
from xrdcore.interfaces import Encoder
from xrdcore.validate import fraction, int_tuple, positive_int

__all__ = ["CNNEncoder", "MLPEncoder", "NoPoolCNNEncoder", "RCNetEncoder"]


def _check_profile(name: str, x: Any, length: int | None = None) -> torch.Tensor:
    """``x`` as a ``(B, L)`` floating tensor, with ``L == length`` when the model needs it fixed."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} expects a (B, L) profile tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} expects a (B, L) profile tensor, got shape {tuple(x.shape)}")
    if length is not None and x.shape[1] != length:
        raise ValueError(f"{name} was built for input_length={length} but got profiles of length "
                         f"{x.shape[1]}; build it with the grid of the data")
    if not x.is_floating_point():
        x = x.float()
    return x


def _mlp(sizes: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear → ReLU → Dropout for each consecutive pair of ``sizes``."""
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MLPEncoder(Encoder):
    """Fully connected baseline of Salgado et al. 2023: profile → 4000 → 3000 → 1000 → 800.

    The embedding is the last hidden layer (``embed_dim = hidden[-1]``, 800 by default); the
    paper's final 800 → classes layer is the head. ReLU and dropout after every hidden layer
    (``dropout=0.2`` is our default, not a published value). ``hidden`` may be any non-empty
    tuple, e.g. ``(64, 32)`` for tests. The input length is fixed at ``grid.length``.
    """

    input_kind = "profile"

    def __init__(self, grid: AngleGrid = DEFAULT_GRID, hidden: Sequence[int] = (4000, 3000, 1000, 800),
                 dropout: float = 0.2):
        super().__init__()
        self.input_length = as_grid("grid", grid).length
        self.hidden = int_tuple("hidden", hidden)
        self.net = _mlp((self.input_length, *self.hidden), fraction("dropout", dropout))
        self.embed_dim = self.hidden[-1]

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net(_check_profile("mlp", batch, self.input_length))


class _SalgadoCNN(Encoder):
    """Shared body of ``cnn`` and ``nopoolcnn``: three valid (unpadded) strided convolutions, each
    followed by ReLU and, if ``pool_kernel`` is set, an average pool; flatten; MLP to the embedding."""

    input_kind = "profile"
    _name = "cnn"

    def __init__(self, grid: AngleGrid, channels: int, kernels: Sequence[int], strides: Sequence[int],
                 pool_kernel: int | None, pool_stride: int | None, hidden: Sequence[int], dropout: float):
        super().__init__()
        self.input_length = as_grid("grid", grid).length
        channels = positive_int("channels", channels)
        kernels, strides = int_tuple("kernels", kernels), int_tuple("strides", strides)
        if len(kernels) != len(strides):
            raise ValueError(f"kernels and strides need one entry per convolution, got "
                             f"{len(kernels)} and {len(strides)}")
        self.hidden = int_tuple("hidden", hidden)
        dropout = fraction("dropout", dropout)
        pool = None
        if pool_kernel is not None:
            pool = (positive_int("pool_kernel", pool_kernel),
                    positive_int("pool_stride", pool_kernel if pool_stride is None else pool_stride))
        # each stage: (kernel, stride) of the conv, then (kernel, stride) of the pool if any
        self._stages = [(k, s) for conv in zip(kernels, strides) for k, s in ([conv, pool] if pool else [conv])]
        self.min_length = self.minimum_length(self._stages)
        if self.input_length < self.min_length:
            raise ValueError(f"{self._name}: a grid of {self.input_length} points is too short for kernels "
                             f"{kernels}, strides {strides}" + (f", pools {pool}" if pool else "")
                             + f"; the minimum length is {self.min_length} (use smaller kernels/strides "
                             f"or a finer 2θ grid)")
        layers: list[nn.Module] = []
        n_in = 1
        for k, s in zip(kernels, strides):
            layers += [nn.Conv1d(n_in, channels, k, stride=s), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.AvgPool1d(*pool))
            n_in = channels
        self.features = nn.Sequential(*layers)
        length = self.input_length
        for k, s in self._stages:
            length = (length - k) // s + 1
        self.feature_length = length
        self.mlp = _mlp((channels * length, *self.hidden), dropout)
        self.embed_dim = self.hidden[-1]

    @staticmethod
    def minimum_length(stages: Sequence[tuple[int, int]]) -> int:
        """Shortest input leaving at least one position after every (kernel, stride) stage."""
        n = 1
        for k, s in reversed(stages):
            n = (n - 1) * s + k
        return n

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        x = _check_profile(self._name, batch, self.input_length)
        return self.mlp(self.features(x.unsqueeze(1)).flatten(1))


class CNNEncoder(_SalgadoCNN):
    """Convolutional baseline of Salgado et al. 2023: conv(80, k100, s5) → conv(80, k50, s5) →
    conv(80, k25, s2), each followed by ReLU and an average pool, then flatten and an MLP.

    Our defaults where the anchors give no value: average pool kernel 3, stride 2; MLP hidden
    sizes (2300, 1150), so ``embed_dim = hidden[-1] = 1150``; dropout 0.2. Convolutions are
    unpadded, so the input must be at least ``min_length`` long (3500 with the defaults; a
    clear ``ValueError`` otherwise). The length is fixed at ``grid.length`` (flatten).
    """

    _name = "cnn"

    def __init__(self, grid: AngleGrid = DEFAULT_GRID, channels: int = 80, kernels: Sequence[int] = (100, 50, 25),
                 strides: Sequence[int] = (5, 5, 2), pool_kernel: int = 3, pool_stride: int = 2,
                 hidden: Sequence[int] = (2300, 1150), dropout: float = 0.2):
        super().__init__(grid, channels, kernels, strides, pool_kernel, pool_stride, hidden, dropout)


class NoPoolCNNEncoder(_SalgadoCNN):
    """``NoPoolCNN`` of Salgado et al. 2023: the ``cnn`` convolutions (80 channels, kernels
    100/50/25, strides 5/5/2, ReLU) without the pools, then flatten and an MLP.

    Our defaults: MLP hidden (2300, 1150) → ``embed_dim`` 1150, dropout 0.2. Minimum length with
    the defaults is 945; the length is fixed at ``grid.length``.
    """

    _name = "nopoolcnn"

    def __init__(self, grid: AngleGrid = DEFAULT_GRID, channels: int = 80, kernels: Sequence[int] = (100, 50, 25),
                 strides: Sequence[int] = (5, 5, 2), hidden: Sequence[int] = (2300, 1150), dropout: float = 0.2):
        super().__init__(grid, channels, kernels, strides, None, None, hidden, dropout)


class _SamePadConv(nn.Module):
    """Conv1d with 'same'-style padding for any kernel (even ones too): output length ceil(L / stride)."""

    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int = 1):
        super().__init__()
        self.pad = ((kernel - 1) // 2, kernel // 2)
        self.conv = nn.Conv1d(n_in, n_out, kernel, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


class _PreActBlock(nn.Module):
    """BN → ReLU → conv(stride) → BN → ReLU → conv, plus the identity (or a strided 1×1 conv)."""

    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm1d(n_in), _SamePadConv(n_in, n_out, kernel, stride)
        self.bn2, self.conv2 = nn.BatchNorm1d(n_out), _SamePadConv(n_out, n_out, kernel)
        self.shortcut = (nn.Conv1d(n_in, n_out, 1, stride=stride, bias=False)
                         if stride != 1 or n_in != n_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # pre-activation: a projection shortcut sees the activated input, the identity the raw one
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class RCNetEncoder(Encoder):
    """RCNet-style encoder (Chen et al., JACS 2024): a 1-D pre-activation ResNet.

    Stem conv(1 → channels[0], ``kernel_size``), then ``blocks`` (16) pre-activation residual blocks
    of two convolutions with kernel ``kernel_size`` (30) and 'same'-style padding; every other block
    (the 2nd, 4th, ...) downsamples with stride 2. The width grows through ``channels``: block ``i``
    uses ``channels[i * len(channels) // blocks]`` (default 16, 32, 64, 128, four blocks each).
    A final BN → ReLU and global average pooling give the embedding (``embed_dim = channels[-1]``),
    so any input length works. The channel widths are our choice; RCNet's confidence head is not
    part of the encoder.
    """

    input_kind = "profile"

    def __init__(self, grid: AngleGrid = DEFAULT_GRID, blocks: int = 16, kernel_size: int = 30,
                 channels: Sequence[int] = (16, 32, 64, 128), downsample_every: int = 2):
        super().__init__()
        self.input_length = as_grid("grid", grid).length
        blocks = positive_int("blocks", blocks)
        kernel_size = positive_int("kernel_size", kernel_size)
        channels = int_tuple("channels", channels)
        downsample_every = positive_int("downsample_every", downsample_every)
        if len(channels) > blocks:
            raise ValueError(f"channels has {len(channels)} widths but there are only {blocks} blocks")
        self.stem = _SamePadConv(1, channels[0], kernel_size)
        layers, n_in = [], channels[0]
        for i in range(blocks):
            n_out = channels[i * len(channels) // blocks]
            stride = 2 if (i + 1) % downsample_every == 0 else 1
            layers.append(_PreActBlock(n_in, n_out, kernel_size, stride))
            n_in = n_out
        self.blocks = nn.Sequential(*layers)
        self.norm = nn.BatchNorm1d(n_in)
        self.embed_dim = n_in

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        x = _check_profile("rcnet", batch)
        if x.shape[1] < 1:
            raise ValueError("rcnet needs profiles with at least one point")
        x = self.blocks(self.stem(x.unsqueeze(1)))
        return F.relu(self.norm(x)).mean(dim=2)
