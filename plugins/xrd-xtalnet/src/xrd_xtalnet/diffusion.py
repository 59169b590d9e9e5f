"""Joint diffusion over a crystal's lattice and fractional coordinates (DiffCSP, as used by
XtalNet's CCSG), its training loss and predictor–corrector sampling.

**Lattice: DDPM with a cosine schedule** (Nichol & Dhariwal 2021). ``ᾱ_t = f(t)/f(0)`` with
``f(t) = cos²((t/T + s)/(1 + s) · π/2)``, ``s = 0.008``, ``β_t = 1 - ᾱ_t/ᾱ_{t-1}`` clipped to 0.999.
Forward: ``L_t = √ᾱ_t L_0 + √(1-ᾱ_t) ε``; the denoiser predicts ε. The lattice is diffused in units
of ``ℓ = (N v̄)^{1/3}`` (N atoms, v̄ the mean volume per atom of the training structures) so that
its entries are of order one like the N(0, I) prior; DiffCSP diffuses the matrix in Å.
Reverse (ancestral) step from t to an earlier t' (t' = t - 1, or a coarser grid when sampling
with fewer steps): ``α = ᾱ_t/ᾱ_{t'}``, mean ``(L_t - (1-α)/√(1-ᾱ_t) ε̂)/√α``, variance the posterior
``(1-α)(1-ᾱ_{t'})/(1-ᾱ_t)`` (zero at t' = 0).

**Fractional coordinates: score matching with the wrapped normal** (variance exploding). Forward:
``f_t = (f_0 + σ_t z) mod 1`` with σ_t geometric from ``sigma_begin`` (t = 1) to ``sigma_end``
(t = T). The transition density is the wrapped normal ``p_σ(x) ∝ Σ_k exp(-(x + k)²/2σ²)``, whose score
is ``-Σ_k w_k (x + k)/σ²`` with ``w_k`` the softmax of the exponents (summed over images k).
The denoiser outputs ``σ_t × score``; the loss ``‖out - σ_t ∇log p_σt(f_t - f_0)‖²`` is denoising
score matching with the usual σ² weighting. Reverse: a Langevin corrector
``f += γ s + √(2γ) z`` with ``γ = step_lr (σ_t/σ_1)²``, then the ancestral predictor of the VE SDE
``f += (σ_t² - σ_{t'}²) s + √(σ_{t'}²(σ_t² - σ_{t'}²)/σ_t²) z``, wrapped into [0, 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from xrd_xtalnet.crystals import CrystalBatch
from xrd_xtalnet.denoiser import CSPDenoiser, all_pairs

__all__ = ["CosineSchedule", "CrystalDiffusion", "WrappedNormalSchedule", "sampling_times",
           "wrapped_normal_log_density", "wrapped_normal_score"]


def _terms(x: torch.Tensor, sigma: torch.Tensor | float, images: int | None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x + k`` over the images k (last axis), the exponents ``-(x + k)²/2σ²`` and σ, broadcast;
    x is first wrapped into [-0.5, 0.5], so the images are centred on it."""
    x, sigma = torch.broadcast_tensors(x, torch.as_tensor(sigma, dtype=x.dtype, device=x.device))
    x = x - torch.round(x)
    n = images if images is not None else math.ceil(5 * float(sigma.max())) + 2
    d = x[..., None] + torch.arange(-n, n + 1, device=x.device, dtype=x.dtype)
    return d, -d ** 2 / (2 * sigma[..., None] ** 2), sigma


def wrapped_normal_log_density(x: torch.Tensor, sigma: torch.Tensor | float, images: int | None = None
                               ) -> torch.Tensor:
    """``log Σ_k N(x + k; 0, σ²)``: the log density of a normal of width σ wrapped onto [0, 1),
    at ``x`` (σ broadcasts against it), summed over the ``2·images + 1`` images nearest to it (default
    ±(⌈5σ⌉ + 2), exact to float precision)."""
    _, exponents, sigma = _terms(x, sigma, images)
    return torch.logsumexp(exponents, dim=-1) - torch.log(sigma) - 0.5 * math.log(2 * math.pi)


def wrapped_normal_score(x: torch.Tensor, sigma: torch.Tensor | float, images: int | None = None) -> torch.Tensor:
    """``d/dx log p_σ(x)`` of the wrapped normal (see :func:`wrapped_normal_log_density`):
    ``-Σ_k w_k (x + k)/σ²``, ``w`` the softmax over images of ``-(x + k)²/2σ²``."""
    d, exponents, sigma = _terms(x, sigma, images)
    return -(torch.softmax(exponents, dim=-1) * d).sum(-1) / sigma ** 2


