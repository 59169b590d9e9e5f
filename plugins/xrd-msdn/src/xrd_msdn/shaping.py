"""Shaping a spot pattern (Tiong et al.): lines between near spots, drawn over spot pairs.

:func:`shape_segments` picks the pairs: every pair of spots closer than ``factor`` (1.7) times the
smallest distance between two spots of the pattern. 1.7 lies between √2 and √3, so a square net
gets its edges and diagonals, a hexagonal net only its edges: the lines make the lattice's
symmetry visible. The published code compares every pair of bright *pixels* (O(pixels²), with
four nested loops over a 256 × 256 image); here the pairs are spots, O(spots²), as one tensor
operation.

:func:`rasterise` draws capsules (a segment with a radius; a spot is a capsule of length 0) into
images without a loop over pixels: all capsules of all images at once, each enumerating the rows
it can touch and, per row, the columns within reach of its line (flat indices built with
``repeat_interleave``, no padding). Each pixel takes the maximum over capsules of its antialiased
coverage ``clamp(r + 0.5 − d, 0, 1)`` (d: distance from the pixel centre to the segment, in
pixels) times the capsule's value. The work is about (length + 2r + 1) × (2r + 1) × √2 pixel
visits per capsule, whatever its direction; the maximum makes the result independent of the order
of capsules, so rendering is deterministic.
"""

from __future__ import annotations

import torch

__all__ = ["rasterise", "shape_segments"]

#: relative tolerance on the threshold, so that equal distances computed with rounding agree
_RELATIVE_TOLERANCE = 1e-9
#: pixel visits evaluated at once by :func:`rasterise` (bounds memory, not results)
_CHUNK = 1 << 21


