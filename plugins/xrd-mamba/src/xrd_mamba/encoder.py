"""XRDMamba (Yu et al., CIKM 2024) as an xrdcore ``profile`` encoder.

A powder pattern on a fixed 2θ grid is read as a sequence of crystal planes: every grid point is a
token, an embedding of its angle scaled by its intensity. A stack of Mamba blocks mixes the tokens
along 2θ, and a residual 1-D CNN with a pool after every block reduces the sequence to one vector,
the embedding. Defaults are the paper's; where its public code differs, the code's choice is an
option or a documented deviation (see the plugin's README).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xrd_mamba.scan import BACKENDS, selective_scan
from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid, as_grid
from xrdcore.interfaces import Encoder
from xrdcore.validate import int_tuple, positive_int

__all__ = ["TOKENS", "MambaBlock", "MambaEncoder"]

#: how a profile becomes tokens: the paper's Linear(1→k) of each point's angle, the code's learned
#: vector per grid point, or the raw intensity (the ablation without crystal planes)
TOKENS = ("angle", "bin", "intensity")

#: the paper's residual CNN: 13 blocks, channel widths of Yu et al.
PAPER_CNN_CHANNELS = (32, 32, 64, 64, 128, 128, 256, 256, 256, 512, 512, 1024, 1024)


def _choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


class RMSNorm(nn.Module):
    """x / rms(x) · weight over the last axis (no mean subtraction), as in Mamba's blocks."""

    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class MambaBlock(nn.Module):
    """RMSNorm → selective-SSM mixer → residual, on (batch, L, width) token sequences.

    The mixer: a linear map to ``expand × width`` channels and a gate z; a causal depthwise conv
    over ``conv_width`` grid points and SiLU; from those channels Δ (through a rank-``dt_rank``
    bottleneck, softplus), B and C; the selective scan with A = -exp(A_log) (initialised to
    -1, …, -state_size per channel), skip D and gate silu(z); a linear map back to ``width``.
    Δ starts log-uniform in [1e-3, 1e-1] per channel, as in Mamba.
    """

    def __init__(self, width: int, state_size: int, expand: int, conv_width: int, dt_rank: int,
                 scan_backend: str = "auto", scan_chunk_size: int | None = None):
        super().__init__()
        inner = expand * width
        self.state_size, self.dt_rank = state_size, dt_rank
        self.scan_backend, self.scan_chunk_size = scan_backend, scan_chunk_size
        self.norm = RMSNorm(width)
        self.in_proj = nn.Linear(width, 2 * inner, bias=False)
        self.conv = nn.Conv1d(inner, inner, conv_width, groups=inner, padding=conv_width - 1)
        self.x_proj = nn.Linear(inner, dt_rank + 2 * state_size, bias=False)
        self.dt_proj = nn.Linear(dt_rank, inner)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state_size + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, width, bias=False)
        with torch.no_grad():
            nn.init.uniform_(self.dt_proj.weight, -dt_rank ** -0.5, dt_rank ** -0.5)
            dt = torch.exp(torch.empty(inner).uniform_(math.log(1e-3), math.log(1e-1))).clamp_min(1e-4)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus(bias) = dt

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        u, z = self.in_proj(self.norm(tokens)).chunk(2, dim=-1)
        u = F.silu(self.conv(u.transpose(1, 2))[..., :length].transpose(1, 2))  # causal: drop the look-ahead
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.state_size, self.state_size], dim=-1)
        y = selective_scan(u, F.softplus(self.dt_proj(dt)), -torch.exp(self.A_log), B, C, self.D, z,
                           backend=self.scan_backend, chunk_size=self.scan_chunk_size)
        return tokens + self.out_proj(y)


