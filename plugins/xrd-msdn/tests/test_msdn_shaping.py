"""Shaping: the pairs joined are exactly those under the threshold, and the drawing covers
exactly the pixels a brute-force distance computation says it should."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from xrd_msdn.shaping import rasterise, shape_segments


def brute_force_pairs(points: list[tuple[float, float]], factor: float) -> set[tuple[int, int]]:
    distances = {(i, j): math.dist(points[i], points[j]) for i, j in itertools.combinations(range(len(points)), 2)}
    smallest = min(distances.values())
    return {pair for pair, d in distances.items() if d <= factor * smallest * (1 + 1e-9)}


def test_square_net_joins_edges_and_diagonals_hexagonal_net_only_edges():
    square = [(float(i), float(j)) for i in range(5) for j in range(5)]
    pairs = shape_segments(torch.tensor(square), 1.7)
    lengths = sorted({round(math.dist(square[i], square[j]), 9) for i, j in pairs.tolist()})
    assert lengths == [1.0, round(math.sqrt(2), 9)]  # √2 < 1.7 < 2
    assert len(pairs) == 2 * 5 * 4 + 2 * 4 * 4  # 40 edges, 32 diagonals
    hexagonal = [(i + 0.5 * j, j * math.sqrt(3) / 2) for i in range(5) for j in range(5)]
    pairs = shape_segments(torch.tensor(hexagonal), 1.7)
    assert {round(math.dist(hexagonal[i], hexagonal[j]), 9) for i, j in pairs.tolist()} == {1.0}  # √3 > 1.7
    assert len(pairs) == 2 * 4 * 5 + 4 * 4  # edges along a, along b, and along b − a


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("factor", [1.0, 1.3, 1.7, 2.5])
def test_pairs_are_exactly_those_under_the_threshold(seed, factor):
    g = torch.Generator().manual_seed(seed)
    points = (torch.rand(40, 2, generator=g, dtype=torch.float64) * 10).tolist()
    pairs = shape_segments(torch.tensor(points), factor)
    got = [tuple(p) for p in pairs.tolist()]
    assert got == sorted(got) and all(i < j for i, j in got)  # lexicographic, i < j
    assert set(got) == brute_force_pairs(points, factor)


def test_threshold_is_inclusive_and_few_spots_give_no_pairs():
    # distances 1, 1.7 and 2.7: the second is exactly 1.7 × the smallest and is joined
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.7, 0.0]], dtype=torch.float64)
    assert shape_segments(points, 1.7).tolist() == [[0, 1], [1, 2]]
    assert shape_segments(points, 1.69).tolist() == [[0, 1]]
    assert shape_segments(torch.zeros(1, 2)).shape == (0, 2)
    assert shape_segments(torch.zeros(0, 2)).shape == (0, 2)
    with pytest.raises(ValueError, match="factor"):
        shape_segments(points, 0.5)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        shape_segments(torch.zeros(3, 3))


def brute_force_raster(image, start, end, radius, values, n_images, height, width):
    """Every pixel against every capsule: coverage clamp(r + 0.5 − d, 0, 1), the maximum."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    out = torch.zeros(values.shape[1], n_images, height, width, dtype=torch.float64)
    for k in range(len(image)):
        a, b = start[k].double(), end[k].double()
        d = b - a
        length2 = float(d @ d)
        t = ((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / length2 if length2 > 0 else torch.zeros_like(xs)
        t = t.clamp(0, 1)
        distance = torch.hypot(xs - a[0] - t * d[0], ys - a[1] - t * d[1])
        coverage = (radius[k] + 0.5 - distance).clamp(0, 1)
        for c in range(values.shape[1]):
            out[c, image[k]] = torch.maximum(out[c, image[k]], coverage * values[k, c])
    return out.float()


def test_rasterise_covers_exactly_what_a_per_pixel_computation_covers():
    g = torch.Generator().manual_seed(0)
    n, h, w = 60, 37, 41
    image = torch.randint(0, 3, (n,), generator=g)
    start = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([w + 10.0, h + 10.0]) - 5
    end = start + (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * 40
    end[:10] = start[:10]  # spots: capsules of length 0
    end[10:15, 1] = start[10:15, 1]  # horizontal
    end[15:20, 0] = start[15:20, 0]  # vertical
    radius = torch.rand(n, generator=g, dtype=torch.float64) * 3
    values = torch.rand(n, 2, generator=g)
    ours = rasterise(image, start, end, radius, values, 3, h, w)
    assert ours.shape == (2, 3, h, w) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, brute_force_raster(image, start, end, radius, values, 3, h, w),
                               atol=2e-6, rtol=0)
    # and the order of the capsules does not matter, to the bit
    order = torch.randperm(n, generator=g)
    assert torch.equal(ours, rasterise(image[order], start[order], end[order], radius[order], values[order], 3, h, w))


def test_a_segment_lights_its_pixels_and_nothing_else():
    out = rasterise(torch.tensor([0]), torch.tensor([[10.0, 10.0]]), torch.tensor([[30.0, 10.0]]),
                    torch.tensor([1.0]), torch.ones(1, 1), 1, 21, 41)[0, 0]
    # coverage clamp(r + 0.5 − d, 0, 1) with r = 1, d = distance from the pixel centre
    assert out[10, 10:31].eq(1).all()  # on the segment
    assert out[9, 10:31].eq(0.5).all() and out[11, 10:31].eq(0.5).all()  # d = 1
    assert out[8].eq(0).all() and out[12].eq(0).all()  # d = 2
    assert out[10, 9] == 0.5 and out[10, 31] == 0.5 and out[10, 8] == 0 and out[10, 32] == 0  # end caps
    assert out[9, 9].item() == pytest.approx(1.5 - math.sqrt(2), abs=1e-6)
    assert int((out > 0).sum()) == 3 * 23