def shape_segments(positions: torch.Tensor, factor: float = 1.7) -> torch.Tensor:
    """``(K, 2)`` long: the pairs ``(i, j)``, ``i < j``, of spots whose distance is at most
    ``factor`` × the smallest distance between two spots (``positions`` ``(N, 2)``, any unit),
    in lexicographic order. Fewer than two spots give no pairs. Positions should be distinct:
    two equal positions make the smallest distance 0 and connect only themselves."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1:
        raise ValueError(f"factor must be a number >= 1, got {factor!r}")
    positions = torch.as_tensor(positions)
    if positions.dim() != 2 or positions.shape[1] != 2:
        raise ValueError(f"positions must be (N, 2), got {tuple(positions.shape)}")
    n = len(positions)
    if n < 2:
        return torch.zeros(0, 2, dtype=torch.long, device=positions.device)
    x, y = positions.double().unbind(1)
    squared = (x[:, None] - x[None]) ** 2 + (y[:, None] - y[None]) ** 2  # (N, N)
    upper = torch.ones(n, n, dtype=torch.bool, device=positions.device).triu_(1)
    smallest = squared.masked_fill(~upper, torch.inf).min()
    return torch.nonzero((squared <= smallest * factor ** 2 * (1 + _RELATIVE_TOLERANCE)) & upper)


def rasterise(image: torch.Tensor, start: torch.Tensor, end: torch.Tensor, radius: torch.Tensor,
              values: torch.Tensor, n_images: int, height: int, width: int) -> torch.Tensor:
    """``(K, n_images, height, width)`` float32: per value channel k, the maximum over capsules of
    coverage × ``values[:, k]``.

    ``image`` ``(P,)`` long: which image each capsule belongs to; ``start``, ``end`` ``(P, 2)``:
    its end points as (column, row) in pixels, pixel centres at integers; ``radius`` ``(P,)``
    pixels; ``values`` ``(P, K)``. Pixels that no capsule covers are 0."""
    values = values.float()
    device = start.device
    out = torch.zeros(values.shape[1], n_images * height * width, dtype=torch.float32, device=device)
    if len(image) == 0:
        return out.view(-1, n_images, height, width)
    a, b = start.double(), end.double()
    reach = radius.double() + 0.5  # coverage is 0 beyond r + 0.5
    # rows each capsule can touch, then the columns of each (capsule, row)
    top = torch.ceil(torch.minimum(a[:, 1], b[:, 1]) - reach).clamp(min=0).long()
    bottom = torch.floor(torch.maximum(a[:, 1], b[:, 1]) + reach).clamp(max=height - 1).long()
    rows_per = (bottom - top + 1).clamp(min=0)
    capsule = torch.repeat_interleave(torch.arange(len(image), device=device), rows_per)
    y = top[capsule] + torch.arange(len(capsule), device=device) - (torch.cumsum(rows_per, 0) - rows_per)[capsule]
    left, right = _row_span(a[capsule], b[capsule], reach[capsule], y.double())
    left = torch.ceil(left).clamp(min=0).long()
    right = torch.floor(right).clamp(max=width - 1).long()
    counts = (right - left + 1).clamp(min=0)
    # (capsule, row) pairs in groups of about _CHUNK pixel visits, to bound memory; the maximum is
    # order-free, so the grouping does not change the result
    ends = torch.cumsum(counts, 0)
    begin = 0
    while begin < len(counts):
        already = int(ends[begin - 1]) if begin else 0
        stop = max(begin + 1, int(torch.searchsorted(ends, already + _CHUNK, right=True)))
        part = slice(begin, stop)
        _visit(out, image, a, b, radius, values, capsule[part], y[part], left[part], counts[part], height, width)
        begin = stop
    return out.view(-1, n_images, height, width)


def _row_span(a: torch.Tensor, b: torch.Tensor, reach: torch.Tensor, y: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns (as reals) of row ``y`` that may lie within ``reach`` of the segment a→b: its
    bounding box, cut to the band of half-width ``reach`` around the line (a superset of the
    capsule's row, tight but for the end caps)."""
    low = torch.minimum(a[:, 0], b[:, 0]) - reach
    high = torch.maximum(a[:, 0], b[:, 0]) + reach
    dx, dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    slanted = dy.abs() > 1e-9
    half = reach * torch.sqrt(dx * dx + dy * dy) / dy.abs().clamp(min=1e-9)
    centre = a[:, 0] + (y - a[:, 1]) * dx / torch.where(slanted, dy, torch.ones_like(dy))
    low = torch.where(slanted, torch.maximum(low, centre - half), low)
    high = torch.where(slanted, torch.minimum(high, centre + half), high)
    return low, high


def _visit(out: torch.Tensor, image: torch.Tensor, a: torch.Tensor, b: torch.Tensor, radius: torch.Tensor,
           values: torch.Tensor, capsule: torch.Tensor, y: torch.Tensor, left: torch.Tensor, counts: torch.Tensor,
           height: int, width: int) -> None:
    """Every pixel of the given (capsule, row) spans: coverage, then the running maximum in ``out``."""
    device = out.device
    span = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    x = left[span] + torch.arange(len(span), device=device) - (torch.cumsum(counts, 0) - counts)[span]
    which = capsule[span]
    start = a[which]
    px = (x - start[:, 0]).float()  # pixel centre relative to the segment's start, in float32:
    py = (y[span] - start[:, 1]).float()  # small numbers, exact enough for a coverage
    d = (b[which] - start).float()
    length2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]
    t = ((px * d[:, 0] + py * d[:, 1]) / length2.clamp(min=1e-12)).clamp(0, 1)
    ex, ey = px - t * d[:, 0], py - t * d[:, 1]
    coverage = (radius[which].float() + 0.5 - torch.sqrt(ex * ex + ey * ey)).clamp(0, 1)
    lit = coverage > 0
    flat = ((image[which] * height + y[span]) * width + x)[lit]
    coverage, source = coverage[lit], which[lit]
    for channel in range(out.shape[0]):
        out[channel].scatter_reduce_(0, flat, coverage * values[source, channel], "amax", include_self=True)
