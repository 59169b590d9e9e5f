"""How a cache becomes model inputs: declared once per run, stored with it, and reused unchanged
by ``xrdcore predict`` so a measured pattern is preprocessed like the training data.

Profiles and peak lists are built from the cached peak lists; ``images`` come from a registered
images simulator run over the cached structures, stored once per simulator setting in the cache
directory (``images/``, uint8) so that every run and every benchmark reuses them."""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch

from xrdcore.data.cache import PeakCache
from xrdcore.diffraction.augment import Augmentations, ProfileWarp, augment
from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid, as_grid
from xrdcore.diffraction.profile import PeakBatch, PeakShape, render
from xrdcore.interfaces import INPUT_KINDS
from xrdcore.storage import atomic_write_bytes

#: input kinds built from a cache's peak lists; ``images`` need an images simulator
PEAK_CACHE_KINDS = ("profile", "peaks")
#: named augmentations of training inputs (validation and test inputs are never augmented): peak
#: lists rendered per batch with measured-like effects (``laboratory``), or profiles rendered once
#: and warped per batch (``lattice``: :class:`ProfileWarp`, strain and zero shift)
AUGMENTATIONS = {"none": Augmentations, "laboratory": Augmentations.laboratory, "lattice": ProfileWarp}
#: the presets that act on rendered profiles
PROFILE_AUGMENTATIONS = ("lattice",)
#: intensity scales of model inputs (of the profile, or of the peaks' intensities), all on [0, 1]
INTENSITY_SCALES = ("linear", "sqrt", "log")
#: the training recipe's grid (docs/training.md): the default 2θ range at 0.1° (850 points), uniform
#: in ln 1/d so that a lattice strain is a shift
RECIPE_GRID = replace(DEFAULT_GRID, step=0.1, axis="log_d")
#: peak widths of model inputs (U, V, W in deg²): FWHM 0.17-0.3° over 5-90°, so every peak spans
#: two or more points of the recipe's grid
RECIPE_CAGLIOTI = (0.01, -0.002, 0.03)
#: decades a ``log`` input spans: log10(1 + 1000 I) / 3 keeps peaks down to 0.1% of the strongest
_LOG_DECADES = 3


def scale_intensity(values: torch.Tensor, scale: str) -> torch.Tensor:
    """Relative intensities in [0, 1] on the ``scale`` a model sees: as they are, their square
    root, or compressed logarithmically (3 decades). Weak peaks carry the systematic absences
    that tell space groups apart; on a linear scale they are invisible next to the strongest."""
    if scale == "linear":
        return values
    if scale == "sqrt":
        return values.clamp(min=0).sqrt()
    if scale == "log":
        return torch.log10(1 + 10 ** _LOG_DECADES * values.clamp(min=0)) / _LOG_DECADES
    raise ValueError(f"intensity scale must be one of {', '.join(INTENSITY_SCALES)}, got {scale!r}")


