"""What a run is, and the one way to make it from options: :func:`run_config` serves ``xrdcore
train``, every cell of ``xrdcore bench`` and Python alike, so a setting means the same everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from xrdcore.train.inputs import InputSpec, images_input
from xrdcore.train.model import HEADS

OPTIMIZERS = ("adamw", "adam")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """Everything that determines a run besides the data. Component options are keyword
    arguments of the registered factories; the encoder also gets its input sizes from
    :class:`InputSpec`. ``heads="per-view"`` gives each view of a multistream encoder its own heads
    (:class:`HierarchicalClassifier`); ``holdout_space_groups`` (a count, or the numbers) keeps
    space groups out of training and scores them against reference embeddings
    (:mod:`xrdcore.train.unseen`)."""

    encoder: str
    hierarchy: str = "flat"
    scheduler: str = "sum"
    encoder_options: dict[str, Any] = field(default_factory=dict)
    hierarchy_options: dict[str, Any] = field(default_factory=dict)
    scheduler_options: dict[str, Any] = field(default_factory=dict)
    input: InputSpec = field(default_factory=InputSpec)
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 1e-2
    epochs: int = 80
    warmup_epochs: float = 2.0
    batch_size: int = 64
    grad_clip: float | None = 1.0
    patience: int | None = 20
    #: class-balanced loss: weights count^-balance per class of each level (0 off, 1 equal classes)
    balance: float = 0.0
    label_smoothing: float = 0.0
    #: train on this many training structures (a seeded subset, for learning curves); None: all
    train_limit: int | None = None
    #: seconds of training (validation included): after the first epoch the epoch count becomes what
    #: fits, so the learning-rate schedule still ends; None: ``epochs``. Equal-compute comparisons.
    time_budget: float | None = None
    seed: int = 0
    precision: str = "auto"
    heads: str = "shared"
    holdout_space_groups: int | list[int] = 0

    def __post_init__(self):
        if isinstance(self.input, Mapping):
            self.input = InputSpec.from_dict(self.input)
        if isinstance(self.holdout_space_groups, tuple):
            self.holdout_space_groups = list(self.holdout_space_groups)
        problems = []
        if self.heads not in HEADS:
            problems.append(f"heads must be one of {', '.join(HEADS)}, got {self.heads!r}")
        holdout = self.holdout_space_groups
        if not (isinstance(holdout, int) and not isinstance(holdout, bool) and holdout >= 0) and not (
                isinstance(holdout, list) and all(isinstance(v, int) and 1 <= v <= 230 for v in holdout)):
            problems.append(f"holdout_space_groups must be a count >= 0 or a list of space-group numbers, "
                            f"got {holdout!r}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            problems.append(f"patience must be a positive integer or None, got {self.patience!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            problems.append(f"seed must be a non-negative integer, got {self.seed!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 10):
            problems.append(f"lr must be a positive learning rate, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.warmup_epochs, (int, float)) and self.warmup_epochs >= 0):
            problems.append(f"warmup_epochs must be >= 0, got {self.warmup_epochs!r}")
        if self.grad_clip is not None and not (isinstance(self.grad_clip, (int, float)) and self.grad_clip > 0):
            problems.append(f"grad_clip must be positive or None, got {self.grad_clip!r}")
        if not (isinstance(self.balance, (int, float)) and 0 <= self.balance <= 1):
            problems.append(f"balance must be in [0, 1], got {self.balance!r}")
        if not (isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1):
            problems.append(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.train_limit is not None and (isinstance(self.train_limit, bool) or not isinstance(self.train_limit, int)
                                             or self.train_limit < 2):
            problems.append(f"train_limit must be an integer >= 2 or None, got {self.train_limit!r}")
        if self.time_budget is not None and not (isinstance(self.time_budget, (int, float)) and self.time_budget > 0):
            problems.append(f"time_budget must be a positive number of seconds or None, got {self.time_budget!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input"] = self.input.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**data)


def encoder_input_kind(registry: Any, name: str, options: Mapping[str, Any] | None = None) -> str:
    """What the encoder ``name`` takes (``profile``, ``peaks``, ``images``); read from its class, or,
    when the kind depends on the arguments, from an instance built with ``options`` (default: its
    tiny variant)."""
    component = registry.get("encoder", name)
    kind = getattr(component.load(), "input_kind", None)
    if isinstance(kind, str):
        return kind
    return registry.create("encoder", name, **(component.tiny if options is None else options)).input_kind


def run_config(encoder: str, *, hierarchy: str | None = None, scheduler: str | None = None, size: str = "full",
               encoder_options: Mapping[str, Any] | None = None, hierarchy_options: Mapping[str, Any] | None = None,
               scheduler_options: Mapping[str, Any] | None = None, input: Mapping[str, Any] | None = None,
               images: Mapping[str, Any] | None = None, training: Mapping[str, Any] | None = None, seed: int = 0,
               registry: Any | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of a run from options as a person gives them: the encoder's
    registered ``size`` under ``encoder_options``; ``input`` settings of profiles and peaks
    (:meth:`InputSpec.from_dict` keys, plus ``step`` to change only the grid's step) or, for an
    encoder on images, ``images`` (``simulator`` and its options); ``training`` settings (TrainConfig
    fields). Hierarchy and scheduler default to the registry's defaults."""
    if registry is None:
        from xrdcore import get_registry

        registry = get_registry()
    options = {**registry.get("encoder", encoder).size_options(size), **(encoder_options or {})}
    kind = encoder_input_kind(registry, encoder)
    if kind == "images":
        spec = images_input(registry, images or {}, size=size)
    else:
        spec = input_spec(kind, input or {})
    return TrainConfig(encoder, hierarchy=hierarchy or registry.default("label_hierarchy"),
                       scheduler=scheduler or registry.default("loss_scheduler"), encoder_options=options,
                       hierarchy_options=dict(hierarchy_options or {}), scheduler_options=dict(scheduler_options or {}),
                       input=spec, seed=seed, **(training or {}))


def input_spec(kind: str, options: Mapping[str, Any]) -> InputSpec:
    """The profile or peaks :class:`InputSpec` of ``options``; ``step`` changes the step of the
    grid (given or default) and nothing else."""
    options = dict(options)
    step = options.pop("step", None)
    spec = InputSpec.from_dict({"kind": kind, **options})
    return spec if step is None else replace(spec, grid=replace(spec.grid, step=step))
