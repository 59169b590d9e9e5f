"""The trained model: any encoder with one linear head per level of any label hierarchy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xrdcore.crystal.hierarchy import LabelHierarchy
from xrdcore.interfaces import Encoder

HEADS = ("shared", "per-view")


class HierarchicalClassifier(nn.Module):
    """Encoder → shared embedding → a linear head per hierarchy level (logits of its classes).

    The heads are linear on purpose: the encoder owns every nonlinearity, so the embedding is
    what all levels share, and what a scheduler such as MGDA balances gradients on.

    ``heads="per-view"`` (multistream encoders, e.g. MSDN's three zone axes) gives every view its
    own head per level on that view's embedding: logits are then ``(B, V, classes)``, the loss is
    the sum of the views' cross-entropies and the prediction the softmax of the summed logits, as
    in the MSDN paper (:func:`level_loss`, :func:`class_logits`).
    """

    def __init__(self, encoder: Encoder, hierarchy: LabelHierarchy, heads: str = "shared"):
        super().__init__()
        if heads not in HEADS:
            raise ValueError(f"heads must be one of {', '.join(HEADS)}, got {heads!r}")
        self.encoder = encoder
        self.hierarchy = hierarchy
        self.views = int(getattr(encoder, "views", 1)) if heads == "per-view" else 1
        if encoder.embed_dim % self.views:
            raise ValueError(f"embed_dim {encoder.embed_dim} is not {self.views} views of equal size")
        width = encoder.embed_dim // self.views
        self.heads = nn.ModuleDict({name: nn.Linear(width, n) if self.views == 1 else
                                    nn.ModuleList(nn.Linear(width, n) for _ in range(self.views))
                                    for name, n in hierarchy.num_classes.items()})

    def forward(self, inputs: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The embedding ``(B, embed_dim)``, in float32 even under autocast (it is what a scheduler
        such as MGDA differentiates), and logits ``(B, classes)`` for every level (``(B, V,
        classes)`` with per-view heads)."""
        if self.views == 1:
            embedding = self.encoder(inputs).float()
            return embedding, {name: head(embedding) for name, head in self.heads.items()}
        views = self.encoder.view_embeddings(inputs).float()
        if views.shape[1] != self.views:
            raise ValueError(f"the encoder gave {views.shape[1]} views, its heads expect {self.views}")
        logits = {name: torch.stack([h(views[:, v]) for v, h in enumerate(heads)], dim=1)
                  for name, heads in self.heads.items()}
        return views.flatten(1), logits


def level_loss(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None,
               label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of one level (optionally class-weighted, label-smoothed); with per-view logits
    ``(B, V, C)`` the sum over the views."""
    def one(x: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(x.float(), targets, weight=weight, label_smoothing=label_smoothing)

    if logits.dim() == 3:
        return sum(one(logits[:, v]) for v in range(logits.shape[1]))
    return one(logits)


def class_weights(counts: torch.Tensor, power: float) -> torch.Tensor:
    """Loss weights count^-power per class (classes never seen get the weight of a class seen once),
    scaled so that the weighted mean over the training set is 1: ``power`` 0 is the plain loss,
    1 weighs every class equally, 0.5 is in between."""
    weights = counts.clamp(min=1).float() ** -power
    return weights * counts.sum() / (weights * counts).sum().clamp(min=1e-12)


def class_logits(logits: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` logits to predict from: per-view logits are summed over the views."""
    return logits.sum(1) if logits.dim() == 3 else logits


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