@dataclass(frozen=True)
class InputSpec:
    """Model input settings: the input kind, the 2θ ``grid`` (:class:`AngleGrid`: range, step, and
    points uniform in 2θ or in ln 1/d; a mapping of some of its fields, as JSON settings give it,
    changes those of :data:`RECIPE_GRID`), the peak shape and widths of rendered profiles, and
    whether training profiles are augmented; for ``images``, the registered simulator and its
    options. Encoders get the grid from here (:meth:`encoder_kwargs`), so a change of step reaches
    rendering, the encoder's input length and the run's config.json and nothing else needs editing.

    ``augment="laboratory"`` draws measured-like effects (:meth:`Augmentations.laboratory`) for
    every training batch; validation and test profiles are never augmented. ``intensity`` is the
    scale the model sees (:func:`scale_intensity`).
    """

    kind: str = "profile"
    grid: AngleGrid = RECIPE_GRID
    shape: str = "gaussian"
    caglioti: tuple[float, float, float] = RECIPE_CAGLIOTI
    eta: float = 0.5
    augment: str = "lattice"
    intensity: str = "linear"
    simulator: str | None = None
    #: the images simulator's keyword arguments, stored as sorted (name, value) pairs (hashable)
    simulator_options: Any = field(default=())

    def __post_init__(self):
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"unknown input kind {self.kind!r}; use one of {', '.join(INPUT_KINDS)}")
        if (self.kind == "images") != (self.simulator is not None):
            raise ValueError("images inputs need a simulator (e.g. --simulator zone-axis from xrd-msdn)"
                             if self.kind == "images" else f"{self.kind} inputs are built from peak lists; "
                             f"a simulator ({self.simulator!r}) is only for images")
        options = dict(self.simulator_options)
        object.__setattr__(self, "simulator_options", tuple(sorted((k, _frozen(v)) for k, v in options.items())))
        object.__setattr__(self, "grid", as_grid("grid", self.grid, RECIPE_GRID))
        object.__setattr__(self, "caglioti", tuple(float(v) for v in self.caglioti))
        if len(self.caglioti) != 3 or not all(math.isfinite(v) for v in self.caglioti):
            raise ValueError(f"caglioti needs three finite numbers (U, V, W), got {self.caglioti}")
        if not (math.isfinite(self.eta) and 0 <= self.eta <= 1):
            raise ValueError(f"eta (the Lorentzian share of pseudo-Voigt peaks) must be in [0, 1], got {self.eta}")
        if self.shape not in get_args(PeakShape):
            raise ValueError(f"unknown peak shape {self.shape!r}; use one of {', '.join(get_args(PeakShape))}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")
        if self.intensity not in INTENSITY_SCALES:
            raise ValueError(f"intensity must be one of {', '.join(INTENSITY_SCALES)}, got {self.intensity!r}")

    def augmentations(self) -> Augmentations | ProfileWarp:
        """The ranges drawn for every training batch when ``augment`` is not ``none``."""
        return AUGMENTATIONS[self.augment]()

    def to_dict(self) -> dict[str, Any]:
        """JSON settings, the grid as ``two_theta: [start, stop, step]`` and ``axis``: the format
        of every run directory and packaged model, kept so that they all still load."""
        data = asdict(self)
        grid = data.pop("grid")
        data.update(two_theta=[grid["start"], grid["stop"], grid["step"]], axis=grid["axis"],
                    caglioti=list(self.caglioti),
                    simulator_options=json.loads(json.dumps(dict(self.simulator_options))))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        """Settings of :meth:`to_dict` (``two_theta`` and ``axis`` each optional, the rest of the
        grid the recipe's) or with a ``grid``."""
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        if "two_theta" in data or "axis" in data:
            if "grid" in data:
                raise ValueError("input settings give the grid twice: as grid and as two_theta/axis")
            grid = {"axis": data.pop("axis")} if "axis" in data else {}
            if "two_theta" in data:
                two_theta = data.pop("two_theta")
                if not isinstance(two_theta, tuple) or len(two_theta) != 3:
                    raise ValueError(f"two_theta must be [start, stop, step] in degrees, got {two_theta!r}")
                grid.update(zip(("start", "stop", "step"), two_theta))
            data["grid"] = grid
        return cls(**data)

    def encoder_kwargs(self, factory: Callable[..., Any], registry: Any | None = None) -> dict[str, Any]:
        """What an encoder learns from the data: the ``grid`` (every profile encoder takes it, its
        input length is ``grid.length``; peak-list encoders when they accept it: the range of the
        angles), and ``views``/``channels``/``image_size`` (images) when accepted."""
        if self.kind == "images":
            views, channels, height, width = self.image_shape(registry)
            if height != width:
                raise ValueError(f"simulator {self.simulator!r} makes {height}x{width} images; encoders take square ones")
            offered = {"views": views, "channels": channels, "image_size": height}
        else:
            offered = {"grid": self.grid}
        required = {"grid"} if self.kind == "profile" else set()
        try:
            parameters = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            return {k: v for k, v in offered.items() if k in required}
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        return {k: v for k, v in offered.items() if k in required or k in parameters or takes_any}

    def create_simulator(self, registry: Any | None = None) -> Any:
        from xrdcore import get_registry

        simulator = (registry or get_registry()).create("simulator", self.simulator, **dict(self.simulator_options))
        if simulator.output_kind != "images":
            raise ValueError(f"simulator {self.simulator!r} makes {simulator.output_kind!r}, not images")
        return simulator

    def image_shape(self, registry: Any | None = None, simulator: Any | None = None) -> tuple[int, int, int, int]:
        """(views, channels, height, width) of one structure's images (from ``simulator`` if given)."""
        shape = getattr(simulator or self.create_simulator(registry), "output_shape", None)
        if shape is None or len(shape) != 4:
            raise ValueError(f"simulator {self.simulator!r} does not declare its output_shape (V, C, H, W)")
        return tuple(int(v) for v in shape)

    def check_cache(self, cache: PeakCache) -> None:
        """A profile grid must lie inside the 2θ range the cache's peaks were simulated for."""
        low, high = cache.manifest["spec"]["two_theta_range"]
        grid = self.grid
        if self.kind == "profile" and (grid.start < low - 1e-9 or grid.stop > high + 1e-9):
            raise ValueError(f"{cache.path}: peaks were simulated for 2θ {low}-{high} deg, but the input grid "
                             f"is {grid.start}-{grid.stop} deg; rebuild the data with --range or narrow the grid")
        uses_indices = self.augment == "laboratory" and self.augmentations().preferred_orientation is not None
        if uses_indices and cache.manifest.get("peak_indices") is False:
            raise ValueError(f"{cache.path}: augmentation {self.augment!r} includes preferred orientation, which "
                             "needs the peaks' Miller indices, and this cache (imported from a compact export) "
                             "has none; choose another augmentation or build the data set from its source")

    def make(self, peaks: PeakBatch, generator: torch.Generator | None = None) -> Any:
        """Inputs of ``kind`` for a batch of peak lists; augmented when ``generator`` is given and
        augmentation is on (training batches only)."""
        if self.kind == "images":
            raise ValueError("images are simulated from structures, not built from peak lists")
        if self.kind == "peaks":
            return {"two_theta": peaks.two_theta, "intensity": scale_intensity(peaks.intensity / 100.0, self.intensity),
                    "mask": peaks.mask}
        if generator is not None and self.augment == "laboratory":
            profiles = augment(peaks, self.grid, self.augmentations(), generator, shape=self.shape,
                               caglioti=self.caglioti, eta=self.eta)
        else:
            profiles = render(peaks, self.grid, shape=self.shape, caglioti=self.caglioti, eta=self.eta)
        profiles = scale_intensity(profiles, self.intensity)
        return self.warp(profiles, generator)

    def warp(self, profiles: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """A profile-level augmentation (``lattice``) of rendered training profiles; as they are
        without ``generator`` (validation, test) or with any other setting."""
        if generator is None or self.augment not in PROFILE_AUGMENTATIONS:
            return profiles
        return self.augmentations()(profiles, self.grid, generator)

    @property
    def static(self) -> bool:
        """True when a pattern's input never changes, so it can be rendered once and reused."""
        return self.kind == "images" or (self.kind == "profile" and self.augment == "none")

    @property
    def rendered_once(self) -> bool:
        """True when profiles are rendered once per data set (and warped per batch if augmented)."""
        return self.kind == "profile" and (self.augment == "none" or self.augment in PROFILE_AUGMENTATIONS)


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


class SplitInputs:
    """One split of a cache (or the ``indices`` given) as model inputs on a device: rendered once
    when they never change (``InputSpec.static``; images always), else built batch by batch from
    the peak lists."""

    def __init__(self, cache: PeakCache, split: str, spec: InputSpec, device: torch.device,
                 render_batch: int = 512, indices: Sequence[int] | None = None, registry: Any | None = None):
        self.cache, self.split, self.spec, self.device = cache, split, spec, device
        self.indices = cache.indices(split) if indices is None else np.asarray(indices, dtype=np.int64)
        self.space_groups = torch.as_tensor(cache.space_groups[self.indices], device=device)
        self._profiles: torch.Tensor | None = None
        self._images: torch.Tensor | None = None
        if spec.kind == "images":
            self._images = torch.as_tensor(cached_images(cache, spec, self.indices, registry), device=device)
        elif spec.rendered_once and len(self.indices):
            self._profiles = torch.cat([spec.make(self._peaks(np.arange(i, min(i + render_batch, len(self)))))
                                        for i in range(0, len(self), render_batch)])

    def __len__(self) -> int:
        return len(self.indices)

    def subset(self, n: int, seed: int = 0) -> SplitInputs:
        """``n`` of these structures, drawn without replacement (seeded), sharing rendered inputs."""
        rows = torch.as_tensor(np.sort(np.random.default_rng(seed).permutation(len(self))[:n]))
        part = object.__new__(SplitInputs)
        part.cache, part.split, part.spec, part.device = self.cache, self.split, self.spec, self.device
        part.indices = self.indices[rows.numpy()]
        part.space_groups = self.space_groups[rows.to(self.space_groups.device)]
        part._profiles = None if self._profiles is None else self._profiles[rows.to(self._profiles.device)]
        part._images = None if self._images is None else self._images[rows.to(self._images.device)]
        return part

    def _peaks(self, rows: Sequence[int]) -> PeakBatch:
        return PeakBatch.from_peak_lists([self.cache.peaks(int(self.indices[r])) for r in rows], self.device)

    def batch(self, rows: torch.Tensor, generator: torch.Generator | None = None) -> tuple[Any, torch.Tensor]:
        """Inputs and space-group numbers of the given rows (positions within the split)."""
        rows = rows.to(self.device)
        labels = self.space_groups[rows]
        if self._images is not None:
            return self._images[rows].float() / 255.0, labels
        if self._profiles is not None:
            return self.spec.warp(self._profiles[rows], generator), labels
        return self.spec.make(self._peaks(rows.tolist()), generator), labels


def cached_images(cache: PeakCache, spec: InputSpec, indices: np.ndarray, registry: Any | None = None,
                  batch: int = 32) -> np.ndarray:
    """uint8 images ``(len(indices), V, C, H, W)`` of the given cache entries: simulated once per
    simulator setting into ``<cache>/images/<key>.npy`` (a memory map filled chunk by chunk; a
    kill loses at most the chunk being simulated) and read from there afterwards."""
    simulator = spec.create_simulator(registry)
    shape = spec.image_shape(simulator=simulator)
    setting = {"simulator": spec.simulator, "settings": simulator.settings, "shape": list(shape),
               "data_key": cache.manifest["key"]}
    key = hashlib.sha256(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache.path) / "images"
    path, done_path = folder / f"{spec.simulator}-{key}.npy", folder / f"{spec.simulator}-{key}.done.npy"
    folder.mkdir(exist_ok=True)
    if not (folder / f"{spec.simulator}-{key}.json").exists():
        atomic_write_bytes(folder / f"{spec.simulator}-{key}.json", json.dumps(setting, indent=2).encode())
    mode = "r+" if path.exists() else "w+"
    images = np.lib.format.open_memmap(path, mode=mode, dtype=np.uint8, shape=(len(cache), *shape))
    done = np.load(done_path) if done_path.exists() and mode == "r+" else np.zeros(len(cache), dtype=bool)
    missing = [int(i) for i in indices if not done[i]]
    for start in range(0, len(missing), batch):
        chunk = missing[start:start + batch]
        try:
            values = simulator.simulate([cache.structure(i) for i in chunk])
        except Exception as exc:
            raise ValueError(f"{cache.path}: simulator {spec.simulator!r} failed on entries "
                             f"{', '.join(cache.ids[i] for i in chunk[:3])}...: {exc}") from exc
        values = torch.as_tensor(values)
        if tuple(values.shape) != (len(chunk), *shape):
            raise ValueError(f"simulator {spec.simulator!r} returned images of shape {tuple(values.shape)}, "
                             f"expected {(len(chunk), *shape)}")
        images[chunk] = (values.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        images.flush()
        done[chunk] = True
        buffer = io.BytesIO()
        np.save(buffer, done)
        atomic_write_bytes(done_path, buffer.getvalue())
    return np.asarray(images[np.asarray(indices, dtype=np.int64)])


def images_simulators(registry: Any) -> list[str]:
    """Names of the installed simulators that make images."""
    names = []
    for name in registry.names("simulator"):
        try:
            if getattr(registry.get("simulator", name).load(), "output_kind", None) == "images":
                names.append(name)
        except Exception:  # noqa: BLE001, S112 - a simulator that cannot be imported feeds nothing
            continue
    return names


def images_input(registry: Any, images: Mapping[str, Any], size: str = "full") -> InputSpec:
    """The images InputSpec of ``{"simulator": name, **options}``; without a name, the one images
    simulator installed; ``size``: the simulator's registered size under the options (a simulator
    without a ``small`` size renders its full images for it)."""
    options = dict(images)
    simulator = options.pop("simulator", None)
    if simulator is None:
        names = images_simulators(registry)
        if not names:
            raise ValueError("images inputs need an images simulator, and none is installed (e.g. pip install xrd-msdn)")
        if len(names) > 1:
            raise ValueError(f"several images simulators are installed ({', '.join(names)}); choose one with --simulator")
        simulator = names[0]
    component = registry.get("simulator", simulator)
    sized = component.size_options(size) if size != "small" or component.small is not None else {}
    return InputSpec(kind="images", simulator=simulator, simulator_options={**sized, **options})


def split_inputs(cache: PeakCache, spec: InputSpec, device: torch.device, holdout: Sequence[int] = (),
                 registry: Any | None = None) -> dict[str, SplitInputs]:
    """``train``/``val``/``test`` inputs without the held-out space groups, and with a holdout
    their ``reference`` and ``unseen`` sets (:mod:`xrdcore.train.unseen`)."""
    from xrdcore.train.unseen import holdout_indices

    return {name: SplitInputs(cache, name, spec, device, indices=idx, registry=registry)
            for name, idx in holdout_indices(cache, holdout).items()}
