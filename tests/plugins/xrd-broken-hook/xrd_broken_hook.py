"""One hook raises, one works, one is misspelled: status "partial", ``half-sum`` still usable."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from xrdcore.hookspecs import hookimpl
from xrdcore.interfaces import LossScheduler


class HalfSumScheduler(LossScheduler):
    """Half the sum of the per-level losses (weight 0.5 each)."""

    def combine(self, losses: Mapping[str, torch.Tensor], shared: torch.Tensor | None = None,
                hierarchy=None) -> tuple[torch.Tensor, dict[str, float]]:
        return 0.5 * torch.stack(list(losses.values())).sum(), {name: 0.5 for name in losses}


@hookimpl
def register_encoders(register):
    raise RuntimeError("boom")


@hookimpl
def register_loss_schedulers(register):
    register("half-sum", HalfSumScheduler)


@hookimpl
def register_encoder(register):  # misspelled on purpose: must be reported, never called
    register("never-registered", HalfSumScheduler)
