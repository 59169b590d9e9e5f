"""The built-in ``pxrd`` simulator: kinematic powder peaks rendered on a 2θ grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid, as_grid
from xrdcore.diffraction.profile import (DEFAULT_CAGLIOTI, PeakBatch, PeakShape, caglioti_fwhm, render,
                                         window_points)
from xrdcore.diffraction.pxrd import (DEFAULT_MAX_COST, DEFAULT_MAX_REFLECTIONS, CostLimitError, PeakList,
                                      peak_lists)
from xrdcore.diffraction.radiation import wavelength as parse_wavelength
from xrdcore.interfaces import Simulator

if TYPE_CHECKING:
    from pymatgen.core import Structure


#: the default bound of :meth:`PXRDSimulator.render`, in profile values computed
DEFAULT_MAX_RENDER = 1e9


class PXRDSimulator(Simulator):
    """Powder X-ray diffraction profiles (``profile`` input kind), agreeing with pymatgen.

    ``grid``: the 2θ grid (an :class:`AngleGrid`, or a mapping of the fields that differ from
    :data:`DEFAULT_GRID`, as a command-line option gives it); ``wavelength``: line name or Å;
    ``shape``/``caglioti``/``eta``: the peak profile; ``debye_waller``: element → B (Å²).
    ``max_reflections``, ``max_cost``: the bounds of :func:`~xrdcore.diffraction.pxrd.peak_list`;
    ``max_render``: of rendering, in profile values computed (peaks × points of their windows;
    1e9 is about 40 s on 2 cores, a fine ``step`` with many broad peaks reaches it). None: no bound.
    """

    output_kind = "profile"

    def __init__(self, wavelength: str | float = "CuKa1", grid: AngleGrid | Mapping[str, Any] = DEFAULT_GRID,
                 shape: PeakShape = "gaussian", caglioti: Sequence[float] = DEFAULT_CAGLIOTI,
                 eta: float = 0.5, debye_waller: Mapping[str, float] | None = None,
                 symprec: float | None = 1e-3, device: str = "cpu",
                 max_reflections: int | None = DEFAULT_MAX_REFLECTIONS, max_cost: float | None = DEFAULT_MAX_COST,
                 max_render: float | None = DEFAULT_MAX_RENDER, progress: bool = False):
        self.wavelength = parse_wavelength(wavelength)
        self.grid = as_grid("grid", grid)
        self.shape, self.caglioti, self.eta = shape, tuple(float(c) for c in caglioti), float(eta)
        if len(self.caglioti) != 3:
            raise ValueError(f"caglioti needs U, V, W, got {caglioti!r}")
        self.debye_waller = dict(debye_waller or {})
        self.symprec, self.device = symprec, torch.device(device)
        self.max_reflections, self.max_cost, self.max_render = max_reflections, max_cost, max_render
        self.progress = progress

    @property
    def settings(self) -> dict[str, Any]:
        return {"simulator": "pxrd", "wavelength": self.wavelength, "two_theta": self.grid.to_dict(),
                "shape": self.shape, "caglioti": list(self.caglioti), "eta": self.eta,
                "debye_waller": self.debye_waller}

    def peaks(self, structures: Sequence[Structure]) -> list[PeakList]:
        """Peak lists over the grid's range (the expensive, cacheable part), all in one call."""
        return peak_lists(structures, wavelength=self.wavelength,
                          two_theta_range=(self.grid.start, self.grid.stop), debye_waller=self.debye_waller,
                          symprec=self.symprec, device=self.device, max_reflections=self.max_reflections,
                          max_cost=self.max_cost, progress=self.progress)

    def render_cost(self, peaks: Sequence[PeakList]) -> int:
        """Profile values that :meth:`render` computes: each peak's window (a multiple of its FWHM
        each side, in grid points, rounded up to a power of two as the renderer draws it)."""
        if self.shape == "stick":
            return sum(len(p) for p in peaks)
        two_theta = torch.as_tensor(np.concatenate([p.two_theta for p in peaks] or [np.zeros(0)]))
        fwhm = caglioti_fwhm(two_theta, *self.caglioti)
        return int((2 * window_points(fwhm, self.grid.points_per_degree(two_theta), self.shape) + 1).sum())

    def render(self, peaks: Sequence[PeakList]) -> torch.Tensor:
        """Profiles ``(B, L)`` with maximum 1 from peak lists; refused above ``max_render``."""
        cost = self.render_cost(peaks) if self.max_render is not None else 0
        if self.max_render is not None and cost > self.max_render:
            raise CostLimitError(
                f"rendering {sum(len(p) for p in peaks):,} peaks on {self.grid.length:,} points of "
                f"{self.grid.step:g}° computes {cost:.3g} profile values (about {cost * 4e-8:.0f} s), above the "
                f"limit of {self.max_render:.3g}; use a coarser --step, or raise the limit with --max-render "
                f"(Python: max_render=)")
        return render(PeakBatch.from_peak_lists(peaks, self.device), self.grid, shape=self.shape,
                      caglioti=self.caglioti, eta=self.eta)

    def simulate(self, structures: Sequence[Structure]) -> torch.Tensor:
        return self.render(self.peaks(structures))