class CosineSchedule:
    """The lattice DDPM: ``alpha_bars`` (T + 1,) with ``alpha_bars[0] = 1``, index t = 1..T."""

    def __init__(self, timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999):
        if timesteps < 1:
            raise ValueError(f"timesteps must be positive, got {timesteps}")
        self.timesteps = int(timesteps)
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
        self.betas = betas
        self.alpha_bars = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return self.alpha_bars.to(t.device)[t]

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t`` for integer ``t`` (G,) (1..T) and ``x0``, ``noise`` (G, ...)."""
        ab = self.alpha_bar(t).to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def step(self, x_t: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int, noise: torch.Tensor) -> torch.Tensor:
        """One ancestral step from ``t`` to ``t_prev < t`` given the predicted noise ``eps``."""
        ab, ab_prev = float(self.alpha_bars[t]), float(self.alpha_bars[t_prev])
        alpha = ab / ab_prev
        mean = (x_t - (1 - alpha) / math.sqrt(1 - ab) * eps) / math.sqrt(alpha)
        variance = (1 - alpha) * (1 - ab_prev) / (1 - ab)
        return mean + math.sqrt(variance) * noise if t_prev > 0 else mean


class WrappedNormalSchedule:
    """The coordinate noise levels: ``sigmas`` (T + 1,) with ``sigmas[0] = 0`` and σ_1..σ_T
    geometric from ``sigma_begin`` to ``sigma_end``."""

    def __init__(self, timesteps: int = 1000, sigma_begin: float = 0.005, sigma_end: float = 0.5):
        if not 0 < sigma_begin < sigma_end:
            raise ValueError(f"need 0 < sigma_begin < sigma_end, got {sigma_begin}, {sigma_end}")
        self.timesteps = int(timesteps)
        levels = torch.exp(torch.linspace(math.log(sigma_begin), math.log(sigma_end), timesteps, dtype=torch.float64))
        self.sigmas = torch.cat([torch.zeros(1, dtype=torch.float64), levels])

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigmas.to(t.device)[t]

    def q_sample(self, f0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``(f0 + σ noise) mod 1``; ``sigma`` per atom (N,) or a number."""
        sigma = torch.as_tensor(sigma, dtype=f0.dtype, device=f0.device)
        return torch.remainder(f0 + (sigma[:, None] if sigma.dim() else sigma) * noise, 1.0)


def sampling_times(timesteps: int, steps: int | None) -> list[int]:
    """The decreasing times visited when sampling with ``steps`` denoising steps (None: all T),
    evenly spaced from T down to 1, each visited once."""
    steps = timesteps if steps is None else int(steps)
    if not 1 <= steps <= timesteps:
        raise ValueError(f"steps must be between 1 and {timesteps}, got {steps}")
    times = np.unique(np.round(np.linspace(1, timesteps, steps)).astype(int))[::-1]
    return [int(t) for t in times]


