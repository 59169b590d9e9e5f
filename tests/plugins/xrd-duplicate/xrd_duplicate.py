"""Collides with the built-in ``flat`` and with xrd-example's ``example-conv``; registers one name twice."""

from __future__ import annotations

import torch

from xrdcore.builtin.schedulers import SumScheduler
from xrdcore.crystal import LabelHierarchy
from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid
from xrdcore.hookspecs import hookimpl
from xrdcore.interfaces import Encoder


def flat() -> LabelHierarchy:
    """Crystal system only: must not replace the built-in ``flat`` (space group only)."""
    return LabelHierarchy(("crystal_system",), name="duplicate-flat")


class MeanEncoder(Encoder):
    """Mean intensity of the profile: a second, distinguishable provider of ``example-conv``; any
    ``grid`` fits a mean."""

    input_kind = "profile"

    def __init__(self, grid: AngleGrid = DEFAULT_GRID):
        super().__init__()
        self.embed_dim = 1

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.mean(dim=1, keepdim=True)


@hookimpl
def register_label_hierarchies(register):
    register("flat", flat)


@hookimpl
def register_encoders(register):
    register("example-conv", MeanEncoder)


@hookimpl
def register_loss_schedulers(register):
    register("twice", SumScheduler)
    register("twice", SumScheduler)  # ValueError: the first registration is kept