class _ResidualBlock(nn.Module):
    """conv k-BN-ReLU-conv k-BN plus the input (through a 1×1 conv + BN when the width changes), ReLU."""

    def __init__(self, n_in: int, n_out: int, kernel_size: int):
        super().__init__()
        pad = (kernel_size - 1) // 2, kernel_size // 2
        self.body = nn.Sequential(
            nn.ConstantPad1d(pad, 0.0), nn.Conv1d(n_in, n_out, kernel_size, bias=False), nn.BatchNorm1d(n_out),
            nn.ReLU(inplace=True),
            nn.ConstantPad1d(pad, 0.0), nn.Conv1d(n_out, n_out, kernel_size, bias=False), nn.BatchNorm1d(n_out))
        self.shortcut = (nn.Sequential(nn.Conv1d(n_in, n_out, 1, bias=False), nn.BatchNorm1d(n_out))
                         if n_in != n_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class MambaEncoder(Encoder):
    """XRDMamba encoder (Yu et al., CIKM 2024): crystal-plane tokens → Mamba blocks → residual CNN.

    Input ``(B, grid.length)`` relative intensities (max 1) on the data's 2θ ``grid``
    (:class:`~xrdcore.diffraction.profile.AngleGrid`: points uniform in 2θ or in ln 1/d over
    start–stop). Tokens (``tokens``):

    * ``"angle"`` (paper, default): Linear(1 → ``token_dim``) of the point's angle, normalised as
      (2θ - start) / (stop - start), so the grid maps onto [0, 1), times the intensity;
    * ``"bin"`` (the published code): a learned ``token_dim`` vector per grid point times the intensity
      (one per point of this grid, not the code's fixed 5,000);
    * ``"intensity"`` (ablation, no crystal planes): Linear(1 → ``token_dim``) of the intensity, or,
      with ``ssm=False``, the raw profile as one channel ("ResNet alone" in the paper's ablation).

    Then ``depth`` Mamba blocks (:class:`MambaBlock`; paper: 8 blocks, k = ``token_dim`` = 8,
    ``state_size`` 16, ``expand`` 2, ``conv_width`` 4, ``dt_rank`` = ceil(k / 16)) and a final
    RMSNorm; ``ssm=False`` drops them (ablation). The residual CNN has one block per entry of
    ``cnn_channels`` (paper: 13 blocks, 32 … 1024), each followed by a max-pool of 2 (while the
    sequence is longer than 1), and a global average over what is left. The embedding is that
    pooled CNN output, ``embed_dim = cnn_channels[-1]``; the paper's MLP to 230 classes is not part
    of the encoder (xrdcore puts one head per label level on the embedding).

    ``scan_backend`` (``auto``, ``torch``, ``cuda``) and ``scan_chunk_size`` choose the selective
    scan (:func:`xrd_mamba.scan.selective_scan`); they change speed, not results.
    """

    input_kind = "profile"

    def __init__(self, grid: AngleGrid = DEFAULT_GRID, tokens: str = "angle", token_dim: int = 8, depth: int = 8,
                 state_size: int = 16,
                 expand: int = 2, conv_width: int = 4, dt_rank: int | None = None, ssm: bool = True,
                 cnn_channels: Sequence[int] = PAPER_CNN_CHANNELS, cnn_kernel_size: int = 3,
                 scan_backend: str = "auto", scan_chunk_size: int | None = None):
        super().__init__()
        self.grid = as_grid("grid", grid)
        self.input_length = self.grid.length
        self.tokens = _choice("tokens", tokens, TOKENS)
        if not isinstance(ssm, bool):
            raise TypeError(f"ssm must be true or false, got {ssm!r}")
        self.ssm = ssm
        token_dim = positive_int("token_dim", token_dim)
        for name, value in (("depth", depth), ("state_size", state_size), ("expand", expand),
                            ("conv_width", conv_width), ("cnn_kernel_size", cnn_kernel_size)):
            positive_int(name, value)
        dt_rank = math.ceil(token_dim / 16) if dt_rank is None else positive_int("dt_rank", dt_rank)
        _choice("scan_backend", scan_backend, BACKENDS)
        if scan_chunk_size is not None:
            positive_int("scan_chunk_size", scan_chunk_size)
        channels = int_tuple("cnn_channels", cnn_channels)

        if self.tokens == "angle":
            # (2θ_i - start) / (stop - start), 2θ_i of point i on the data's axis (uniform in 2θ or ln 1/d)
            start, stop = self.grid.start, self.grid.stop
            angles = (torch.from_numpy(self.grid.values) - start) / (stop - start)
            self.register_buffer("angles", angles.float()[:, None], persistent=False)
            self.embed = nn.Linear(1, token_dim)
        elif self.tokens == "bin":
            self.embed = nn.Embedding(self.input_length, token_dim)
        elif ssm:
            self.embed = nn.Linear(1, token_dim)
        raw = self.tokens == "intensity" and not ssm
        self.blocks = nn.ModuleList(
            MambaBlock(token_dim, state_size, expand, conv_width, dt_rank, scan_backend, scan_chunk_size)
            for _ in range(depth if ssm else 0))
        self.norm = RMSNorm(token_dim) if ssm else nn.Identity()
        widths = (1 if raw else token_dim, *channels)
        self.cnn = nn.ModuleList(_ResidualBlock(a, b, cnn_kernel_size) for a, b in itertools.pairwise(widths))
        self.embed_dim = channels[-1]

    def crystal_planes(self, profile: torch.Tensor) -> torch.Tensor:
        """Tokens (B, L, token_dim), or (B, L, 1) for the raw profile without SSM."""
        intensity = profile[..., None]
        if self.tokens == "angle":
            return intensity * self.embed(self.angles)
        if self.tokens == "bin":
            return intensity * self.embed.weight
        return self.embed(intensity) if self.ssm else intensity

    def no_weight_decay(self) -> list[str]:
        """Parameters AdamW must not decay (xrdcore's trainer honours this): the SSM's A_log and D,
        whose decay towards 0 would change the dynamics, as in Mamba's own training."""
        return [n for n, _ in self.named_parameters() if n.rsplit(".", 1)[-1] in ("A_log", "D")]

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if not isinstance(batch, torch.Tensor) or batch.ndim != 2 or batch.shape[1] != self.input_length:
            got = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise ValueError(f"mamba expects (batch, {self.input_length}) profiles (input_length={self.input_length}), "
                             f"got {got}; build it with the grid of the data")
        x = self.crystal_planes(batch if batch.is_floating_point() else batch.float())
        for block in self.blocks:
            x = block(x)
        x = self.norm(x).transpose(1, 2)
        for block in self.cnn:
            x = block(x)
            if x.shape[-1] > 1:
                x = F.max_pool1d(x, 2, ceil_mode=True)
        return x.mean(-1)
