"""The contracts a plugin implements. Each is small on purpose: the harness needs no more.

Input kinds name what a simulator produces and an encoder consumes; an encoder trains on a
data set only if the kinds match:

* ``profile`` — ``(B, L)`` float tensor, intensity on a fixed 2θ grid (relative, max 1).
* ``peaks`` — dict of ``(B, P)`` tensors: ``two_theta`` (degrees), ``intensity`` (relative) and
  ``mask`` (bool, True for real peaks; lists are padded to P).
* ``images`` — ``(B, V, C, H, W)`` float tensor: V views (e.g. three zone axes) of C channels.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

import torch
from torch import nn

from xrdcore.crystal.hierarchy import LabelHierarchy

if TYPE_CHECKING:
    from pymatgen.core import Composition, Structure

InputKind = Literal["profile", "peaks", "images"]
INPUT_KINDS: tuple[str, ...] = get_args(InputKind)


class Encoder(nn.Module, abc.ABC):
    """Pattern → embedding. Heads for every hierarchy level sit on top of the embedding.

    Subclasses set ``input_kind`` and, in ``__init__``, ``self.embed_dim``. They are built from
    keyword arguments that all have defaults, so ``create_encoder(name)`` always works; input
    sizes come from the data, never from a constant: profile encoders take the data's 2θ ``grid``
    (an :class:`~xrdcore.diffraction.profile.AngleGrid`; the input length is ``grid.length``, the
    angle of each point ``grid.values``), and peak-list encoders may take it for the angle range.
    """

    input_kind: ClassVar[InputKind]
    embed_dim: int

    @abc.abstractmethod
    def forward(self, batch: Any) -> torch.Tensor:
        """Embed a batch of the declared input kind into a ``(B, embed_dim)`` tensor."""

    def view_embeddings(self, batch: Any) -> torch.Tensor:
        """``(B, V, D)``: one embedding per view for multistream encoders (e.g. one per zone axis,
        with ``forward`` their concatenation, ``embed_dim = V * D``); others are one view.

        Per-view heads (``TrainConfig(heads="per-view")``) and reference scoring of unseen space
        groups (cosine similarity summed over views) use it."""
        return self(batch).unsqueeze(1)

    def contract_errors(self) -> list[str]:
        """What this instance gets wrong about the contract above (empty if nothing)."""
        errors = []
        if getattr(self, "input_kind", None) not in INPUT_KINDS:
            errors.append(f"input_kind must be one of {', '.join(INPUT_KINDS)}, "
                          f"got {getattr(self, 'input_kind', None)!r}")
        dim = getattr(self, "embed_dim", None)
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            errors.append(f"embed_dim must be a positive int set in __init__, got {dim!r}")
        return errors


class LossScheduler(abc.ABC):
    """Combines the per-level losses into the one scalar that is back-propagated."""

    #: True if :meth:`combine` needs ``shared`` (the embedding, part of the graph), e.g. MGDA
    needs_shared: ClassVar[bool] = False

    @abc.abstractmethod
    def combine(self, losses: Mapping[str, torch.Tensor], shared: torch.Tensor | None = None,
                hierarchy: LabelHierarchy | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the loss to back-propagate and the weight used for each level (for logging)."""

    def same_as_sum(self, hierarchy: LabelHierarchy) -> bool:
        """True when, for this hierarchy, training with this scheduler is exactly training with the
        plain sum (e.g. fixed weights that are all 1): the benchmark then skips the duplicate run."""
        return False


class Simulator(abc.ABC):
    """Structure → a model input of one kind; deterministic, with its physics declared.

    ``settings`` holds every parameter that changes the output (wavelength in Å, 2θ grid in
    degrees, peak shape, ...): caches are keyed by it.
    """

    output_kind: ClassVar[InputKind]
    #: the shape of one structure's output when it is fixed, e.g. (V, C, H, W) for images: encoders
    #: are sized from it before anything is simulated
    output_shape: tuple[int, ...] | None = None

    @property
    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """JSON-safe parameters that fully determine the output."""

    @abc.abstractmethod
    def simulate(self, structures: Sequence[Structure]) -> Any:
        """A batch of inputs of ``output_kind``, one per structure, in order."""


class Generator(abc.ABC):
    """Pattern-conditioned crystal-structure generation (candidates for structure solution).

    Built from keyword arguments like every component; :meth:`fit` learns from a peak cache's
    train split (selecting on its val split, never looking at test) and writes what it learned
    to a directory that :meth:`load` restores. Patterns are peak lists: objects with ``two_theta``
    (degrees) and ``intensity`` (relative, strongest 100) arrays, such as the cache's ``PeakList``
    or the peaks :func:`xrdcore.diffraction.peaks.find_peaks` finds in a measured profile.
    """

    def fit(self, cache: Any, out: Path, *, device: str = "cpu", seed: int = 0,
            progress: bool = False) -> dict[str, Any]:
        """Learn from ``cache`` and write the result to ``out`` (new or empty); return what the
        training did (JSON-safe). A generator with nothing to learn returns ``{}``."""
        return {}

    def load(self, out: Path, *, device: str = "cpu") -> None:
        """Restore what :meth:`fit` wrote to ``out``."""

    @abc.abstractmethod
    def embed_patterns(self, peaks: Sequence[Any]) -> torch.Tensor:
        """``(N, D)`` conditions of N peak lists."""

    def embed_structures(self, structures: Sequence[Structure]) -> torch.Tensor:
        """``(N, D)`` embeddings of structures in the space of :meth:`embed_patterns` (contrastive
        models), for retrieval: the true structure among all candidates of a split."""
        raise NotImplementedError(f"{type(self).__name__} does not embed structures")

    @abc.abstractmethod
    def sample(self, condition: torch.Tensor, composition: Composition | str, n: int) -> list[Structure]:
        """Draw ``n`` candidate structures with the cell content ``composition`` for one condition
        ``(D,)``. Candidates that are not valid crystals are returned with
        ``structure.properties["valid"] = False`` (and ``"invalid_reason"``), never dropped silently."""

    @abc.abstractmethod
    def rank(self, condition: torch.Tensor, candidates: Sequence[Structure]) -> list[float]:
        """Score candidates against the pattern (higher is better), for ordering them."""


@dataclass(frozen=True)
class StructureRecord:
    """One structure of a data set: a stable id, the structure, and what is known about it."""

    id: str
    structure: Structure
    meta: dict[str, Any] = field(default_factory=dict)


class StructureDataset(abc.ABC):
    """A named source of crystal structures with its provenance and licence.

    Labels are not taken from the source: the pipeline relabels every structure with spglib.
    """

    #: where the data come from (paper, package, URL) and under which licence
    provenance: ClassVar[str]
    licence: ClassVar[str]

    @abc.abstractmethod
    def records(self, limit: int | None = None) -> Iterator[StructureRecord]:
        """Yield the structures in a stable order; ``limit`` counts source entries, good or bad,
        so a limited read is always the same prefix of the source."""

