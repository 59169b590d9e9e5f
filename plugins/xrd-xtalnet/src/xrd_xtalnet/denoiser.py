"""CSPDenoiser: a periodic-invariant denoiser of a noisy cell (CSPNet-like, as in DiffCSP).

Inputs: atomic numbers, noisy fractional coordinates ``f`` (N, 3), noisy lattice ``L`` (G, 3, 3,
rows, in the diffusion's lattice units), the time ``t`` in (0, 1] per crystal and, optionally,
a conditioning vector per crystal (XtalNet: the PXRD embedding).

* Nodes: an embedding of the atomic number concatenated with a sinusoidal embedding of t and the
  condition, mapped to ``hidden`` features.
* ``layers`` message-passing layers over **all** pairs (i, j) of atoms of a cell, self-pair
  included: the message is an MLP of ``h_i``, ``h_j``, the six inner products of the lattice
  vectors ``L Lᵀ`` (rows a, b, c: a·a, b·b, c·c, a·b, a·c, b·c) and Fourier features
  ``sin 2πk Δf, cos 2πk Δf`` (k = 1..``frequencies``) of ``Δf = f_j - f_i``; messages are averaged
  over j, and ``h_i ← h_i + MLP(LayerNorm(h_i), mean message)``.
* Outputs: per atom, 3 numbers, the σ-scaled score of the coordinates (fractional); per crystal,
  ``ε̂ = Φ_a L + Φ_b U`` with Φ_a, Φ_b (3 × 3) linear maps of the mean of the node features and
  ``U = (L Lᵀ)^{-1/2} L`` the rotation part of L (its polar factor). DiffCSP uses ``Φ L`` alone;
  with U the map to the clean lattice's shape, ``Φ_b``, need not depend on ``L Lᵀ``, which makes
  the lattice much easier to learn (an O(3)-equivariant ε̂ cannot single out one orientation).

Δf enters only through periodic functions and L only through ``L Lᵀ``, so the outputs are
unchanged by moving the origin and by wrapping coordinates; the coordinate output is invariant
and ``ε̂`` equivariant under rotations (``L → L Rᵀ`` gives ``U Rᵀ`` and ``ε̂ Rᵀ``); both are equivariant under
renumbering the atoms.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["CSPDenoiser", "all_pairs", "polar_rotation"]

MAX_Z = 118


def all_pairs(batch: torch.Tensor, n_crystals: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(i, j)`` for every ordered pair of atoms of the same crystal, self-pairs included, for
    atoms grouped contiguously by ``batch``."""
    counts = torch.bincount(batch, minlength=n_crystals or 0)
    starts = torch.cumsum(counts, 0) - counts
    sizes = counts ** 2
    owner = torch.repeat_interleave(torch.arange(len(counts), device=batch.device), sizes)
    local = torch.arange(int(sizes.sum()), device=batch.device) - torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
    n = counts[owner]
    return starts[owner] + local // n, starts[owner] + local % n


def polar_rotation(lattice: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """``U = (L Lᵀ)^{-1/2} L`` for lattices ``(G, 3, 3)`` (rows): orthogonal, with ``L = (L Lᵀ)^{1/2} U``;
    eigenvalues of ``L Lᵀ`` are floored at ``floor`` so that a near-singular L gives a finite U."""
    values, vectors = torch.linalg.eigh(lattice @ lattice.transpose(1, 2))
    inverse_root = vectors @ torch.diag_embed(values.clamp(min=floor).rsqrt()) @ vectors.transpose(1, 2)
    return inverse_root @ lattice


def _time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    frequency = torch.exp(torch.arange(half, device=t.device, dtype=t.dtype) * (-math.log(1e4) / max(half - 1, 1)))
    angle = 1000 * t[:, None] * frequency
    return torch.cat([angle.sin(), angle.cos()], dim=1)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, n_out), nn.SiLU())


