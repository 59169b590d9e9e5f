"""The built-in ``pxrd`` simulator: kinematic powder peaks rendered on a 2θ grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid, as_grid
from xrdcore.diffraction.profile import DEFAULT_CAGLIOTI, PeakBatch, PeakShape, render
from xrdcore.diffraction.pxrd import PeakList, peak_lists
from xrdcore.diffraction.radiation import wavelength as parse_wavelength
from xrdcore.interfaces import Simulator

if TYPE_CHECKING:
    from pymatgen.core import Structure


class PXRDSimulator(Simulator):
    """Powder X-ray diffraction profiles (``profile`` input kind), agreeing with pymatgen.

    ``grid``: the 2θ grid (an :class:`AngleGrid`, or a mapping of the fields that differ from
    :data:`DEFAULT_GRID`, as a command-line option gives it); ``wavelength``: line name or Å;
    ``shape``/``caglioti``/``eta``: the peak profile; ``debye_waller``: element → B (Å²).
    """

    output_kind = "profile"

    def __init__(self, wavelength: str | float = "CuKa1", grid: AngleGrid | Mapping[str, Any] = DEFAULT_GRID,
                 shape: PeakShape = "gaussian", caglioti: Sequence[float] = DEFAULT_CAGLIOTI,
                 eta: float = 0.5, debye_waller: Mapping[str, float] | None = None,
                 symprec: float | None = 1e-3, device: str = "cpu"):
        self.wavelength = parse_wavelength(wavelength)
        self.grid = as_grid("grid", grid)
        self.shape, self.caglioti, self.eta = shape, tuple(float(c) for c in caglioti), float(eta)
        if len(self.caglioti) != 3:
            raise ValueError(f"caglioti needs U, V, W, got {caglioti!r}")
        self.debye_waller = dict(debye_waller or {})
        self.symprec, self.device = symprec, torch.device(device)

    @property
    def settings(self) -> dict[str, Any]:
        return {"simulator": "pxrd", "wavelength": self.wavelength, "two_theta": self.grid.to_dict(),
                "shape": self.shape, "caglioti": list(self.caglioti), "eta": self.eta,
                "debye_waller": self.debye_waller}

    def peaks(self, structures: Sequence[Structure]) -> list[PeakList]:
        """Peak lists over the grid's range (the expensive, cacheable part), all in one call."""
        return peak_lists(structures, wavelength=self.wavelength,
                          two_theta_range=(self.grid.start, self.grid.stop), debye_waller=self.debye_waller,
                          symprec=self.symprec, device=self.device)

    def render(self, peaks: Sequence[PeakList]) -> torch.Tensor:
        """Profiles ``(B, L)`` with maximum 1 from peak lists."""
        return render(PeakBatch.from_peak_lists(peaks, self.device), self.grid, shape=self.shape,
                      caglioti=self.caglioti, eta=self.eta)

    def simulate(self, structures: Sequence[Structure]) -> torch.Tensor:
        return self.render(self.peaks(structures))
