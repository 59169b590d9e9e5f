"""Neighbours within a cutoff in a periodic crystal, over every lattice image that can hold one.

For atoms i and j of one cell, the fractional difference ``Δf = f_j - f_i`` is first wrapped
into [-0.5, 0.5]; image ``k`` (integer vector) puts j at Cartesian ``(Δf + k) L`` from i (rows of
``L`` are a, b, c). Since ``(Δf + k)_m = r · a*_m`` for the reciprocal vector a*_m, an image within
``r_c`` needs ``|Δf_m + k_m| <= r_c |a*_m|``, i.e. ``|k_m| <= r_c |a*_m| + 0.5``: the number of
images per axis follows from the cell's plane spacings ``1/|a*_m|``, not a fixed ±1, so thin or
oblique cells and cutoffs longer than the cell are handled. Self-pairs are kept for ``k != 0``
(an atom sees its own images) and dropped for ``k = 0``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["GraphError", "image_counts", "radius_graph"]

#: pairs × images evaluated for one crystal, at most; a larger request is a degenerate cell
MAX_CANDIDATES = 20_000_000


class GraphError(ValueError):
    """A cell too thin for the cutoff (it would need an unbounded number of images)."""


def image_counts(lattice: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``(3,)`` int: images needed on each side along a, b, c for neighbours within ``cutoff`` Å,
    given coordinate differences wrapped into [-0.5, 0.5]."""
    inverse, info = torch.linalg.inv_ex(lattice.double())
    if int(info) != 0 or not torch.all(torch.isfinite(inverse)):
        raise GraphError("the lattice is singular or not finite")
    need = cutoff * torch.linalg.vector_norm(inverse.T, dim=1) + 0.5  # |a*|, |b*|, |c*| (no 2π)
    return torch.ceil(need).long()


def radius_graph(lattice: torch.Tensor, frac: torch.Tensor, batch: torch.Tensor, cutoff: float
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (atom, neighbour image) pair closer than ``cutoff`` Å, crystal by crystal.

    ``lattice`` (G, 3, 3) rows in Å, ``frac`` (N, 3), ``batch`` (N,) crystal of each atom (atoms of a
    crystal contiguous). Returns ``src``, ``dst`` (E,) atom indices, ``shift`` (E, 3) the lattice
    translation (integer-valued, in fractional units) of the neighbour, and ``vectors`` (E, 3)
    ``(frac[dst] + shift - frac[src]) @ lattice``, Å, differentiable in ``lattice`` and ``frac``.
    """
    if cutoff <= 0 or not math.isfinite(cutoff):
        raise ValueError(f"cutoff must be a positive number of Å, got {cutoff!r}")
    counts = torch.bincount(batch, minlength=lattice.shape[0]).tolist()
    sources, targets, shifts = [], [], []
    start = 0
    with torch.no_grad():
        for g, n in enumerate(counts):
            if n == 0:
                continue
            cell = lattice[g].double()
            reach = image_counts(cell, cutoff)
            sides = [torch.arange(-int(m), int(m) + 1, device=frac.device, dtype=torch.float64) for m in reach]
            images = torch.cartesian_prod(*sides)  # (K, 3)
            if n * n * len(images) > MAX_CANDIDATES:
                raise GraphError(f"a {cutoff} Å cutoff needs {len(images)} images of this cell")
            f = frac[start:start + n].double()
            delta = f[None, :, :] - f[:, None, :]  # (i, j): j - i
            wrap = torch.round(delta)
            shift = images[None, None, :, :] - wrap[:, :, None, :]  # (n, n, K, 3)
            cart = (delta[:, :, None, :] + shift) @ cell
            close = (cart.square().sum(-1) < cutoff * cutoff)
            i_idx, j_idx, k_idx = torch.nonzero(close, as_tuple=True)
            shift = shift[i_idx, j_idx, k_idx]
            keep = (i_idx != j_idx) | torch.any(shift != 0, dim=1)
            sources.append(i_idx[keep] + start)
            targets.append(j_idx[keep] + start)
            shifts.append(shift[keep])
            start += n
    if not sources:
        empty = torch.zeros(0, dtype=torch.long, device=frac.device)
        return empty, empty, frac.new_zeros(0, 3), frac.new_zeros(0, 3)
    src, dst = torch.cat(sources), torch.cat(targets)
    shift = torch.cat(shifts).to(frac.dtype)
    vectors = ((frac[dst] + shift - frac[src])[:, None, :] @ lattice[batch[src]]).squeeze(1)
    return src, dst, shift, vectors