class CrystalDiffusion(nn.Module):
    """The denoiser with its two noise processes (module docstring): ``loss`` for training and
    ``sample`` for generation.

    Arguments: ``denoiser`` keyword arguments of :class:`CSPDenoiser` (its ``cond_dim`` is the size
    of the conditioning vector, 0 for none); ``timesteps`` 1000; ``sigma_begin`` 0.005 and
    ``sigma_end`` 0.5; ``volume_per_atom`` v̄ in Å³ (set from the training data by the trainer);
    ``lattice_weight`` and ``coord_weight`` of the two loss terms (1, 1).
    """

    def __init__(self, *, denoiser: Mapping[str, Any] | None = None, timesteps: int = 1000,
                 sigma_begin: float = 0.005, sigma_end: float = 0.5, volume_per_atom: float = 15.0,
                 lattice_weight: float = 1.0, coord_weight: float = 1.0):
        super().__init__()
        if volume_per_atom <= 0:
            raise ValueError(f"volume_per_atom must be positive (Å³), got {volume_per_atom}")
        self.config = {"denoiser": dict(denoiser or {}), "timesteps": int(timesteps), "sigma_begin": float(sigma_begin),
                       "sigma_end": float(sigma_end), "volume_per_atom": float(volume_per_atom),
                       "lattice_weight": float(lattice_weight), "coord_weight": float(coord_weight)}
        self.denoiser = CSPDenoiser(**self.config["denoiser"])
        self.lattice_schedule = CosineSchedule(timesteps)
        self.coord_schedule = WrappedNormalSchedule(timesteps, sigma_begin, sigma_end)
        self.timesteps, self.volume_per_atom = int(timesteps), float(volume_per_atom)
        self.lattice_weight, self.coord_weight = float(lattice_weight), float(coord_weight)

    @property
    def cond_dim(self) -> int:
        return self.denoiser.cond_dim

    def lattice_unit(self, counts: torch.Tensor) -> torch.Tensor:
        """ℓ = (N v̄)^{1/3} in Å per crystal, ``(G,)``."""
        return (counts.double() * self.volume_per_atom) ** (1 / 3)

    def loss(self, crystals: CrystalBatch, condition: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss of a batch: a random time per crystal, ε-MSE on the lattice and the
        σ²-weighted score-matching MSE on the coordinates. Returns the total and both parts."""
        device, dtype = crystals.lattice.device, crystals.lattice.dtype
        g = len(crystals)
        t = torch.randint(1, self.timesteps + 1, (g,), generator=generator).to(device)
        unit = self.lattice_unit(crystals.counts).to(dtype)
        l0 = crystals.lattice / unit[:, None, None]
        eps = torch.randn(l0.shape, generator=generator, dtype=dtype).to(device)
        lattice_t = self.lattice_schedule.q_sample(l0, t, eps)
        sigma = self.coord_schedule.sigma(t).to(dtype)[crystals.batch]
        z = torch.randn(crystals.frac.shape, generator=generator, dtype=dtype).to(device)
        frac_t = self.coord_schedule.q_sample(crystals.frac, sigma, z)
        target = sigma[:, None] * wrapped_normal_score(frac_t - crystals.frac, sigma[:, None])
        eps_hat, score_hat = self.denoiser(crystals.numbers, frac_t, lattice_t, crystals.batch,
                                           t.to(dtype) / self.timesteps, condition)
        lattice_loss = (eps_hat - eps).square().mean()
        coord_loss = (score_hat - target).square().mean()
        total = self.lattice_weight * lattice_loss + self.coord_weight * coord_loss
        return total, {"lattice": float(lattice_loss.detach()), "coord": float(coord_loss.detach())}

    @torch.no_grad()
    def sample(self, numbers: torch.Tensor | np.ndarray, n: int, condition: torch.Tensor | None = None, *,
               steps: int | None = None, step_lr: float = 1e-5, corrector: bool = True,
               generator: torch.Generator | None = None) -> CrystalBatch:
        """``n`` crystals of the atoms ``numbers`` (one cell's atomic numbers) by predictor–corrector
        sampling with ``steps`` denoising steps (None: all T); ``condition`` (cond_dim,) is shared by
        all ``n``. Lattices are returned in Å."""
        parameter = next(self.parameters())
        device, dtype = parameter.device, parameter.dtype
        numbers = torch.as_tensor(np.asarray(numbers), dtype=torch.long, device=device)
        n_atoms = len(numbers)
        batch = torch.arange(n, device=device).repeat_interleave(n_atoms)
        atoms = numbers.repeat(n)
        if condition is not None:
            condition = condition.reshape(1, -1).to(device, dtype).expand(n, -1)
        pairs = all_pairs(batch, n)
        noise = lambda shape: torch.randn(shape, generator=generator, dtype=dtype).to(device)
        lattice = noise((n, 3, 3))
        frac = torch.rand((n * n_atoms, 3), generator=generator, dtype=dtype).to(device)
        sigma_1 = float(self.coord_schedule.sigmas[1])
        times = sampling_times(self.timesteps, steps)
        for t, t_prev in zip(times, times[1:] + [0]):
            time = torch.full((n,), t / self.timesteps, device=device, dtype=dtype)
            sigma, sigma_prev = float(self.coord_schedule.sigmas[t]), float(self.coord_schedule.sigmas[t_prev])
            if corrector:
                _, out = self.denoiser(atoms, frac, lattice, batch, time, condition, pairs)
                gamma = step_lr * (sigma / sigma_1) ** 2
                frac = torch.remainder(frac + gamma * out / sigma + math.sqrt(2 * gamma) * noise(frac.shape), 1.0)
            eps, out = self.denoiser(atoms, frac, lattice, batch, time, condition, pairs)
            lattice = self.lattice_schedule.step(lattice, eps, t, t_prev, noise(lattice.shape))
            jump = sigma ** 2 - sigma_prev ** 2
            frac = frac + jump * out / sigma
            if t_prev > 0:
                frac = frac + math.sqrt(sigma_prev ** 2 * jump / sigma ** 2) * noise(frac.shape)
            frac = torch.remainder(frac, 1.0)
        unit = self.lattice_unit(torch.full((n,), n_atoms, device=device)).to(dtype)
        return CrystalBatch(lattice * unit[:, None, None], frac, atoms, batch)
