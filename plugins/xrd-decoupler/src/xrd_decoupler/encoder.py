"""DecouplerEncoder: XRDecoupler's profile encoder, a local and a global view of one pattern.

* Local module: two channels, ``sin θ`` of the grid and the intensity, so that a convolution
  knows where on the pattern it is (``sin θ = λ / 2d`` is proportional to ``1/d``); residual
  1-D convolution blocks (kernel 3), each followed by a max pool; flatten; a linear projection.
  The flatten ties it to the grid's number of points.
* Global module: the intensity cut into patches; each patch becomes a token of per-patch
  convolution features, a learned linear embedding of the patch and the patch maximum, plus a
  sinusoidal position; transformer layers in which empty patches (maximum at most
  ``empty_threshold``) are masked as attention keys; the mean over the non-empty patches.

The embedding is the concatenation, ``embed_dim = local_dim + d_model`` (32 + 32 = 64 by default,
as in the paper). Sizes the paper gives are the defaults (patch 10, 16 conv + 15 learned features
+ the maximum, 2 transformer layers, 32 + 32); the rest (local channels and pooling, heads,
feed-forward width, dropout, the empty threshold) are our choices and are arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid, as_grid
from xrdcore.interfaces import Encoder
from xrdcore.validate import fraction, int_tuple, positive_int

__all__ = ["DecouplerEncoder", "GlobalModule", "LocalModule", "sinusoidal_positions"]


def sinusoidal_positions(n: int, dim: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(n, dim)`` sine/cosine position codes (Vaswani et al. 2017): ``sin(p / 10000^(2i/dim))``
    in even columns, ``cos`` in odd ones; any ``dim``, odd included."""
    position = torch.arange(n, device=device, dtype=torch.float64)[:, None]
    even = torch.arange(0, dim, 2, device=device, dtype=torch.float64)
    frequency = torch.exp(even * (-math.log(1e4) / dim))
    codes = torch.zeros(n, dim, device=device, dtype=torch.float64)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return codes.to(dtype)


class _ResidualBlock(nn.Module):
    """conv(k3) → BN → ReLU → conv(k3) → BN, plus the input (1×1 conv if the width changes), ReLU."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(n_in, n_out, 3, padding=1, bias=False), nn.BatchNorm1d(n_out), nn.ReLU(inplace=True),
            nn.Conv1d(n_out, n_out, 3, padding=1, bias=False), nn.BatchNorm1d(n_out))
        self.skip = nn.Identity() if n_in == n_out else nn.Conv1d(n_in, n_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class LocalModule(nn.Module):
    """``[sin θ, intensity]`` → stem conv → residual blocks, each then max-pooled by ``pool`` →
    flatten → linear to ``out_dim``. Pooling pads with zeros to a multiple of ``pool``, which
    changes no maximum (activations are ReLU outputs, >= 0), so any length works; the flatten
    fixes it at ``length``."""

    def __init__(self, length: int, sin_theta: torch.Tensor, channels: Sequence[int], pool: int,
                 out_dim: int):
        super().__init__()
        self.length, self.pool = length, pool
        self.register_buffer("sin_theta", sin_theta.float(), persistent=False)  # derived from the grid
        self.stem = nn.Sequential(nn.Conv1d(2, channels[0], 3, padding=1, bias=False),
                                  nn.BatchNorm1d(channels[0]), nn.ReLU(inplace=True))
        blocks, n_in, n = [], channels[0], length
        for width in channels:
            blocks.append(_ResidualBlock(n_in, width))
            n_in, n = width, -(-n // pool)
        self.blocks = nn.ModuleList(blocks)
        self.feature_length = n
        self.project = nn.Linear(n_in * n, out_dim)

    def forward(self, intensity: torch.Tensor) -> torch.Tensor:
        angle = self.sin_theta.to(intensity.dtype).expand_as(intensity)
        x = self.stem(torch.stack([angle, intensity], dim=1))
        for block in self.blocks:
            x = block(x)
            if self.pool > 1:
                x = F.max_pool1d(F.pad(x, (0, -x.shape[-1] % self.pool)), self.pool)
        return self.project(x.flatten(1))


class GlobalModule(nn.Module):
    """Patches of ``patch_size`` points (the last padded with zeros) → tokens of
    ``conv_features`` (two k3 convolutions inside the patch, max over it) + ``learned_features``
    (a linear map of the patch) + the patch maximum, plus sinusoidal positions → pre-norm
    transformer layers, empty patches masked as keys → mean over the non-empty patches.

    A patch is empty when its largest ``|intensity|`` is at most ``empty_threshold``; if every
    patch of a pattern is empty its first patch is kept (attention over nothing is undefined), so
    a blank pattern still gives a finite embedding. Empty patches neither serve as keys nor enter
    the mean, so the output does not depend on them (appending empty patches changes nothing) and
    they are dropped before any computation: the cost grows with the non-empty patches, a few
    percent of all of them for stick patterns. Works at any length.
    """

    def __init__(self, patch_size: int, conv_features: int, learned_features: int, layers: int, heads: int,
                 feedforward: int, dropout: float, empty_threshold: float):
        super().__init__()
        self.patch_size, self.empty_threshold = patch_size, empty_threshold
        self.d_model = conv_features + learned_features + 1
        if self.d_model % heads:
            raise ValueError(f"the token width conv_features + learned_features + 1 = {self.d_model} must be "
                             f"divisible by heads={heads}")
        self.patch_conv = nn.Sequential(
            nn.Conv1d(1, conv_features, 3, padding=1), nn.GELU(),
            nn.Conv1d(conv_features, conv_features, 3, padding=1), nn.GELU())
        self.patch_linear = nn.Linear(patch_size, learned_features)
        layer = nn.TransformerEncoderLayer(self.d_model, heads, feedforward, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(self.d_model)

    def patches(self, intensity: torch.Tensor) -> torch.Tensor:
        """``(B, N, patch_size)``, N = ceil(L / patch_size), the last patch padded with zeros."""
        x = F.pad(intensity, (0, -intensity.shape[1] % self.patch_size))
        return x.reshape(x.shape[0], -1, self.patch_size)

    def empty_mask(self, intensity: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` bool, True for the patches masked as keys and left out of the mean."""
        empty = self.patches(intensity).abs().amax(dim=2) <= self.empty_threshold
        blank = empty.all(dim=1)
        empty[blank, 0] = False  # a blank pattern keeps its first patch: attention needs one key
        return empty

    def forward(self, intensity: torch.Tensor) -> torch.Tensor:
        patches = self.patches(intensity)
        b, n, p = patches.shape
        mask = self.empty_mask(intensity)
        # Masked patches are no key and are left out of the mean, so no kept token depends on them:
        # drop them before any work, keeping K = the most non-empty patches of any pattern in the
        # batch (exact, and stick patterns leave a few percent of the patches).
        k = int((~mask).sum(dim=1).max())
        order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)[:, :k]  # non-empty first, in order
        patches = patches.gather(1, order.unsqueeze(2).expand(b, k, p))
        mask = mask.gather(1, order)
        conv = self.patch_conv(patches.reshape(b * k, 1, p)).amax(dim=2).reshape(b, k, -1)
        tokens = torch.cat([conv, self.patch_linear(patches), patches.amax(dim=2, keepdim=True)], dim=2)
        positions = sinusoidal_positions(n, self.d_model, device=tokens.device, dtype=tokens.dtype)
        tokens = tokens + positions[order]
        h = self.norm(self.transformer(tokens, src_key_padding_mask=mask))
        keep = (~mask).to(h.dtype).unsqueeze(2)
        return (h * keep).sum(dim=1) / keep.sum(dim=1)


