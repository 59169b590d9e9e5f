"""Augmentations that make simulated powder patterns look measured, batched in torch on any device.

A model trained on clean simulations meets measured patterns with misaligned goniometers, small
crystallites, textured samples, impurities, a Kα2 line, background and counting noise. This
module draws those effects per pattern from physical ranges (:class:`Augmentations`) and applies
them while rendering a :class:`~xrdcore.diffraction.profile.PeakBatch`. Every augmentation is
off by default, so evaluation stays clean; :meth:`Augmentations.laboratory` is a training preset.

Order (each step acts on what the previous ones produced):

1. per phase, on the peak list: preferred orientation, intensity jitter;
2. impurity phase: another pattern's peaks are mixed in (converted to this pattern's wavelength);
3. lattice strain of the sample, then the instrument, on all peaks: Kα2 doublet, sample
   displacement and zero shift (which move Kα1 and Kα2 peaks alike), then the widths
   (Caglioti ⊕ Scherrer);
4. rendering (:func:`~xrdcore.diffraction.profile.render`, maximum 1);
5. background (polynomial + amorphous hump), then counting and read noise; the result is clamped
   at 0 and scaled to a maximum of 1.

:func:`augment` = :func:`draw_parameters` (every per-pattern parameter, from the generator, in
that order) + :func:`apply_augmentations` (which draws the per-peak and per-point noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

from xrdcore.diffraction.grid import AngleGrid
from xrdcore.diffraction.profile import DEFAULT_CAGLIOTI, PeakBatch, PeakShape, caglioti_fwhm, render
from xrdcore.diffraction.pxrd import lorentz_polarisation
from xrdcore.diffraction.radiation import WAVELENGTHS
from xrdcore.validate import is_real, positive_float, positive_int

Range = tuple[float, float]
Direction = tuple[int, int, int]

#: Kα2/Kα1 intensity ratio of the laboratory anodes (2:1 from the 2p3/2 : 2p1/2 occupancies)
KALPHA2_RATIO = 0.5
#: preferred-orientation directions drawn from, as reciprocal-lattice indices (plane normals)
LOW_INDEX_DIRECTIONS: tuple[Direction, ...] = ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1),
                                               (0, 1, 1), (1, 1, 1))
#: Kα1 line -> Kα2 line, in Å, for every anode of :data:`WAVELENGTHS` that has both
KALPHA_PAIRS: dict[str, tuple[float, float]] = {
    name[:-3]: (WAVELENGTHS[name], WAVELENGTHS[name[:-1] + "2"])
    for name in WAVELENGTHS if name.endswith("Ka1") and name[:-1] + "2" in WAVELENGTHS
}
#: relative tolerance for recognising a Kα1 wavelength (float32 batches hold 1.54056 as 1.5405600071)
_LINE_RTOL = 1e-6
_TINY = torch.finfo(torch.float32).tiny
#: the augmentations that act on peak lists, then those that act on rendered profiles
_PEAK_LEVEL = ("strain", "zero_shift", "displacement", "crystallite_size", "intensity_jitter", "preferred_orientation",
               "impurity", "kalpha2")
_PROFILE_LEVEL = ("background", "hump_height", "max_counts", "read_noise")


@dataclass(frozen=True)
class Augmentations:
    """Physical ranges ``(low, high)`` of each augmentation, drawn per pattern; ``None`` = off.

    Values are drawn uniformly in the range, except the crystallite size and the maximum count,
    which span decades and are drawn log-uniformly. ``low == high`` fixes a value.

    - ``strain``: ε, a relative change of every d-spacing (an isotropic lattice strain: thermal
      expansion, a solvated or breathing framework, an isostructural analogue), so
      sin θ' = sin θ / (1 + ε); peaks move most at high angle.
    - ``zero_shift``: constant Δ2θ of a misaligned goniometer zero, degrees.
    - ``displacement``: sample height error s, mm; Δ2θ = −2 s cos θ / R (radians) with
      R = ``goniometer_radius`` in mm, so s > 0 moves peaks to lower 2θ, most at low angle.
    - ``crystallite_size``: L in nm; Scherrer width K λ / (L cos θ) (radians) with
      K = ``scherrer_constant``, added in quadrature to the instrumental Caglioti width (exact
      for Gaussian widths; Lorentzian widths would add linearly).
    - ``intensity_jitter``: σ; every peak is multiplied by exp(N(0, σ²)).
    - ``preferred_orientation``: March–Dollase r (r < 1 platelets, r > 1 needles, 1 random)
      about a direction drawn per pattern from ``orientation_directions`` (reciprocal indices).
    - ``impurity``: weight fraction w of a second phase (another pattern of the batch).
    - ``kalpha2``: Kα2/Kα1 intensity ratio (laboratory: :data:`KALPHA2_RATIO`); needs Kα1 batches.
    - ``background``: Bernstein coefficients of a polynomial of degree ``background_degree``,
      as fractions of the pattern maximum (so the polynomial stays within the range).
    - ``hump_height``: amorphous hump height, fraction of the pattern maximum; a Gaussian with
      centre ``hump_centre`` and FWHM ``hump_fwhm`` (ranges in degrees 2θ, used only when on).
    - ``max_counts``: counts at the pattern maximum for Poisson counting noise.
    - ``read_noise``: σ of additive Gaussian detector noise, fraction of the pattern maximum.
    """

    strain: Range | None = None
    zero_shift: Range | None = None
    displacement: Range | None = None
    goniometer_radius: float = 240.0
    crystallite_size: Range | None = None
    scherrer_constant: float = 0.9
    intensity_jitter: Range | None = None
    preferred_orientation: Range | None = None
    orientation_directions: tuple[Direction, ...] = LOW_INDEX_DIRECTIONS
    impurity: Range | None = None
    kalpha2: Range | None = None
    background: Range | None = None
    background_degree: int = 3
    hump_height: Range | None = None
    hump_centre: Range = (15.0, 35.0)
    hump_fwhm: Range = (5.0, 15.0)
    max_counts: Range | None = None
    read_noise: Range | None = None

    def __post_init__(self):
        radius = positive_float("goniometer_radius", self.goniometer_radius, "mm")
        positive_float("scherrer_constant", self.scherrer_constant)
        # name: (minimum, minimum allowed?, maximum, maximum allowed?, unit)
        limits = {
            "strain": (-0.2, True, 0.2, True, "(relative change of the d-spacings)"),
            "zero_shift": (-10.0, True, 10.0, True, "degrees"),
            "displacement": (-0.1 * radius, True, 0.1 * radius, True, "mm (|s| <= R/10)"),
            "crystallite_size": (1.0, True, math.inf, False, "nm"),
            "intensity_jitter": (0.0, True, 5.0, True, ""),
            "preferred_orientation": (0.0, False, math.inf, False, ""),
            "impurity": (0.0, True, 0.5, True, "(weight fraction of the minor phase)"),
            "kalpha2": (0.0, True, 1.0, True, ""),
            "background": (0.0, True, math.inf, False, "(fraction of the maximum)"),
            "hump_height": (0.0, True, math.inf, False, "(fraction of the maximum)"),
            "hump_centre": (0.0, True, 180.0, True, "degrees"),
            "hump_fwhm": (0.0, False, 180.0, True, "degrees"),
            "max_counts": (1.0, True, math.inf, False, "counts"),
            "read_noise": (0.0, True, math.inf, False, "(fraction of the maximum)"),
        }
        for name, limit in limits.items():
            value = getattr(self, name)
            if value is None and name not in ("hump_centre", "hump_fwhm"):
                continue
            object.__setattr__(self, name, _check_range(name, value, *limit))
        degree = self.background_degree
        if isinstance(degree, bool) or not isinstance(degree, int) or not 0 <= degree <= 10:
            raise ValueError(f"background_degree must be an integer in 0..10, got {degree!r}")
        object.__setattr__(self, "orientation_directions", _check_directions(self.orientation_directions))

    @classmethod
    def laboratory(cls, *, kalpha2: bool = True) -> Augmentations:
        """A measured-like preset for training: a Bragg–Brentano diffractometer with a Cu tube
        (Kα2 on unless ``kalpha2=False``, e.g. for monochromated or non-Kα1 simulations)."""
        return cls(zero_shift=(-0.05, 0.05), displacement=(-0.15, 0.15), crystallite_size=(20.0, 500.0),
                   intensity_jitter=(0.0, 0.15), preferred_orientation=(0.7, 1.3), impurity=(0.0, 0.1),
                   kalpha2=(KALPHA2_RATIO, KALPHA2_RATIO) if kalpha2 else None, background=(0.0, 0.05),
                   hump_height=(0.0, 0.05), max_counts=(1e3, 1e5), read_noise=(0.0, 0.002))

    @property
    def enabled(self) -> tuple[str, ...]:
        """Names of the augmentations that are on."""
        return tuple(name for name in _PEAK_LEVEL + _PROFILE_LEVEL if getattr(self, name) is not None)


@dataclass(frozen=True)
class AugmentationDraw:
    """The per-pattern parameters of one batch, shape (B,) on the generator's device; ``None``
    where the augmentation is off. Units as in :class:`Augmentations`."""

    config: Augmentations
    batch_size: int
    strain: torch.Tensor | None = None  # relative change of d
    zero_shift: torch.Tensor | None = None  # degrees
    displacement: torch.Tensor | None = None  # mm
    crystallite_size: torch.Tensor | None = None  # nm
    intensity_jitter: torch.Tensor | None = None  # σ of ln I
    preferred_orientation: torch.Tensor | None = None  # March r
    orientation: torch.Tensor | None = None  # (B, 3) int, reciprocal indices
    impurity: torch.Tensor | None = None  # weight fraction
    impurity_shift: int = 0  # pattern i takes its impurity from pattern (i - shift) mod B
    kalpha2: torch.Tensor | None = None  # intensity ratio
    background: torch.Tensor | None = None  # (B, degree + 1) Bernstein coefficients
    hump_height: torch.Tensor | None = None  # fraction of the maximum
    hump_centre: torch.Tensor | None = None  # degrees
    hump_fwhm: torch.Tensor | None = None  # degrees
    max_counts: torch.Tensor | None = None  # counts
    read_noise: torch.Tensor | None = None  # fraction of the maximum


def augment(peaks: PeakBatch, grid: AngleGrid, config: Augmentations, generator: torch.Generator, *,
            shape: PeakShape = "pseudo-voigt", caglioti: tuple[float, float, float] = DEFAULT_CAGLIOTI,
            eta: float = 0.5) -> torch.Tensor:
    """Measured-like profiles ``(B, grid.length)``, maximum 1, each pattern with its own draw.

    ``generator`` must live on the peaks' device; with every augmentation off this is exactly
    ``render(peaks, grid, shape=shape, caglioti=caglioti, eta=eta)``.
    """
    _check_generator(generator, peaks.two_theta.device)
    draw = draw_parameters(config, len(peaks), generator)
    return apply_augmentations(peaks, grid, draw, generator, shape=shape, caglioti=caglioti, eta=eta)


def draw_parameters(config: Augmentations, batch_size: int, generator: torch.Generator) -> AugmentationDraw:
    """Every per-pattern parameter of :class:`Augmentations`, drawn on the generator's device in
    field order (only for the augmentations that are on). The impurity of pattern i is pattern
    (i − shift) mod B with one shift 1..B−1 per batch; a batch of one is its own impurity."""
    if not isinstance(config, Augmentations):
        raise TypeError(f"config must be an Augmentations, got {type(config).__name__}")
    positive_int("batch_size", batch_size)
    device = generator.device

    def uniform(bounds: Range | None, log: bool = False, columns: int = 0) -> torch.Tensor | None:
        if bounds is None:
            return None
        low, high = bounds
        size = (batch_size, columns) if columns else (batch_size,)
        if low == high:
            return torch.full(size, float(low), device=device)
        u = torch.rand(size, generator=generator, device=device)
        if log:
            return torch.exp(math.log(low) + (math.log(high) - math.log(low)) * u)
        return low + (high - low) * u

    values = {
        "strain": uniform(config.strain),
        "zero_shift": uniform(config.zero_shift),
        "displacement": uniform(config.displacement),
        "crystallite_size": uniform(config.crystallite_size, log=True),
        "intensity_jitter": uniform(config.intensity_jitter),
        "preferred_orientation": uniform(config.preferred_orientation),
    }
    if config.preferred_orientation is not None:
        directions = torch.tensor(config.orientation_directions, dtype=torch.long, device=device)
        pick = torch.randint(len(directions), (batch_size,), generator=generator, device=device)
        values["orientation"] = directions[pick]
    values["impurity"] = uniform(config.impurity)
    if config.impurity is not None and batch_size > 1:
        values["impurity_shift"] = int(torch.randint(1, batch_size, (1,), generator=generator, device=device))
    values["kalpha2"] = uniform(config.kalpha2)
    values["background"] = uniform(config.background, columns=config.background_degree + 1)
    values["hump_height"] = uniform(config.hump_height)
    if config.hump_height is not None:
        values["hump_centre"] = uniform(config.hump_centre)
        values["hump_fwhm"] = uniform(config.hump_fwhm)
    values["max_counts"] = uniform(config.max_counts, log=True)
    values["read_noise"] = uniform(config.read_noise)
    return AugmentationDraw(config, batch_size, **values)


def apply_augmentations(peaks: PeakBatch, grid: AngleGrid, draw: AugmentationDraw, generator: torch.Generator,
                        *, shape: PeakShape = "pseudo-voigt",
                        caglioti: tuple[float, float, float] = DEFAULT_CAGLIOTI,
                        eta: float = 0.5) -> torch.Tensor:
    """Render ``peaks`` with the parameters of ``draw``; per-peak and per-point noise is drawn
    from ``generator`` (on the peaks' device). Output ``(B, grid.length)``, maximum 1."""
    device = peaks.two_theta.device
    _check_generator(generator, device)
    if draw.batch_size != len(peaks):
        raise ValueError(f"the draw is for {draw.batch_size} patterns, the batch has {len(peaks)}")
    draw = _on_device(draw, device)
    augmented, fwhm = _augment_peaks(peaks, draw, generator, caglioti)
    profiles = render(augmented, grid, shape=shape, caglioti=caglioti, eta=eta,
                      fwhm=None if shape == "stick" else fwhm)
    background = background_profiles(grid, draw, device)
    if background is not None:
        profiles = _normalise(profiles + background * profiles.amax(dim=1, keepdim=True))
    if draw.max_counts is not None or draw.read_noise is not None:
        profiles = _add_noise(profiles, draw, generator)
    return profiles


# --- the physics, one formula each ------------------------------------------------------------


def lattice_strain(two_theta: torch.Tensor, strain: torch.Tensor) -> torch.Tensor:
    """2θ' in degrees of reflections whose d-spacings grow by the factor 1 + ``strain``:
    sin θ' = sin θ / (1 + ε)."""
    sin = torch.sin(torch.deg2rad(two_theta / 2)) / (1 + strain)
    return torch.rad2deg(2 * torch.asin(sin.clamp(-1.0, 1.0)))


def sample_displacement_shift(two_theta: torch.Tensor, displacement: torch.Tensor,
                              radius: float = 240.0) -> torch.Tensor:
    """Peak shift Δ2θ in degrees of a sample displaced by ``displacement`` mm from the focusing
    circle of a Bragg–Brentano goniometer of radius ``radius`` mm: Δ2θ = −2 s cos θ / R rad."""
    theta = torch.deg2rad(two_theta / 2)
    return torch.rad2deg(-2 * displacement * torch.cos(theta) / radius)


def scherrer_fwhm(two_theta: torch.Tensor, wavelength: torch.Tensor, size: torch.Tensor,
                  constant: float = 0.9) -> torch.Tensor:
    """Size broadening (FWHM, degrees 2θ) of crystallites ``size`` nm at ``wavelength`` Å:
    Scherrer's K λ / (L cos θ) in radians, K = ``constant``."""
    theta = torch.deg2rad(two_theta / 2)
    return torch.rad2deg(constant * wavelength / (10 * size * torch.cos(theta)))


def march_dollase(peaks: PeakBatch, ratio: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """March–Dollase weights ``(B, P)`` for r = ``ratio`` (B,) about ``direction`` (B, 3),
    reciprocal indices: W = (r² cos²α + sin²α / r)^(−3/2), α the angle between a reflection's
    reciprocal vector g = hkl @ reciprocal and direction @ reciprocal (plane normals).

    A powder peak holds a whole family {hkl R} (R over the Laue group), whose members make
    different angles with the direction, so W is averaged over the family: cubic {200} about
    [001] gets (2 W(90°) + W(0°)) / 3. Padded peaks get 1.
    """
    reciprocal = peaks.reciprocal
    family = torch.einsum("bpi,brij->bprj", peaks.hkl.to(reciprocal.dtype), peaks.rotations.to(reciprocal.dtype))
    g = torch.einsum("bprj,bjk->bprk", family, reciprocal)
    axis = torch.einsum("bi,bij->bj", direction.to(reciprocal.dtype), reciprocal)
    norms = torch.linalg.vector_norm(g, dim=-1) * torch.linalg.vector_norm(axis, dim=-1)[:, None, None]
    cos2 = ((g * axis[:, None, None]).sum(-1) / norms.clamp(min=_TINY)).square().clamp(0, 1)
    r = ratio[:, None, None].to(reciprocal.dtype)
    weight = (r ** 2 * cos2 + (1 - cos2) / r) ** -1.5  # (B, P, R)
    valid = peaks.rotation_mask[:, None, :].to(weight.dtype)
    weight = (weight * valid).sum(-1) / valid.sum(-1).clamp(min=1)
    return torch.where(peaks.mask, weight, torch.ones_like(weight))


def kalpha2_wavelength(wavelength: torch.Tensor) -> torch.Tensor:
    """The Kα2 wavelength (Å) of each Kα1 ``wavelength`` (Å) in :data:`KALPHA_PAIRS`; any other
    wavelength is a ValueError (a weighted-mean ``Ka`` line already stands for the doublet)."""
    lines = torch.tensor(list(KALPHA_PAIRS.values()), dtype=wavelength.dtype, device=wavelength.device)
    match = (wavelength[:, None] - lines[:, 0]).abs() <= _LINE_RTOL * lines[:, 0]
    found = match.any(dim=1)
    if not bool(found.all()):
        unknown = sorted({round(float(v), 6) for v in wavelength[~found].cpu()})
        known = ", ".join(f"{anode}Ka1 {ka1} Å" for anode, (ka1, _) in KALPHA_PAIRS.items())
        raise ValueError(f"the Kα2 augmentation needs Kα1 radiation, but wavelength(s) {unknown} Å are no "
                         f"Kα1 line (known: {known}); simulate with a Kα1 line or turn kalpha2 off")
    return lines[match.to(torch.int8).argmax(dim=1), 1]


def kalpha2_two_theta(two_theta: torch.Tensor, lambda1: torch.Tensor, lambda2: torch.Tensor) -> torch.Tensor:
    """2θ₂ = 2 asin((λ₂/λ₁) sin θ₁) in degrees: where the Kα2 line diffracts from the planes that
    put Kα1 at ``two_theta`` (degrees); NaN where sin θ₂ would exceed 1."""
    sin2 = lambda2 / lambda1 * torch.sin(torch.deg2rad(two_theta / 2))
    return torch.rad2deg(2 * torch.asin(sin2))


def background_profiles(grid: AngleGrid, draw: AugmentationDraw,
                        device: str | torch.device | None = None) -> torch.Tensor | None:
    """Background ``(B, grid.length)`` in fractions of the pattern maximum, or ``None`` if off.

    Polynomial in Bernstein form, Σ cₖ C(n,k) xᵏ (1−x)ⁿ⁻ᵏ, x = (2θ − start)/(stop − start):
    the basis is non-negative and sums to 1, so with cₖ ≥ 0 the polynomial lies between min cₖ and
    max cₖ on the grid. Plus an amorphous hump h exp(−4 ln 2 (2θ − c)² / F²), a Gaussian of
    height h, centre c and FWHM F (degrees).
    """
    if draw.background is None and draw.hump_height is None:
        return None
    if device is None:
        device = (draw.background if draw.background is not None else draw.hump_height).device
    angles = torch.as_tensor(grid.values, device=device, dtype=torch.float32)
    total = torch.zeros(draw.batch_size, grid.length, device=device)
    if draw.background is not None:
        n = draw.background.shape[1] - 1
        x = ((angles - grid.start) / (grid.stop - grid.start))[None]
        k = torch.arange(n + 1, device=device, dtype=torch.float32)[:, None]
        binomial = torch.tensor([float(math.comb(n, i)) for i in range(n + 1)], device=device)[:, None]
        basis = binomial * x ** k * (1 - x) ** (n - k)  # (n + 1, L)
        total = total + draw.background.to(device) @ basis
    if draw.hump_height is not None:
        centre, width = draw.hump_centre.to(device)[:, None], draw.hump_fwhm.to(device)[:, None]
        total = total + draw.hump_height.to(device)[:, None] * torch.exp(
            -4 * math.log(2) * (angles - centre) ** 2 / width ** 2)
    return total


# --- the steps --------------------------------------------------------------------------------


def _augment_peaks(peaks: PeakBatch, draw: AugmentationDraw, generator: torch.Generator,
                   caglioti: tuple[float, float, float]) -> tuple[PeakBatch, torch.Tensor | None]:
    """Peak-level augmentations; returns the new batch and per-peak FWHM (``None``: Caglioti)."""
    config = draw.config
    if not any(getattr(draw, name) is not None for name in _PEAK_LEVEL):
        return peaks, None
    two_theta, intensity, mask, hkl = peaks.two_theta, peaks.intensity, peaks.mask, peaks.hkl
    if draw.preferred_orientation is not None:
        intensity = intensity * march_dollase(peaks, draw.preferred_orientation, draw.orientation)
    if draw.intensity_jitter is not None:
        normal = torch.randn(intensity.shape, generator=generator, device=intensity.device,
                             dtype=intensity.dtype)
        intensity = intensity * torch.exp(draw.intensity_jitter[:, None] * normal)
    lam = peaks.wavelength[:, None].expand_as(two_theta)  # per peak: Kα2 peaks get λ₂
    if draw.impurity is not None:
        two_theta, intensity, mask, hkl = _mix_impurity(peaks, intensity, draw)
        lam = peaks.wavelength[:, None].expand_as(two_theta)
    if draw.kalpha2 is not None:
        lambda2 = kalpha2_wavelength(peaks.wavelength)[:, None].expand_as(two_theta)
        two_theta2 = kalpha2_two_theta(two_theta, lam, lambda2)
        ok = mask & torch.isfinite(two_theta2)
        two_theta = torch.cat([two_theta, torch.where(ok, two_theta2, torch.zeros_like(two_theta2))], dim=1)
        intensity = torch.cat([intensity, torch.where(ok, draw.kalpha2[:, None] * intensity, 0.0)], dim=1)
        mask, hkl, lam = torch.cat([mask, ok], 1), torch.cat([hkl, hkl], 1), torch.cat([lam, lambda2], 1)
    if draw.strain is not None:  # the sample's own d-spacings: before the instrument's errors
        two_theta = lattice_strain(two_theta, draw.strain[:, None])
    true_two_theta = two_theta
    if draw.displacement is not None:
        two_theta = two_theta + sample_displacement_shift(true_two_theta, draw.displacement[:, None],
                                                          config.goniometer_radius)
    if draw.zero_shift is not None:
        two_theta = two_theta + draw.zero_shift[:, None]
    fwhm = None
    if draw.crystallite_size is not None:
        instrument = caglioti_fwhm(two_theta, *caglioti)
        size = scherrer_fwhm(true_two_theta, lam, draw.crystallite_size[:, None], config.scherrer_constant)
        fwhm = torch.sqrt(instrument ** 2 + size ** 2)
        fwhm = torch.where(mask, fwhm, instrument)  # padded peaks (2θ = 0) keep a finite width
    # hkl of impurity peaks refer to the impurity's cell: nothing downstream reads them
    return replace(peaks, two_theta=two_theta, intensity=intensity, mask=mask, hkl=hkl), fwhm


def _mix_impurity(peaks: PeakBatch, intensity: torch.Tensor, draw: AugmentationDraw):
    """Append the peaks of pattern (i − shift) mod B to pattern i as a second phase.

    The impurity's peaks move to this pattern's wavelength (same d: sin θ' = (λ/λ_imp) sin θ, the
    Lorentz–polarisation factor re-evaluated at θ'). Both phases are scaled to a strongest peak of
    100 and then by their weight fractions 1 − w and w: the reference-intensity-ratio method with
    equal I/I_corundum for the two phases.
    """
    shift = draw.impurity_shift
    other_tt, other_int, other_mask, other_hkl, other_lam = (
        torch.roll(t, shifts=shift, dims=0) for t in (peaks.two_theta, intensity, peaks.mask, peaks.hkl,
                                                     peaks.wavelength))
    ratio = (peaks.wavelength / other_lam)[:, None]
    sin_new = ratio * torch.sin(torch.deg2rad(other_tt / 2))
    converted_tt = torch.rad2deg(2 * torch.asin(sin_new.clamp(max=1.0)))
    same = (ratio == 1).expand_as(other_tt)
    ok = other_mask & (same | (sin_new < 1))
    safe = lambda t: torch.where(ok, t, torch.full_like(t, 90.0))  # noqa: E731  keeps LP finite on padding
    lp_ratio = (lorentz_polarisation(torch.deg2rad(safe(converted_tt) / 2))
                / lorentz_polarisation(torch.deg2rad(safe(other_tt) / 2)))
    other_tt = torch.where(same, other_tt, converted_tt)
    other_int = torch.where(same, other_int, other_int * lp_ratio)
    other_tt, other_int = torch.where(ok, other_tt, 0.0), torch.where(ok, other_int, 0.0)

    def to_100(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        top = torch.where(valid, values, 0.0).amax(dim=1, keepdim=True)
        return 100 * values / top.clamp(min=_TINY)

    w = draw.impurity[:, None]
    host = to_100(intensity, peaks.mask) * (1 - w)
    guest = to_100(other_int, ok) * w
    return (torch.cat([peaks.two_theta, other_tt], 1), torch.cat([host, guest], 1),
            torch.cat([peaks.mask, ok], 1), torch.cat([peaks.hkl, other_hkl], 1))


def _add_noise(profiles: torch.Tensor, draw: AugmentationDraw, generator: torch.Generator) -> torch.Tensor:
    """Poisson counting noise at ``max_counts`` counts for the maximum, then Gaussian read noise
    of σ = ``read_noise`` × maximum; clamped at 0 and scaled to a maximum of 1."""
    top = profiles.amax(dim=1, keepdim=True)
    scale = (top > 0).to(profiles.dtype)  # an empty pattern stays empty
    x = profiles / top.clamp(min=_TINY)
    if draw.max_counts is not None:
        scale = scale * draw.max_counts[:, None]
        x = torch.poisson(x * scale, generator=generator)
    if draw.read_noise is not None:
        normal = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = x + draw.read_noise[:, None] * scale * normal
    return _normalise(x.clamp(min=0))


def _normalise(profiles: torch.Tensor) -> torch.Tensor:
    return profiles / profiles.amax(dim=1, keepdim=True).clamp(min=_TINY)


# --- checks -----------------------------------------------------------------------------------


def _check_generator(generator: torch.Generator, device: torch.device) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != device.type:
        raise ValueError(f"the generator is on {generator.device} but the peaks are on {device}; "
                         f"use torch.Generator(device={str(device)!r})")


def _on_device(draw: AugmentationDraw, device: torch.device) -> AugmentationDraw:
    moved = {f.name: getattr(draw, f.name) for f in fields(draw)}
    for name, value in moved.items():
        if isinstance(value, torch.Tensor):
            moved[name] = value.to(device)
    return AugmentationDraw(**moved)


def _check_range(name: str, value, minimum: float, min_ok: bool, maximum: float, max_ok: bool,
                 unit: str) -> Range:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair or None, got {value!r}")
    low, high = value
    if not (is_real(low) and is_real(high)):
        raise ValueError(f"{name} must hold two finite numbers, got {value!r}")
    if low > high:
        raise ValueError(f"{name} has low > high: {value!r}")
    above = low >= minimum if min_ok else low > minimum
    below = high <= maximum if max_ok else high < maximum
    if not (above and below):
        interval = f"{'[' if min_ok else '('}{minimum:g}, {maximum:g}{']' if max_ok else ')'}"
        raise ValueError(f"{name} must lie in {interval} {unit}, got {value!r}".rstrip())
    return float(low), float(high)


def _check_directions(directions) -> tuple[Direction, ...]:
    try:
        checked = tuple(tuple(int(i) for i in d) for d in directions)
        exact = all(len(d) == 3 and all(int(i) == i for i in d) for d in directions)
    except (TypeError, ValueError):
        checked, exact = (), False
    if not checked or not exact or any(d == (0, 0, 0) for d in checked):
        raise ValueError(f"orientation_directions must be non-empty integer (h, k, l) triples, "
                         f"not (0, 0, 0); got {directions!r}")
    return checked


# --- augmentations of rendered profiles -------------------------------------------------------


@dataclass(frozen=True)
class ProfileWarp:
    """Augmentations applied to profiles already rendered (so a data set renders once and each
    batch costs a resampling, not a rendering): per pattern a lattice ``strain`` ε (relative change
    of every d-spacing) and a ``zero_shift`` (degrees 2θ), each drawn uniformly from its range.

    What it teaches a model: a framework with a slightly larger or smaller cell (another metal, a
    solvent, temperature) keeps its space group; the peaks' pattern, not their exact positions,
    carries it. Peak widths and the Lorentz–polarisation factor are left as they are (for |ε| of a
    few percent their change is far below the change of position).
    """

    strain: Range = (-0.02, 0.02)
    zero_shift: Range = (-0.03, 0.03)
    #: σ of ln of a smooth random gain along the pattern (knots every ``gain_points`` points,
    #: linear between): relative intensities of regions change as they do between analogues
    gain: float = 0.0
    gain_points: int = 20

    def __post_init__(self):
        object.__setattr__(self, "strain", _check_range("strain", self.strain, -0.2, True, 0.2, True, ""))
        object.__setattr__(self, "zero_shift",
                           _check_range("zero_shift", self.zero_shift, -10.0, True, 10.0, True, "degrees"))
        if not is_real(self.gain) or not 0 <= self.gain <= 2:
            raise ValueError(f"gain must be a number in [0, 2], got {self.gain!r}")
        positive_int("gain_points", self.gain_points)

    def __call__(self, profiles: torch.Tensor, grid: AngleGrid, generator: torch.Generator) -> torch.Tensor:
        _check_generator(generator, profiles.device)
        u = torch.rand(2, len(profiles), generator=generator, device=profiles.device)
        strain = self.strain[0] + (self.strain[1] - self.strain[0]) * u[0]
        shift = self.zero_shift[0] + (self.zero_shift[1] - self.zero_shift[0]) * u[1]
        warped = warp_profiles(profiles, grid, strain, shift)
        if not self.gain:
            return warped
        knots = torch.randn(len(profiles), 1, grid.length // self.gain_points + 2, generator=generator,
                            device=profiles.device)
        gain = torch.nn.functional.interpolate(knots, size=grid.length, mode="linear", align_corners=True)[:, 0]
        return _normalise(warped * torch.exp(self.gain * gain))


def warp_profiles(profiles: torch.Tensor, grid: AngleGrid, strain: torch.Tensor,
                  zero_shift: torch.Tensor) -> torch.Tensor:
    """Profiles ``(B, L)`` on ``grid`` as they look after a lattice strain ε and a zero shift Δ
    (degrees) per pattern: the value at 2θ is the original value at 2θ₀ with
    sin θ₀ = (1 + ε) sin((2θ − Δ) / 2), linearly interpolated, and 0 where 2θ₀ is off the grid."""
    angles = torch.as_tensor(grid.values, device=profiles.device, dtype=torch.float64)
    source = torch.sin(torch.deg2rad((angles[None] - zero_shift.double()[:, None]) / 2)) * (1 + strain.double()[:, None])
    position = grid.position(torch.rad2deg(2 * torch.asin(source.clamp(1e-12, 1.0))))
    inside = (position >= 0) & (position <= grid.length - 1)
    low = position.floor().clamp(0, grid.length - 1).long()
    high = (low + 1).clamp(max=grid.length - 1)
    weight = (position - low).to(profiles.dtype)
    values = profiles.gather(1, low) * (1 - weight) + profiles.gather(1, high) * weight
    return torch.where(inside, values, torch.zeros_like(values))
