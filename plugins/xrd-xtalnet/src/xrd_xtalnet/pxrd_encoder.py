"""PeakTransformer: XtalNet's PXRD encoder, a transformer over the peaks of one pattern.

Each peak becomes one token: an embedding of its position (2θ, degrees) plus an MLP of its
intensity (relative, strongest 1). A learnable CLS token is prepended, pre-LN transformer layers
attend over the real peaks only (padding is a key mask), and the final CLS state, after a
LayerNorm, is the pattern embedding. A pattern with no peaks at all is the CLS token attending to
itself: finite, the same for every empty pattern.

Position embedding, ``position=``:

* ``"learned"`` (the published code): 2θ from the ``grid``'s start to its stop is cut into bins
  of its step (uniform in 2θ, whatever the grid's axis) and each bin has a learned vector. Peaks
  outside ``[start, stop]`` fall into the edge bins.
* ``"sinusoidal"``: fixed sine/cosine codes of the continuous position ``(2θ - start) / step``
  (no parameters, no binning).

Defaults are the published code's sizes: 8 layers, d_model 512, 8 heads, feed-forward 2048,
pre-LN. The grid defaults to the core's :data:`~xrdcore.diffraction.profile.DEFAULT_GRID`; the
harness passes the data's grid when it builds the encoder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid, as_grid
from xrdcore.interfaces import Encoder
from xrdcore.validate import positive_int

__all__ = ["PeakTransformer", "sinusoidal_codes", "strongest_peaks"]

POSITIONS = ("learned", "sinusoidal")


def sinusoidal_codes(position: torch.Tensor, dim: int) -> torch.Tensor:
    """``(..., dim)`` sine/cosine codes of a continuous ``position`` (Vaswani et al. 2017):
    ``sin(p / 10000^(2i/dim))`` in even columns, ``cos`` in odd ones."""
    even = torch.arange(0, dim, 2, device=position.device, dtype=torch.float64)
    frequency = torch.exp(even * (-math.log(1e4) / dim))
    angle = position.double()[..., None] * frequency
    codes = torch.zeros(*position.shape, dim, device=position.device, dtype=torch.float64)
    codes[..., 0::2] = torch.sin(angle)
    codes[..., 1::2] = torch.cos(angle)[..., : dim // 2]
    return codes


def strongest_peaks(peaks: Mapping[str, torch.Tensor], max_peaks: int) -> dict[str, torch.Tensor]:
    """At most ``max_peaks`` peaks per pattern: the strongest real ones, kept in 2θ order."""
    two_theta, intensity, mask = peaks["two_theta"], peaks["intensity"], peaks["mask"].bool()
    if two_theta.shape[1] <= max_peaks:
        return {"two_theta": two_theta, "intensity": intensity, "mask": mask}
    score = torch.where(mask, intensity, torch.full_like(intensity, -math.inf))
    keep = score.topk(max_peaks, dim=1).indices.sort(dim=1).values  # positions, so 2θ order is kept
    return {"two_theta": two_theta.gather(1, keep), "intensity": intensity.gather(1, keep),
            "mask": mask.gather(1, keep)}


class PeakTransformer(Encoder):
    """Transformer over a pattern's peaks with a CLS token (XtalNet's PXRD encoder).

    ``forward(peaks)`` takes the ``peaks`` input kind — ``two_theta`` (B, P) degrees, ``intensity``
    (B, P) relative with maximum 1, ``mask`` (B, P) bool — and returns ``(B, embed_dim)``.

    Arguments: ``d_model`` 512, ``layers`` 8, ``heads`` 8, ``feedforward`` 2048 (the published
    code's sizes); ``dropout`` 0.1; ``position`` ``"learned"`` (bins of the ``grid``'s step) or
    ``"sinusoidal"``; ``grid`` the data's 2θ grid (an :class:`~xrdcore.diffraction.profile.AngleGrid`
    or a mapping of the fields that differ from the default, as JSON settings hold it); ``max_peaks``
    keeps only the strongest peaks of longer lists (None: all); ``embed_dim`` None is
    ``d_model``, otherwise a linear projection of the CLS state.
    """

    input_kind = "peaks"

    def __init__(self, *, d_model: int = 512, layers: int = 8, heads: int = 8, feedforward: int = 2048,
                 dropout: float = 0.1, position: str = "learned",
                 grid: AngleGrid | Mapping[str, Any] = DEFAULT_GRID, max_peaks: int | None = None,
                 embed_dim: int | None = None):
        super().__init__()
        for name, value in (("d_model", d_model), ("layers", layers), ("heads", heads),
                            ("feedforward", feedforward)):
            positive_int(name, value)
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {', '.join(POSITIONS)}, got {position!r}")
        if max_peaks is not None:
            positive_int("max_peaks", max_peaks)
        grid = as_grid("grid", grid)
        self.start, self.stop, self.step = grid.start, grid.stop, grid.step
        self.position, self.max_peaks, self.d_model = position, max_peaks, d_model
        self.n_bins = round((self.stop - self.start) / self.step) + 1
        if position == "learned":
            self.position_embedding = nn.Embedding(self.n_bins, d_model)
            nn.init.normal_(self.position_embedding.weight, std=0.02)
        self.intensity_mlp = nn.Sequential(nn.Linear(1, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.cls = nn.Parameter(torch.randn(d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, feedforward, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.projection = nn.Linear(d_model, embed_dim) if embed_dim not in (None, d_model) else nn.Identity()
        self.embed_dim = int(embed_dim or d_model)

    def bin_index(self, two_theta: torch.Tensor) -> torch.Tensor:
        """The learned-embedding bin of each 2θ (degrees), clamped to the edge bins."""
        index = torch.round((two_theta - self.start) / self.step).long()
        return index.clamp(0, self.n_bins - 1)

    def tokens(self, peaks: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Peak tokens ``(B, P, d_model)`` and the mask of real peaks ``(B, P)``."""
        if self.max_peaks is not None:
            peaks = strongest_peaks(peaks, self.max_peaks)
        two_theta, intensity, mask = peaks["two_theta"], peaks["intensity"], peaks["mask"].bool()
        if two_theta.shape != intensity.shape or two_theta.shape != mask.shape or two_theta.dim() != 2:
            raise ValueError(f"two_theta, intensity and mask must be (B, P) tensors of one shape, got "
                             f"{tuple(two_theta.shape)}, {tuple(intensity.shape)}, {tuple(mask.shape)}")
        dtype = self.cls.dtype
        if self.position == "learned":
            position = self.position_embedding(self.bin_index(two_theta))
        else:
            position = sinusoidal_codes((two_theta - self.start) / self.step, self.d_model).to(dtype)
        x = position + self.intensity_mlp(intensity.to(dtype)[..., None])
        return x * mask[..., None], mask

    def forward(self, peaks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x, mask = self.tokens(peaks)
        cls = self.cls.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        padding = torch.cat([torch.zeros_like(mask[:, :1]), ~mask], dim=1)  # the CLS token is never masked
        x = self.transformer(x, src_key_padding_mask=padding)
        return self.projection(self.norm(x[:, 0]))
