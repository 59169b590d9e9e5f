"""The diffusion processes against their closed forms, and the denoiser's symmetries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from xrd_xtalnet.denoiser import CSPDenoiser, all_pairs, polar_rotation
from xrd_xtalnet.diffusion import (
    CosineSchedule,
    CrystalDiffusion,
    WrappedNormalSchedule,
    sampling_times,
    wrapped_normal_log_density,
    wrapped_normal_score,
)


def test_cosine_schedule_is_the_closed_form():
    T, s = 1000, 0.008
    schedule = CosineSchedule(T)
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    for t in (0, 1, 10, 250, 500, 900):
        assert schedule.alpha_bars[t].item() == pytest.approx(f(t) / f(0), rel=1e-9)
    assert torch.all(schedule.alpha_bars[1:] < schedule.alpha_bars[:-1])
    assert schedule.alpha_bars[T].item() < 1e-4 and schedule.betas.max().item() <= 0.999


def test_lattice_forward_process_has_the_closed_form_mean_and_variance():
    schedule = CosineSchedule(1000)
    g = torch.Generator().manual_seed(0)
    l0 = torch.tensor([[1.2, 0.1, -0.3], [0.0, 0.9, 0.2], [0.4, -0.5, 1.1]], dtype=torch.float64)
    n = 40_000
    for t in (1, 300, 700, 1000):
        ab = schedule.alpha_bars[t].item()
        times = torch.full((n,), t)
        samples = schedule.q_sample(l0.expand(n, 3, 3), times, torch.randn(n, 3, 3, generator=g, dtype=torch.float64))
        assert torch.allclose(samples.mean(0), math.sqrt(ab) * l0, atol=4 * math.sqrt((1 - ab) / n) + 1e-12)
        assert torch.allclose(samples.var(0), torch.full((3, 3), 1 - ab, dtype=torch.float64),
                              atol=5 * (1 - ab) * math.sqrt(2 / n) + 1e-12)


def test_ancestral_step_with_the_true_noise_is_the_posterior_mean():
    """With the exact ε, the step's mean is q(x_{t'} | x_t, x_0)'s: a ᾱ-weighted mix of x_0 and x_t."""
    schedule = CosineSchedule(100)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 3, generator=g, dtype=torch.float64)
    for t, t_prev in [(50, 49), (50, 30), (5, 0)]:
        xt = schedule.q_sample(x0[None], torch.tensor([t]), eps[None])[0]
        ab, ab_prev = schedule.alpha_bars[t].item(), schedule.alpha_bars[t_prev].item()
        alpha = ab / ab_prev
        mean = (math.sqrt(ab_prev) * (1 - alpha) * x0 + math.sqrt(alpha) * (1 - ab_prev) * xt) / (1 - ab)
        assert torch.allclose(schedule.step(xt, eps, t, t_prev, torch.zeros(3, 3, dtype=torch.float64)), mean, atol=1e-10)
    assert torch.allclose(schedule.step(xt, eps, 5, 0, torch.zeros(3, 3, dtype=torch.float64)), x0, atol=1e-10)


@pytest.mark.parametrize("sigma", [0.005, 0.05, 0.2, 0.5, 1.5])
def test_wrapped_normal_score_is_the_gradient_of_its_log_density(sigma):
    x = torch.linspace(-0.7, 1.3, 81, dtype=torch.float64)
    h = 1e-6 * max(sigma, 0.01)
    numeric = (wrapped_normal_log_density(x + h, sigma) - wrapped_normal_log_density(x - h, sigma)) / (2 * h)
    score = wrapped_normal_score(x, sigma)
    assert torch.allclose(score, numeric, rtol=1e-5, atol=1e-5 / sigma)
    assert torch.allclose(score, wrapped_normal_score(x + 1.0, sigma), atol=1e-8 / sigma ** 2)  # periodic
    grid = torch.linspace(0, 1, 20_001, dtype=torch.float64)[:-1]
    assert wrapped_normal_log_density(grid, sigma).exp().mean().item() == pytest.approx(1.0, rel=1e-6)  # a density
    if sigma <= 0.05:  # far from the images it is the normal's score
        assert torch.allclose(wrapped_normal_score(x[35:46] * 0.01, sigma), -(x[35:46] * 0.01) / sigma ** 2, rtol=1e-9)


def test_coordinate_forward_process_is_the_wrapped_normal():
    schedule = WrappedNormalSchedule(1000, 0.005, 0.5)
    assert schedule.sigmas[1].item() == pytest.approx(0.005) and schedule.sigmas[1000].item() == pytest.approx(0.5)
    ratios = schedule.sigmas[2:] / schedule.sigmas[1:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))  # geometric
    g = torch.Generator().manual_seed(2)
    f0 = torch.full((200_000, 1), 0.9, dtype=torch.float64)
    sigma = 0.3
    ft = schedule.q_sample(f0, sigma, torch.randn(f0.shape, generator=g, dtype=torch.float64))
    assert ft.min() >= 0 and ft.max() < 1
    counts, edges = np.histogram((ft - f0).remainder(1.0).numpy(), bins=20, range=(0, 1))
    centres = torch.tensor((edges[:-1] + edges[1:]) / 2)
    expected = wrapped_normal_log_density(centres, sigma).exp().numpy() / 20 * len(f0)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 5)