class DecouplerEncoder(Encoder):
    """XRDecoupler encoder (Yu et al., AAAI 2026): local conv module ⊕ global patch transformer.

    Input: ``(B, grid.length)`` relative intensities (max 1) on the data's 2θ ``grid``
    (:class:`~xrdcore.diffraction.profile.AngleGrid`). The local module's first channel is
    ``sin θ`` of each point, θ = 2θ/2, the Bragg angle (``sin θ = λ/2d`` grows with 1/d), not sin 2θ.

    Local: stem conv(2 → ``local_channels[0]``, k3), one residual block (two k3 convs, BN) per
    entry of ``local_channels``, each followed by max pooling by ``local_pool``; flatten; linear
    → ``local_dim`` (32). Global: patches of ``patch_size`` (10) points; tokens of
    ``patch_conv_features`` (16) + ``patch_learned_features`` (15) + the patch maximum = 32;
    sinusoidal positions; ``layers`` (2) pre-norm transformer layers with ``heads`` (4),
    ``feedforward`` (64) and ``dropout`` (0.1); patches with max ``|intensity| <=
    empty_threshold`` (1e-3 of the strongest peak) masked; mean pooling → 32.
    ``embed_dim = local_dim + patch_conv_features + patch_learned_features + 1`` (64).
    """

    input_kind = "profile"

    def __init__(self, grid: AngleGrid = DEFAULT_GRID, local_channels: Sequence[int] = (16, 16, 16),
                 local_pool: int = 4, local_dim: int = 32,
                 patch_size: int = 10, patch_conv_features: int = 16, patch_learned_features: int = 15,
                 layers: int = 2, heads: int = 4, feedforward: int = 64, dropout: float = 0.1,
                 empty_threshold: float = 1e-3):
        super().__init__()
        self.grid = as_grid("grid", grid)
        self.input_length = self.grid.length
        local_channels = int_tuple("local_channels", local_channels)
        for name, value in (("local_pool", local_pool), ("local_dim", local_dim), ("patch_size", patch_size),
                            ("patch_conv_features", patch_conv_features), ("layers", layers),
                            ("heads", heads), ("feedforward", feedforward)):
            positive_int(name, value)
        if isinstance(patch_learned_features, bool) or not isinstance(patch_learned_features, int) \
                or patch_learned_features < 0:
            raise ValueError(f"patch_learned_features must be an int >= 0, got {patch_learned_features!r}")
        dropout = fraction("dropout", dropout)
        empty_threshold = fraction("empty_threshold", empty_threshold)

        two_theta_deg = torch.from_numpy(self.grid.values)
        sin_theta = torch.sin(torch.deg2rad(two_theta_deg / 2))
        self.local = LocalModule(self.input_length, sin_theta, local_channels, local_pool, local_dim)
        self.global_ = GlobalModule(patch_size, patch_conv_features, patch_learned_features, layers, heads,
                                    feedforward, dropout, empty_threshold)
        self.embed_dim = local_dim + self.global_.d_model

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if not isinstance(batch, torch.Tensor):
            raise TypeError(f"decoupler expects a (B, L) profile tensor, got {type(batch).__name__}")
        if batch.ndim != 2:
            raise ValueError(f"decoupler expects a (B, L) profile tensor, got shape {tuple(batch.shape)}")
        if batch.shape[1] != self.input_length:
            raise ValueError(f"decoupler was built for input_length={self.input_length} but got profiles of "
                             f"length {batch.shape[1]}; build it with the grid of the data")
        if not batch.is_floating_point():
            batch = batch.float()
        return torch.cat([self.local(batch), self.global_(batch)], dim=1)
