"""Kinematic structure factors for electrons and X-rays, from the one table xrdcore uses.

Both kinds of scattering factor come from pymatgen's ``atomic_scattering_params.json``, read
through :func:`xrdcore.diffraction.pxrd.scattering_parameters`: per element, Gaussian
parameters (aᵢ, bᵢ) of the **electron** scattering factor,

    f_e(s) = Σ aᵢ exp(−bᵢ s²)                              (Å, s = sin θ / λ = |g| / 2 in Å⁻¹)

which pymatgen's ``XRDCalculator`` (and xrdcore's powder simulator) turn into the **X-ray**
factor by the Mott–Bethe formula,

    f_x(s) = Z − s² f_e(s) / K,   K = m e² / (8π ε₀ h²) = 0.0239337 Å   (1 / K = 41.78214 Å⁻¹)

and pymatgen's ``TEMCalculator`` back into f_e = K (Z − f_x) / s², the same Gaussian sum.
Evaluating f_e directly avoids the 0/0 of that inverse at small s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Literal

import numpy as np
import scipy.constants as sc
import torch
from xrdcore.diffraction.pxrd import scattering_parameters

__all__ = ["MOTT_BETHE", "Radiation", "electron_wavelength", "form_factors", "structure_factor_squared"]

Radiation = Literal["electron", "xray"]

#: m e² / (8π ε₀ h²) in Å: the Mott–Bethe constant K linking X-ray and electron scattering factors
MOTT_BETHE = sc.m_e * sc.e ** 2 / (8 * math.pi * sc.epsilon_0 * sc.h ** 2) * 1e-10


def electron_wavelength(voltage: float) -> float:
    """Relativistic electron wavelength in Å for an accelerating voltage in kV
    (λ = h / √(2 m e V (1 + e V / 2 m c²)); 0.025079 Å at 200 kV)."""
    if isinstance(voltage, bool) or not isinstance(voltage, (int, float)) or not 1 <= voltage <= 10_000:
        raise ValueError(f"voltage must be a number of kV in [1, 10000], got {voltage!r}")
    energy = sc.e * 1e3 * float(voltage)
    return sc.h / math.sqrt(2 * sc.m_e * energy * (1 + energy / (2 * sc.m_e * sc.c ** 2))) * 1e10


@cache
def _atomic_number(symbol: str) -> int:
    from pymatgen.core.periodic_table import Element

    return Element(symbol).Z


def form_factors(elements: Sequence[str], s: torch.Tensor, radiation: Radiation) -> torch.Tensor:
    """``(N, n_elements)`` atomic scattering factors at ``s = sin θ / λ`` (Å⁻¹, shape ``(N,)``):
    electron factors in Å, X-ray factors in electrons. Unknown elements raise ``KeyError``."""
    params = scattering_parameters()
    width = max(len(params[e]) for e in elements)
    a = torch.zeros(len(elements), width, dtype=torch.float64, device=s.device)
    b = torch.zeros_like(a)
    for i, element in enumerate(elements):
        a[i, :len(params[element])] = torch.as_tensor(params[element][:, 0])
        b[i, :len(params[element])] = torch.as_tensor(params[element][:, 1])
    s2 = s.double()[:, None, None] ** 2
    electron = (a * torch.exp(-b * s2)).sum(-1)  # (N, n_elements)
    if radiation == "electron":
        return electron
    z = torch.tensor([_atomic_number(e) for e in elements], dtype=torch.float64, device=s.device)
    return z - s2[..., 0] * electron / MOTT_BETHE


def structure_factor_squared(hkl: torch.Tensor, s: torch.Tensor, coords: np.ndarray, occupancy: np.ndarray,
                             element: np.ndarray, elements: Sequence[str], radiation: Radiation,
                             debye_waller: Mapping[str, float] | None = None,
                             chunk: int = 1 << 21) -> torch.Tensor:
    """|F(hkl)|² (float64) for ``hkl`` ``(N, 3)`` at ``s`` ``(N,)`` (Å⁻¹): Σ over scatterers of
    occupancy × f(s) × exp(−B s²) × exp(2πi h·x), with ``coords`` ``(n, 3)`` fractional,
    ``element`` ``(n,)`` indices into ``elements`` and ``debye_waller`` element → B (Å²).

    Per element the phase sums are matrix products, in float32 as in xrdcore's powder simulator
    (|h| < ~100 keeps the phase error below 1e-4 rad); reflections are taken ``chunk // n`` at a
    time to bound memory."""
    device = hkl.device
    n = len(coords)
    out = torch.empty(len(hkl), dtype=torch.float64, device=device)
    if len(hkl) == 0:
        return out
    positions = torch.as_tensor(2 * math.pi * np.asarray(coords, dtype=float).T, dtype=torch.float32,
                                device=device)  # (3, n)
    weights = torch.zeros(n, len(elements), dtype=torch.float32, device=device)
    weights[torch.arange(n), torch.as_tensor(element, dtype=torch.long)] = torch.as_tensor(
        occupancy, dtype=torch.float32)
    b_factor = torch.tensor([float((debye_waller or {}).get(e, 0.0)) for e in elements], dtype=torch.float64,
                            device=device)
    step = max(1, chunk // max(n, 1))
    for start in range(0, len(hkl), step):
        rows = slice(start, start + step)
        phase = hkl[rows].float() @ positions  # (chunk, n)
        f = form_factors(elements, s[rows], radiation) * torch.exp(-b_factor * s[rows, None].double() ** 2)
        real = (f * (torch.cos(phase) @ weights).double()).sum(1)
        imaginary = (f * (torch.sin(phase) @ weights).double()).sum(1)
        out[rows] = real ** 2 + imaginary ** 2
    return out
