"""ExampleConvEncoder: the smallest honest encoder, imported only when it is created."""

from __future__ import annotations

import torch
from torch import nn

from xrdcore.interfaces import Encoder


class ExampleConvEncoder(Encoder):
    """Two strided 1-D convolutions, adaptive pooling and a linear map: ``(B, L)`` → ``(B, embed_dim)``.

    Every argument has a default so that ``create_encoder("example-conv")`` works. Adaptive
    pooling makes the network independent of the profile length, so one configuration fits any
    2θ grid; ``input_length`` is accepted because the harness passes every profile encoder the
    length of its data, and it is kept only as a record.
    """

    input_kind = "profile"

    def __init__(self, input_length: int = 8500, channels: int = 16, embed_dim: int = 32):
        super().__init__()
        if min(input_length, channels, embed_dim) < 1:
            raise ValueError("input_length, channels and embed_dim must be positive")
        self.input_length = input_length
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
