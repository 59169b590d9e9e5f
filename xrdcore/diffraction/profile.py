"""From peak lists to 1-D powder profiles on a 2θ grid, batched in torch on any device.

Peaks are cheap to store and expensive to compute; profiles are the opposite. So data sets
cache :class:`~xrdcore.diffraction.pxrd.PeakList` s and profiles are rendered (and augmented)
at load time from a :class:`PeakBatch` on the training device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from xrdcore.diffraction.grid import AngleGrid

if TYPE_CHECKING:
    from xrdcore.diffraction.pxrd import PeakList

PeakShape = Literal["gaussian", "pseudo-voigt", "lorentzian", "stick"]
#: Caglioti U, V, W in degrees² (FWHM² = U tan²θ + V tanθ + W): 0.07° FWHM at 30°, 0.11° at 90°,
#: a laboratory Bragg–Brentano diffractometer
DEFAULT_CAGLIOTI = (0.01, -0.002, 0.005)
#: half-width of the window a peak is drawn in, in FWHM; beyond it a Gaussian is < 2e-11 of its
#: height and a Lorentzian's tails hold < 3% of its area
_WINDOW_FWHM = {"gaussian": 3.0, "pseudo-voigt": 12.0, "lorentzian": 12.0}


@dataclass
class PeakBatch:
    """Peak lists padded to one length, as tensors on one device (``mask`` marks real peaks)."""

    two_theta: torch.Tensor  # (B, P) degrees
    intensity: torch.Tensor  # (B, P) relative, strongest 100
    mask: torch.Tensor  # (B, P) bool
    hkl: torch.Tensor  # (B, P, 3) int, one reflection of each peak (for preferred orientation)
    reciprocal: torch.Tensor  # (B, 3, 3) rows a*, b*, c* in 1/Å (g = hkl @ reciprocal)
    wavelength: torch.Tensor  # (B,) Å
    rotations: torch.Tensor  # (B, R, 3, 3) Laue group of each pattern on hkl, padded
    rotation_mask: torch.Tensor  # (B, R) bool, True for real rotations

    @classmethod
    def from_peak_lists(cls, peaks: Sequence[PeakList], device: str | torch.device | None = None) -> PeakBatch:
        if not peaks:
            raise ValueError("no peak lists to batch")
        size = max(1, max(len(p) for p in peaks))
        batch = len(peaks)
        two_theta = np.zeros((batch, size), dtype=np.float32)
        intensity = np.zeros((batch, size), dtype=np.float32)
        mask = np.zeros((batch, size), dtype=bool)
        hkl = np.zeros((batch, size, 3), dtype=np.int64)
        for i, p in enumerate(peaks):
            n = len(p)
            two_theta[i, :n], intensity[i, :n], mask[i, :n], hkl[i, :n] = p.two_theta, p.intensity, True, p.hkl
        reciprocal = np.stack([np.linalg.inv(p.lattice).T for p in peaks]).astype(np.float32)
        wavelength = np.array([p.wavelength for p in peaks], dtype=np.float32)
        n_rot = max(len(p.rotations) for p in peaks)
        rotations = np.tile(np.eye(3, dtype=np.int64), (batch, n_rot, 1, 1))
        rotation_mask = np.zeros((batch, n_rot), dtype=bool)
        for i, p in enumerate(peaks):
            rotations[i, :len(p.rotations)], rotation_mask[i, :len(p.rotations)] = p.rotations, True
        as_tensor = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        return cls(*map(as_tensor, (two_theta, intensity, mask, hkl, reciprocal, wavelength, rotations,
                                    rotation_mask)))

    def __len__(self) -> int:
        return self.two_theta.shape[0]


def caglioti_fwhm(two_theta: torch.Tensor, u: float, v: float, w: float) -> torch.Tensor:
    """FWHM in degrees from FWHM² = U tan²θ + V tanθ + W (floored at 1e-4°)."""
    tan = torch.tan(torch.deg2rad(two_theta / 2))
    return torch.sqrt((u * tan ** 2 + v * tan + w).clamp(min=1e-8))


def render(peaks: PeakBatch, grid: AngleGrid = AngleGrid(), *, shape: PeakShape = "gaussian",
           caglioti: tuple[float, float, float] = DEFAULT_CAGLIOTI, eta: float = 0.5,
           fwhm: torch.Tensor | None = None, normalise: bool = True) -> torch.Tensor:
    """Profiles ``(B, grid.length)`` on the peaks' device.

    Each peak is a unit-area ``shape`` of width ``fwhm`` (degrees, per peak; default from
    ``caglioti``) scaled by its intensity, drawn out to a fixed multiple of its own FWHM, so a
    pattern never depends on which patterns share its batch; ``pseudo-voigt`` mixes a Lorentzian
    fraction ``eta``. ``stick`` puts each peak in its nearest grid point, keeping the maximum per
    point, with no broadening (the XRDecoupler input). ``normalise`` scales every profile to a
    maximum of 1. On a ``log_d`` grid each peak keeps the height it has on a 2θ grid of ``step``
    (its width in points follows the axis).
    """
    device = peaks.two_theta.device
    batch, length = len(peaks), grid.length
    flat = torch.zeros(batch * length, dtype=torch.float32, device=device)
    pattern, peak = peaks.mask.nonzero(as_tuple=True)  # real peaks only, as a flat list
    angle = peaks.two_theta[pattern, peak]
    position = grid.position(angle)  # fractional grid index
    intensity = peaks.intensity[pattern, peak]
    if shape == "stick":
        index = torch.round(position).long()
        ok = (index >= 0) & (index < length)
        flat.scatter_reduce_(0, (index + pattern * length)[ok], intensity[ok], "amax")
    elif shape in _WINDOW_FWHM:
        if not 0 <= eta <= 1:
            raise ValueError(f"pseudo-Voigt mixing eta must be in [0, 1], got {eta}")
        if fwhm is None:
            widths = caglioti_fwhm(peaks.two_theta[pattern, peak], *caglioti)
        else:
            if fwhm.shape != peaks.two_theta.shape:
                raise ValueError(f"fwhm must have the peaks' shape {tuple(peaks.two_theta.shape)}, got {tuple(fwhm.shape)}")
            widths = fwhm[pattern, peak]
            if not bool(torch.all(torch.isfinite(widths) & (widths > 0))):
                raise ValueError("fwhm must be finite and positive for every real peak")
        lorentz_fraction = {"gaussian": 0.0, "lorentzian": 1.0, "pseudo-voigt": eta}[shape]
        reach = _WINDOW_FWHM[shape] * widths  # degrees each side, per peak
        density = grid.points_per_degree(angle)  # points per degree at each peak
        # peaks in classes of similar window (powers of two), each drawn with its class's window
        half = window_points(widths, density, shape)
        for h in torch.unique(half).tolist():
            chosen = (half == h).nonzero(as_tuple=True)[0]
            offsets = torch.arange(-h, h + 1, device=device)
            step = max(1, (1 << 24) // len(offsets))
            for start in range(0, len(chosen), step):
                rows = chosen[start:start + step]
                index = torch.round(position[rows]).long()[:, None] + offsets  # (n, window)
                x = (index - position[rows][:, None]) / density[rows][:, None]  # degrees from the peak
                values = _unit_area(x, widths[rows][:, None], lorentz_fraction) * intensity[rows][:, None]
                ok = (index >= 0) & (index < length) & (x.abs() <= reach[rows][:, None])
                flat.index_add_(0, (index + (pattern[rows] * length)[:, None])[ok], values[ok] * grid.step)
    else:
        raise ValueError(f"unknown peak shape {shape!r}; use gaussian, pseudo-voigt, lorentzian or stick")
    profiles = flat.view(batch, length)
    if normalise:
        profiles = profiles / profiles.amax(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
    return profiles


def window_points(fwhm: torch.Tensor, density: torch.Tensor, shape: PeakShape) -> torch.Tensor:
    """Half-width in grid points of the window :func:`render` draws each peak in: a fixed multiple
    of its ``fwhm`` (degrees) for the ``shape`` each side, at ``density`` grid points per degree,
    rounded up to a power of two (peaks are drawn in classes of one window); int64, at least 1."""
    half = torch.ceil(_WINDOW_FWHM[shape] * fwhm * density).long()
    return 2 ** torch.ceil(torch.log2(half.clamp(min=1).double())).long()


def _unit_area(x: torch.Tensor, fwhm: torch.Tensor, lorentz_fraction: float) -> torch.Tensor:
    """Pseudo-Voigt of unit area: (1 - η) Gaussian + η Lorentzian, both of full width ``fwhm``."""
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    gauss = torch.exp(-0.5 * (x / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    if lorentz_fraction == 0:
        return gauss
    gamma = fwhm / 2
    lorentz = gamma / (math.pi * (x ** 2 + gamma ** 2))
    return (1 - lorentz_fraction) * gauss + lorentz_fraction * lorentz
