"""The ``zone-axis`` simulator: three zone-axis spot patterns of a structure, shaped, as images.

Structure → spglib's conventional standard cell (at ``symprec``, the tolerance xrdcore labels
with; :func:`xrd_msdn.zone_axis.conventional_cell`) → kinematic spots of the zero-order Laue zone
along its Cartesian x, y and z axes (:mod:`xrd_msdn.zone_axis`) → images: spots, and for the
``shaped`` representation the lines between near spots (:mod:`xrd_msdn.shaping`). Output
``(B, 3, C, H, W)`` float32 in [0, 1], view v = beam along axis v.

Image geometry: the image spans ±``half_width`` Å⁻¹ of reciprocal space on both axes, so a spot at
in-plane g = (u, w) lands at column ``(size − 1)/2 + u × size / (2 half_width)`` and row
``(size − 1)/2 − w × size / (2 half_width)`` (w up, as in a plot). For an electron microscope this
is a camera constant: a detector of half-width R at camera length L sees ``half_width = R / (L λ)``
(0.75 Å⁻¹ = a 30 mm half-detector at L = 1.6 m and 200 kV). Spot radii and line widths are given
in Å⁻¹ too, so the picture does not change with ``size`` except in resolution.

Why 0.75 Å⁻¹: the field must hold at least two orders of the small cells of inorganic crystals
(3-4 Å edges: first spots at 0.25-0.55 Å⁻¹, e.g. Cu 200 at 0.55 and 220 at 0.78 in the corners)
and still separate the spots of MOF cells of 10-30 Å, 1/a = 0.1-0.033 Å⁻¹ apart: 15-5 pixels at
224 (149 pixels per Å⁻¹), more than the largest spot diameter (4.5 pixels). A wider field loses
the MOFs' nets into touching spots, a narrower one leaves one order of the small cells.

Intensities: the brightness of a spot is its relative intensity to the power ``gamma`` (0.5: the
structure-factor amplitude), its radius grows linearly with the brightness from
``spot_radius[0]`` to ``spot_radius[1]``; a line's full width grows from ``line_width[0]`` to
``line_width[1]`` with the mean brightness of its two spots; no spot or line is drawn narrower
than one pixel (radius or half-width 0.5 pixel), so small images keep them at full brightness. Lines are drawn at full brightness
(as in the published code) and spots are drawn over them with their own brightness.

Channels (``colour``): ``"axis"`` (default, C = 3): view v is drawn only in channel v — red for
x, green for y, blue for z, the paper's colours by axis, so that views merged into one image stay
apart; ``"published"`` (C = 3): as the published code, view v has its shaped image in channel v
and its spots alone in the other two; ``"grey"`` (C = 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from xrdcore.data.labels import DEFAULT_ANGLE_TOLERANCE, DEFAULT_SYMPREC
from xrdcore.diffraction.pxrd import StructureError
from xrdcore.diffraction.radiation import wavelength as xray_wavelength
from xrdcore.interfaces import Simulator
from xrdcore.validate import positive_int

from xrd_msdn.scattering import electron_wavelength
from xrd_msdn.shaping import rasterise, shape_segments
from xrd_msdn.zone_axis import Cell, ZoneAxisSpots, conventional_cell, zone_axis_views

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["ZoneAxisSimulator", "zone_axis_spots"]

REPRESENTATIONS = ("shaped", "spots")
COLOURS = ("axis", "published", "grey")
RADIATIONS = ("electron", "xray")
#: the published image size; every length of the picture is in Å⁻¹, so any size shows the same
DEFAULT_SIZE = 224
#: smallest spot radius and line half-width drawn, in pixels: one pixel at full brightness
MIN_RADIUS = 0.5


def _number(name: str, value: Any, low: float, high: float = math.inf, *, open_low: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > high or value < low or (open_low and value == low):
        bound = f"({low}" if open_low else f"[{low}"
        raise ValueError(f"{name} must be a number in {bound}, {high}], got {value!r}")
    return float(value)


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (smallest, largest) in Å⁻¹, got {value!r}") from None
    if not (0 <= low <= high and math.isfinite(high)):
        raise ValueError(f"{name} must satisfy 0 <= smallest <= largest, got {value!r}")
    return low, high


class ZoneAxisSimulator(Simulator):
    """Kinematic zone-axis spot patterns along x, y, z of the conventional cell, shaped (MSDN).

    Every length is in Å, every reciprocal length in Å⁻¹ (no 2π).

    * ``size``: image height and width in pixels (224, as published).
    * ``radiation``: ``"electron"`` (electron scattering factors; wavelength from ``voltage``,
      200 kV: 0.02508 Å) or ``"xray"`` (X-ray factors; ``wavelength`` ``"CuKa1"``, 1.54056 Å).
      ``wavelength`` (Å or an X-ray line name) overrides either.
    * ``ewald_sphere``: excitation errors with the curvature of the Ewald sphere (a still crystal);
      ``False`` records the zero layer undistorted, as a precession photograph. Default: ``True``
      for electrons, ``False`` for X-rays (whose sphere leaves almost nothing of a still zone axis).
    * ``half_width`` (0.75): reciprocal space from the centre to the image edge — the camera length.
    * ``relrod_width`` (σ = 0.01) and ``max_excitation_error`` (0.03, 3σ): Gaussian relrod and
      the cut-off of the excitation error (the Laue circle of the zero layer).
    * ``min_intensity`` (0.01): spots weaker than this fraction of the strongest of their view
      are dropped; ``max_spots`` (2048): at most this many (the strongest) per view.
    * ``representation``: ``"shaped"`` (spots and lines) or ``"spots"``; ``neighbour_factor``
      (1.7): spots closer than this times the smallest spot distance are joined.
    * ``gamma``, ``spot_radius``, ``line_width``, ``colour``: the drawing (module docstring).
    * ``standardize``: use spglib's conventional standard cell (``symprec``, Å, 0.1, and
      ``angle_tolerance``, degrees, spglib's own: xrdcore's labelling tolerances, so the cell is
      that of the label); ``False`` uses the structure's own cell and orientation.
    * ``debye_waller``: element → B (Å²). ``device``: where the tensors live.
    """

    output_kind = "images"

    def __init__(self, size: int = DEFAULT_SIZE, radiation: Literal["electron", "xray"] = "electron",
                 voltage: float = 200.0, wavelength: str | float | None = None, ewald_sphere: bool | None = None,
                 half_width: float = 0.75, relrod_width: float = 0.01, max_excitation_error: float = 0.03,
                 min_intensity: float = 0.01, max_spots: int = 2048,
                 representation: Literal["shaped", "spots"] = "shaped", neighbour_factor: float = 1.7,
                 gamma: float = 0.5, spot_radius: Sequence[float] = (0.006, 0.015),
                 line_width: Sequence[float] = (0.004, 0.012), colour: Literal["axis", "published", "grey"] = "axis",
                 standardize: bool = True, symprec: float = DEFAULT_SYMPREC,
                 angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE, debye_waller: Mapping[str, float] | None = None,
                 device: str | torch.device = "cpu"):
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise ValueError(f"size must be an int >= 8 (pixels), got {size!r}")
        for name, value, allowed in (("radiation", radiation, RADIATIONS), ("representation", representation,
                                     REPRESENTATIONS), ("colour", colour, COLOURS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        self.size, self.radiation, self.representation, self.colour = size, radiation, representation, colour
        self.voltage = _number("voltage", voltage, 1, 10_000)
        if wavelength is None:
            self.wavelength = electron_wavelength(self.voltage) if radiation == "electron" else xray_wavelength("CuKa1")
        elif radiation == "xray":
            self.wavelength = xray_wavelength(wavelength)
        else:
            self.wavelength = _number("wavelength", wavelength, 0.0, 1.0, open_low=True)
        if ewald_sphere is not None and not isinstance(ewald_sphere, bool):
            raise ValueError(f"ewald_sphere must be True, False or None, got {ewald_sphere!r}")
        self.ewald_sphere = (radiation == "electron") if ewald_sphere is None else ewald_sphere
        self.half_width = _number("half_width", half_width, 0.0, 10.0, open_low=True)
        self.relrod_width = _number("relrod_width", relrod_width, 0.0, 1.0, open_low=True)
        self.max_excitation_error = _number("max_excitation_error", max_excitation_error, 0.0, 1.0)
        self.min_intensity = _number("min_intensity", min_intensity, 0.0, 1.0, open_low=True)
        self.max_spots = positive_int("max_spots", max_spots)
        self.neighbour_factor = _number("neighbour_factor", neighbour_factor, 1.0, 100.0)
        self.gamma = _number("gamma", gamma, 0.0, 10.0, open_low=True)
        self.spot_radius, self.line_width = _pair("spot_radius", spot_radius), _pair("line_width", line_width)
        self.standardize = bool(standardize)
        self.symprec = _number("symprec", symprec, 0.0, 10.0, open_low=True)
        self.angle_tolerance = float(angle_tolerance)
        self.debye_waller = {str(k): _number(f"debye_waller[{k}]", v, 0.0, 100.0)
                             for k, v in (debye_waller or {}).items()}
        self.device = torch.device(device)

    @property
    def channels(self) -> int:
        return 1 if self.colour == "grey" else 3

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """(views, channels, height, width) of one structure's images."""
        return (3, self.channels, self.size, self.size)

    #: what each view shows, for pictures (``xrdcore simulate --images``)
    view_titles = ("beam along x", "beam along y", "beam along z")

    @property
    def pixels_per_inverse_angstrom(self) -> float:
        return self.size / (2 * self.half_width)

    @property
    def settings(self) -> dict[str, Any]:
        return {"simulator": "zone-axis", "size": self.size, "views": ["x", "y", "z"], "channels": self.channels,
                "radiation": self.radiation, "voltage_kv": self.voltage if self.radiation == "electron" else None,
                "wavelength": self.wavelength, "ewald_sphere": self.ewald_sphere, "half_width": self.half_width,
                "relrod": "gaussian", "relrod_width": self.relrod_width,
                "max_excitation_error": self.max_excitation_error,
                "min_intensity": self.min_intensity, "max_spots": self.max_spots,
                "representation": self.representation, "neighbour_factor": self.neighbour_factor,
                "gamma": self.gamma, "spot_radius": list(self.spot_radius), "line_width": list(self.line_width),
                "colour": self.colour, "standardize": self.standardize, "symprec": self.symprec,
                "angle_tolerance": self.angle_tolerance, "debye_waller": dict(sorted(self.debye_waller.items()))}

    # -- physics -------------------------------------------------------------------------------

    def cell(self, structure: Structure) -> Cell:
        """The cell the patterns are computed for: spglib's conventional standard cell (or the
        structure's own, ``standardize=False``)."""
        if self.standardize:
            return conventional_cell(structure, self.symprec, self.angle_tolerance)
        return Cell.of(structure)

    def spots(self, structures: Sequence[Structure]) -> list[tuple[ZoneAxisSpots, ZoneAxisSpots, ZoneAxisSpots]]:
        """The spots of every structure along x, y and z (the physics, before any drawing)."""
        out = []
        for structure in structures:
            cell = self.cell(structure)
            try:
                out.append(zone_axis_views(
                    cell, wavelength=self.wavelength, radiation=self.radiation, ewald_sphere=self.ewald_sphere,
                    field=self.half_width + self.spot_radius[1], relrod_width=self.relrod_width,
                    max_excitation_error=self.max_excitation_error,
                    min_intensity=self.min_intensity, max_spots=self.max_spots, debye_waller=self.debye_waller,
                    device=self.device))
            except StructureError:
                raise
            except Exception as exc:
                raise StructureError(f"{cell.formula}: zone-axis simulation failed "
                                     f"({type(exc).__name__}: {exc})") from exc
        return out

    def pixels(self, position: torch.Tensor) -> torch.Tensor:
        """``(N, 2)`` (column, row) in pixels of in-plane positions ``(N, 2)`` (u, w) in Å⁻¹."""
        centre = (self.size - 1) / 2
        scale = self.pixels_per_inverse_angstrom
        return torch.stack([centre + position[:, 0] * scale, centre - position[:, 1] * scale], 1)

    # -- drawing -------------------------------------------------------------------------------

    def render(self, patterns: Sequence[Sequence[ZoneAxisSpots]]) -> torch.Tensor:
        """``(B, 3, C, size, size)`` float32 images in [0, 1] from the spots of :meth:`spots`."""
        views = [view for pattern in patterns for view in pattern]
        n = len(views)
        scale = self.pixels_per_inverse_angstrom
        spot_parts, line_parts = [], []
        for index, view in enumerate(views):
            if len(view) == 0:
                continue
            position = self.pixels(view.position)
            brightness = view.intensity.double() ** self.gamma
            radius = (scale * (self.spot_radius[0] + (self.spot_radius[1] - self.spot_radius[0]) * brightness)
                      ).clamp(min=MIN_RADIUS)
            spot_parts.append((torch.full((len(view),), index, dtype=torch.long, device=self.device),
                               position, position, radius, brightness))
            if self.representation == "shaped":
                pairs = shape_segments(view.position, self.neighbour_factor)
                if len(pairs):
                    mean = (brightness[pairs[:, 0]] + brightness[pairs[:, 1]]) / 2
                    width = self.line_width[0] + (self.line_width[1] - self.line_width[0]) * mean
                    line_parts.append((torch.full((len(pairs),), index, dtype=torch.long, device=self.device),
                                       position[pairs[:, 0]], position[pairs[:, 1]],
                                       (scale * width / 2).clamp(min=MIN_RADIUS),
                                       torch.ones_like(mean)))
        spots = self._draw(spot_parts, n, both=True)  # (2, n, H, W): brightness, coverage
        image = spots[0]
        if self.representation == "shaped":
            lines = self._draw(line_parts, n, both=False)[0]
            shaped = image + (1 - spots[1]) * lines  # spots over lines
        else:
            shaped = image
        size, b = self.size, len(patterns)
        shaped = shaped.view(b, 3, size, size).clamp_(0, 1)
        image = image.view(b, 3, size, size).clamp_(0, 1)
        if self.colour == "grey":
            return shaped.unsqueeze(2).contiguous()
        out = torch.zeros(b, 3, 3, size, size, dtype=torch.float32, device=self.device)
        if self.colour == "published":
            out[:] = image.unsqueeze(2)
        for v in range(3):
            out[:, v, v] = shaped[:, v]
        return out

    def _draw(self, parts: list[tuple[torch.Tensor, ...]], n_images: int, both: bool) -> torch.Tensor:
        if not parts:
            return torch.zeros(2 if both else 1, n_images, self.size, self.size, device=self.device)
        image, start, end, radius, value = (torch.cat(column) for column in zip(*parts))
        values = torch.stack([value, torch.ones_like(value)], 1) if both else value[:, None]
        return rasterise(image, start, end, radius, values, n_images, self.size, self.size)

    def simulate(self, structures: Sequence[Structure]) -> torch.Tensor:
        """``(B, 3, C, size, size)`` float32 in [0, 1]: views along x, y, z, one row per structure."""
        return self.render(self.spots(structures))


def zone_axis_spots(structure: Structure, **settings: Any) -> tuple[ZoneAxisSpots, ZoneAxisSpots, ZoneAxisSpots]:
    """The spots of one structure along x, y and z, as :class:`ZoneAxisSimulator` (``settings``:
    its keyword arguments) computes them; ``ZoneAxisSimulator(**settings).cell(structure)`` is the
    cell whose Cartesian axes and hkl they refer to."""
    return ZoneAxisSimulator(**settings).spots([structure])[0]