class _Layer(nn.Module):
    def __init__(self, hidden: int, frequencies: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.message = _mlp(2 * hidden + 6 + 6 * frequencies, hidden, hidden)
        self.update = _mlp(2 * hidden, hidden, hidden)

    def forward(self, h, pairs, counts, batch, gram, fourier):
        i, j = pairs
        x = self.norm(h)
        messages = self.message(torch.cat([x[i], x[j], gram[batch[i]], fourier], dim=1))
        mean = messages.new_zeros(h.shape).index_add_(0, i, messages) / counts[batch].to(h.dtype)[:, None]
        return h + self.update(torch.cat([x, mean], dim=1))


class CSPDenoiser(nn.Module):
    """See the module docstring. Arguments: ``hidden`` 256, ``layers`` 4, ``frequencies`` 16,
    ``time_dim`` 64, ``cond_dim`` 0 (no condition; XtalNet: the CPCP embedding size)."""

    def __init__(self, *, hidden: int = 256, layers: int = 4, frequencies: int = 16, time_dim: int = 64,
                 cond_dim: int = 0):
        super().__init__()
        if min(hidden, layers, frequencies, time_dim) < 1 or cond_dim < 0:
            raise ValueError("hidden, layers, frequencies and time_dim must be positive and cond_dim >= 0")
        self.hidden, self.frequencies, self.time_dim, self.cond_dim = hidden, frequencies, time_dim, cond_dim
        self.species = nn.Embedding(MAX_Z + 1, hidden)
        self.node_in = nn.Linear(hidden + time_dim + cond_dim, hidden)
        self.layers = nn.ModuleList(_Layer(hidden, frequencies) for _ in range(layers))
        self.out_norm = nn.LayerNorm(hidden)
        self.coord_out = nn.Linear(hidden, 3, bias=False)
        self.lattice_out = nn.Linear(hidden, 18, bias=False)

    def forward(self, numbers: torch.Tensor, frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor,
                t: torch.Tensor, condition: torch.Tensor | None = None,
                pairs: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ε̂ (G, 3, 3), σ-scaled coordinate score (N, 3))``; ``pairs`` from :func:`all_pairs` may be
        passed to reuse them across calls."""
        g = lattice.shape[0]
        counts = torch.bincount(batch, minlength=g)
        if pairs is None:
            pairs = all_pairs(batch, g)
        node = [self.species(numbers), _time_embedding(t, self.time_dim)[batch]]
        if self.cond_dim:
            if condition is None or condition.shape != (g, self.cond_dim):
                raise ValueError(f"this denoiser needs a condition of shape ({g}, {self.cond_dim}), got "
                                 f"{None if condition is None else tuple(condition.shape)}")
            node.append(condition.to(frac.dtype)[batch])
        h = self.node_in(torch.cat(node, dim=1))
        product = lattice @ lattice.transpose(1, 2)
        gram = torch.stack([product[:, 0, 0], product[:, 1, 1], product[:, 2, 2],
                            product[:, 0, 1], product[:, 0, 2], product[:, 1, 2]], dim=1)
        delta = frac[pairs[1]] - frac[pairs[0]]
        k = torch.arange(1, self.frequencies + 1, device=frac.device, dtype=frac.dtype)
        angle = 2 * math.pi * (delta[:, :, None] * k).reshape(len(delta), -1)
        fourier = torch.cat([angle.sin(), angle.cos()], dim=1)
        for layer in self.layers:
            h = layer(h, pairs, counts, batch, gram, fourier)
        h = self.out_norm(h)
        pooled = h.new_zeros(g, h.shape[1]).index_add_(0, batch, h) / counts.clamp(min=1).to(h.dtype)[:, None]
        phi = self.lattice_out(pooled).reshape(g, 2, 3, 3)
        with torch.no_grad():
            rotation = polar_rotation(lattice.detach())
        return phi[:, 0] @ lattice + phi[:, 1] @ rotation, self.coord_out(h)
