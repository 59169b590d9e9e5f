"""The trained model: any encoder with one linear head per level of any label hierarchy."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xrdcore.crystal.hierarchy import LabelHierarchy
from xrdcore.interfaces import Encoder


class HierarchicalClassifier(nn.Module):
    """Encoder → shared embedding → a linear head per hierarchy level (logits of its classes).

    The heads are linear on purpose: the encoder owns every nonlinearity, so the embedding is
    what all levels share, and what a scheduler such as MGDA balances gradients on.
    """

    def __init__(self, encoder: Encoder, hierarchy: LabelHierarchy):
        super().__init__()
        self.encoder = encoder
        self.hierarchy = hierarchy
        self.heads = nn.ModuleDict({name: nn.Linear(encoder.embed_dim, n)
                                    for name, n in hierarchy.num_classes.items()})

    def forward(self, inputs: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The embedding ``(B, embed_dim)``, in float32 even under autocast (it is what a scheduler
        such as MGDA differentiates), and logits ``(B, classes)`` for every level."""
        embedding = self.encoder(inputs).float()
        return embedding, {name: head(embedding) for name, head in self.heads.items()}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
