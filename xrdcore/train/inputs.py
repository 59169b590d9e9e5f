"""How cached peak lists become model inputs: declared once per run, stored with it, and reused
unchanged by ``xrdcore predict`` so a measured pattern is preprocessed like the training data."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, get_args

import numpy as np
import torch

from xrdcore.data.cache import PeakCache
from xrdcore.diffraction.augment import Augmentations, augment
from xrdcore.diffraction.profile import DEFAULT_CAGLIOTI, AngleGrid, PeakBatch, PeakShape, render

#: input kinds a peak cache can feed; ``images`` need a simulator of their own
PEAK_CACHE_KINDS = ("profile", "peaks")
AUGMENTATIONS = ("none", "laboratory")


@dataclass(frozen=True)
class InputSpec:
    """Model input settings: the input kind, the 2θ grid (start, stop, step in degrees), the peak
    shape and widths of rendered profiles, and whether training profiles are augmented.

    ``augment="laboratory"`` draws measured-like effects (:meth:`Augmentations.laboratory`) for
    every training batch; validation and test profiles are never augmented.
    """

    kind: str = "profile"
    two_theta: tuple[float, float, float] = (5.0, 90.0, 0.01)
    shape: str = "gaussian"
    caglioti: tuple[float, float, float] = DEFAULT_CAGLIOTI
    eta: float = 0.5
    augment: str = "none"

    def __post_init__(self):
        if self.kind not in PEAK_CACHE_KINDS:
            raise ValueError(f"input kind {self.kind!r} cannot be built from a peak cache; "
                             f"use one of {', '.join(PEAK_CACHE_KINDS)}")
        object.__setattr__(self, "two_theta", tuple(float(v) for v in self.two_theta))
        object.__setattr__(self, "caglioti", tuple(float(v) for v in self.caglioti))
        if len(self.two_theta) != 3 or len(self.caglioti) != 3:
            raise ValueError(f"two_theta needs (start, stop, step) and caglioti (U, V, W); got "
                             f"{self.two_theta} and {self.caglioti}")
        AngleGrid(*self.two_theta)  # checks the grid
        if self.shape not in get_args(PeakShape):
            raise ValueError(f"unknown peak shape {self.shape!r}; use one of {', '.join(get_args(PeakShape))}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")

    @property
    def grid(self) -> AngleGrid:
        return AngleGrid(*self.two_theta)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["two_theta"], data["caglioti"] = list(self.two_theta), list(self.caglioti)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def encoder_kwargs(self, factory: Callable[..., Any]) -> dict[str, Any]:
        """What an encoder learns from the data: ``input_length`` always (profiles), and
        ``two_theta`` when the factory accepts it (encoders that use the angle of each point)."""
        if self.kind != "profile":
            return {}
        kwargs: dict[str, Any] = {"input_length": self.grid.length}
        try:
            parameters = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            return kwargs
        if "two_theta" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            kwargs["two_theta"] = self.two_theta
        return kwargs

    def check_cache(self, cache: PeakCache) -> None:
        """The grid must lie inside the 2θ range the cache's peaks were simulated for."""
        low, high = cache.manifest["spec"]["two_theta_range"]
        grid = self.grid
        if self.kind == "profile" and (grid.start < low - 1e-9 or grid.stop > high + 1e-9):
            raise ValueError(f"{cache.path}: peaks were simulated for 2θ {low}-{high} deg, but the input grid "
                             f"is {grid.start}-{grid.stop} deg; rebuild the data with --range or narrow the grid")

    def make(self, peaks: PeakBatch, generator: torch.Generator | None = None) -> Any:
        """Inputs of ``kind`` for a batch of peak lists; augmented when ``generator`` is given and
        augmentation is on (training batches only)."""
        if self.kind == "peaks":
            return {"two_theta": peaks.two_theta, "intensity": peaks.intensity / 100.0, "mask": peaks.mask}
        if generator is not None and self.augment == "laboratory":
            return augment(peaks, self.grid, Augmentations.laboratory(), generator, shape=self.shape,
                           caglioti=self.caglioti, eta=self.eta)
        return render(peaks, self.grid, shape=self.shape, caglioti=self.caglioti, eta=self.eta)

    @property
    def static(self) -> bool:
        """True when a pattern's input never changes, so it can be rendered once and reused."""
        return self.kind == "profile" and self.augment == "none"


class SplitInputs:
    """One split of a cache as model inputs on a device: rendered once when they never change
    (``InputSpec.static``), else built batch by batch from the peak lists."""

    def __init__(self, cache: PeakCache, split: str, spec: InputSpec, device: torch.device,
                 render_batch: int = 512):
        self.cache, self.split, self.spec, self.device = cache, split, spec, device
        self.indices = cache.indices(split)
        self.space_groups = torch.as_tensor(cache.space_groups[self.indices], device=device)
        self._profiles: torch.Tensor | None = None
        if spec.static and len(self.indices):
            self._profiles = torch.cat([spec.make(self._peaks(np.arange(i, min(i + render_batch, len(self)))))
                                        for i in range(0, len(self), render_batch)])

    def __len__(self) -> int:
        return len(self.indices)

    def _peaks(self, rows: Sequence[int]) -> PeakBatch:
        return PeakBatch.from_peak_lists([self.cache.peaks(int(self.indices[r])) for r in rows], self.device)

    def batch(self, rows: torch.Tensor, generator: torch.Generator | None = None) -> tuple[Any, torch.Tensor]:
        """Inputs and space-group numbers of the given rows (positions within the split)."""
        rows = rows.to(self.device)
        labels = self.space_groups[rows]
        if self._profiles is not None:
            return self._profiles[rows], labels
        return self.spec.make(self._peaks(rows.tolist()), generator), labels

