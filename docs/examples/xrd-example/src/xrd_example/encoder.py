"""ExampleConvEncoder: the smallest honest encoder, imported only when it is created."""

from __future__ import annotations

import torch
from torch import nn

from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid
from xrdcore.interfaces import Encoder


class ExampleConvEncoder(Encoder):
    """Two strided 1-D convolutions, adaptive pooling and a linear map: ``(B, L)`` → ``(B, embed_dim)``.

    Every argument has a default so that ``create_encoder("example-conv")`` works. Adaptive
    pooling makes the network independent of the profile length, so one configuration fits any
    2θ grid; ``grid`` (the data's :class:`~xrdcore.diffraction.grid.AngleGrid`) is accepted
    because the harness passes it to every profile encoder, and its length is kept only as a
    record. An encoder whose layers depend on the length builds them from ``grid.length``, and
    one that needs the angle of each point reads ``grid.values``.
    """

    input_kind = "profile"

    def __init__(self, grid: AngleGrid = DEFAULT_GRID, channels: int = 16, embed_dim: int = 32):
        super().__init__()
        if min(channels, embed_dim) < 1:
            raise ValueError(f"channels and embed_dim must be positive, got {channels} and {embed_dim}")
        self.input_length = grid.length
        self.embed_dim = embed_dim  # the heads on top read this
        pooled = 8
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, kernel_size=9, stride=2, padding=4), nn.GELU(),
            nn.Conv1d(channels, channels, kernel_size=9, stride=2, padding=4), nn.GELU(),
            nn.AdaptiveAvgPool1d(pooled),
        )
        self.project = nn.Linear(channels * pooled, embed_dim)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dim() != 2:
            raise ValueError(f"expected a (B, L) profile, got shape {tuple(batch.shape)}")
        features = self.features(batch.unsqueeze(1))  # (B, channels, pooled)
        return self.project(features.flatten(1))