def test_sampling_times_visit_each_time_once_from_t_down_to_one():
    assert sampling_times(1000, None) == list(range(1000, 0, -1))
    times = sampling_times(1000, 10)
    assert times[0] == 1000 and times[-1] == 1 and len(times) == 10 and times == sorted(times, reverse=True)
    with pytest.raises(ValueError):
        sampling_times(100, 0)


def test_all_pairs_lists_every_ordered_pair_of_each_crystal():
    batch = torch.tensor([0, 0, 1, 2, 2, 2])
    i, j = all_pairs(batch)
    expected = sorted([(a, b) for group in ([0, 1], [2], [3, 4, 5]) for a in group for b in group])
    assert sorted(zip(i.tolist(), j.tolist())) == expected


def _denoiser_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = torch.tensor([0, 0, 0, 1, 1])
    numbers = torch.tensor([11, 17, 8, 14, 14])
    frac = torch.rand(5, 3, generator=g, dtype=torch.float64)
    lattice = torch.randn(2, 3, 3, generator=g, dtype=torch.float64) + 2 * torch.eye(3, dtype=torch.float64)
    return numbers, frac, lattice, batch, torch.tensor([0.3, 0.8], dtype=torch.float64), \
        torch.randn(2, 4, generator=g, dtype=torch.float64)


def test_denoiser_symmetries():
    torch.manual_seed(0)
    model = CSPDenoiser(hidden=16, layers=2, frequencies=3, time_dim=8, cond_dim=4).double()
    numbers, frac, lattice, batch, t, condition = _denoiser_inputs()
    eps, score = model(numbers, frac, lattice, batch, t, condition)
    assert eps.shape == (2, 3, 3) and score.shape == (5, 3)
    rotation = torch.tensor(Rotation.random(random_state=3).as_matrix())
    eps_r, score_r = model(numbers, frac, lattice @ rotation.T, batch, t, condition)
    assert torch.allclose(eps_r, eps @ rotation.T, atol=1e-9) and torch.allclose(score_r, score, atol=1e-9)
    shift = torch.tensor([0.3, -0.2, 0.7], dtype=torch.float64)
    eps_s, score_s = model(numbers, (frac + shift).remainder(1.0), lattice, batch, t, condition)
    assert torch.allclose(eps_s, eps, atol=1e-9) and torch.allclose(score_s, score, atol=1e-9)
    order = torch.tensor([2, 0, 1, 4, 3])
    eps_p, score_p = model(numbers[order], frac[order], lattice, batch, t, condition)
    assert torch.allclose(eps_p, eps, atol=1e-9) and torch.allclose(score_p, score[order], atol=1e-9)
    other_condition = model(numbers, frac, lattice, batch, t, condition + 1.0)
    assert not torch.allclose(other_condition[1], score, atol=1e-6)  # the condition is used
    with pytest.raises(ValueError):
        model(numbers, frac, lattice, batch, t, None)


def test_polar_rotation_is_orthogonal_and_recovers_the_lattice():
    lattice = torch.tensor([[[3.0, 0.2, 0.1], [0.5, 4.0, 0.0], [0.3, -1.0, 5.0]]], dtype=torch.float64)
    u = polar_rotation(lattice)
    assert torch.allclose(u @ u.transpose(1, 2), torch.eye(3, dtype=torch.float64), atol=1e-10)
    values, vectors = torch.linalg.eigh(lattice @ lattice.transpose(1, 2))
    root = vectors @ torch.diag_embed(values.sqrt()) @ vectors.transpose(1, 2)
    assert torch.allclose(root @ u, lattice, atol=1e-10)
    assert torch.isfinite(polar_rotation(torch.zeros(1, 3, 3))).all()


def test_loss_has_both_parts_and_gradients():
    torch.manual_seed(0)
    from xrd_xtalnet.crystals import CrystalBatch

    model = CrystalDiffusion(denoiser={"hidden": 16, "layers": 1, "frequencies": 2, "time_dim": 8, "cond_dim": 4},
                             timesteps=50)
    numbers, frac, lattice, batch, _, condition = _denoiser_inputs()
    crystals = CrystalBatch(lattice.float() * 3, frac.float(), numbers, batch)
    loss, parts = model.loss(crystals, condition.float(), torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(parts["lattice"] + parts["coord"], rel=1e-5)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    again, _ = model.loss(crystals, condition.float(), torch.Generator().manual_seed(0))
    assert again.item() == pytest.approx(loss.item())  # reproducible from the generator
