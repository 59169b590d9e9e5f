"""The label hierarchy and loss scheduler checks, on the spglib labels of the packaged structures."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xrdcore.crystal.hierarchy import LabelHierarchy
from xrdcore.interfaces import LossScheduler
from xrdcore.registry import Registry
from xrdcore.testing import data
from xrdcore.testing._core import Checker, CheckReport, require, resolve

#: steps of the two-level model each scheduler trains; the summed level losses must halve
STEPS = 30


def check_hierarchy(hierarchy: str | Callable[..., LabelHierarchy], /, *, registry: Registry | None = None,
                    **options: Any) -> CheckReport:
    """Check a label hierarchy; raise ``AssertionError`` naming it and the check that failed.

    ``hierarchy``: a registered name (its ``tiny`` options, ``options`` on top) or a factory.
    The checks: build (a :class:`LabelHierarchy`); levels (names, class counts and loss weights
    agree, weights finite and >= 0); space_group level (every run is scored on it, so
    ``xrdcore train`` and ``bench`` refuse a hierarchy without it); targets (of the packaged
    spglib labels and of all 230 space groups, numpy and torch alike: one integer class per
    label and level, in range);
    every class reachable (each class of each level is the target of some space group, else its
    head output never trains); description (``to_dict`` is JSON and ``from_dict`` restores it);
    trains with <scheduler> for every installed scheduler (a two-layer model on the labels halves
    the summed level losses in 30 steps).
    """
    subject = resolve("label_hierarchy", hierarchy, options, registry)
    checker = Checker(subject.label)
    with checker.check("build"):
        built = subject.create()
    with checker.check("levels"):
        names = built.level_names
        require(len(names) > 0 and all(isinstance(n, str) for n in names), f"level names {names!r}")
        require(len(set(names)) == len(names), f"level names repeat: {names!r}")
        require(tuple(built.num_classes) == names,
                f"num_classes is for {tuple(built.num_classes)}, levels are {names}")
        require(all(isinstance(n, int) and n > 0 for n in built.num_classes.values()),
                f"class counts {built.num_classes}")
        require(set(built.weights) == set(names),
                f"weights are for {sorted(built.weights)}, levels are {names}")
        require(all(math.isfinite(w) and w >= 0 for w in built.weights.values()),
                f"loss weights {built.weights}")
    with checker.check("space_group level"):
        require("space_group" in names, f"levels {names} have no space_group, which every run is scored on")
    with checker.check("targets"):
        for labels in (data.space_groups(), np.arange(1, 231)):
            targets = built.targets(labels)
            require(tuple(targets) == names, f"targets for {tuple(targets)}, levels are {names}")
            as_torch = built.targets(torch.as_tensor(labels))
            for name, n in built.num_classes.items():
                t = np.asarray(targets[name])
                require(t.shape == labels.shape and np.issubdtype(t.dtype, np.integer),
                        f"{name}: targets of shape {t.shape}, dtype {t.dtype} for {labels.shape} labels")
                require(bool((t >= 0).all() and (t < n).all()),
                        f"{name}: targets outside 0-{n - 1}: {sorted(set(t[(t < 0) | (t >= n)].tolist()))}")
                require(isinstance(as_torch[name], torch.Tensor) and as_torch[name].tolist() == t.tolist(),
                        f"{name}: targets of a torch tensor differ from those of a numpy array")
    with checker.check("every class reachable"):
        every = built.targets(np.arange(1, 231))
        for name, n in built.num_classes.items():
            unused = sorted(set(range(n)) - set(np.asarray(every[name]).tolist()))
            require(not unused, f"{name}: no space group maps to classes {unused[:10]}")
    with checker.check("description"):
        described = json.loads(json.dumps(built.to_dict()))
        require(LabelHierarchy.from_dict(described).to_dict() == built.to_dict(),
                "from_dict(to_dict()) differs")
    for scheduler in subject.registry.names("loss_scheduler"):
        with checker.check(f"trains with {scheduler}"):
            _trains(built, subject.registry.create("loss_scheduler", scheduler))
    return checker.report


def check_scheduler(scheduler: str | Callable[..., LossScheduler], /, *, registry: Registry | None = None,
                    **options: Any) -> CheckReport:
    """Check a loss scheduler; raise ``AssertionError`` naming it and the check that failed.

    ``scheduler``: a registered name (its ``tiny`` options, ``options`` on top) or a factory.
    The checks: build (a :class:`LossScheduler`, ``needs_shared`` a bool); then with
    <hierarchy>, for a two-level hierarchy and every installed one: ``combine`` returns a finite
    scalar that back-propagates to the shared layer and every head, and a finite weight for
    every level, exactly; ``same_as_sum`` answers a bool; a two-layer model on the packaged
    spglib labels halves its summed level losses in 30 steps (the embedding is passed as
    ``shared`` when the scheduler declares ``needs_shared``, as the trainer does).
    """
    subject = resolve("loss_scheduler", scheduler, options, registry)
    checker = Checker(subject.label)
    with checker.check("build"):
        built = subject.create()
        require(isinstance(built.needs_shared, bool), f"needs_shared is {built.needs_shared!r}, not a bool")
    hierarchies = {"two levels": LabelHierarchy(("space_group", "crystal_system"), name="two-level")}
    for name in subject.registry.names("label_hierarchy"):
        hierarchies[name] = subject.registry.create("label_hierarchy", name)
    for name, hierarchy in hierarchies.items():
        with checker.check(f"with {name}"):
            require(isinstance(built.same_as_sum(hierarchy), bool), "same_as_sum does not return a bool")
            _trains(hierarchy, built)
    return checker.report


def _trains(hierarchy: LabelHierarchy, scheduler: LossScheduler) -> None:
    """Train a shared layer on one-hot space groups, with a head per level, through the
    scheduler; check what ``combine`` returns at every step and that the level losses fall."""
    torch.manual_seed(0)
    labels = torch.as_tensor(data.space_groups())
    inputs = F.one_hot(labels - 1, 230).float()
    trunk = nn.Linear(230, 16)
    heads = nn.ModuleDict({name: nn.Linear(16, n) for name, n in hierarchy.num_classes.items()})
    optimiser = torch.optim.Adam([*trunk.parameters(), *heads.parameters()], lr=0.05)
    targets = hierarchy.targets(labels)
    sums = []
    for step in range(STEPS):
        shared = torch.relu(trunk(inputs))
        losses = {name: F.cross_entropy(head(shared), targets[name]) for name, head in heads.items()}
        loss, weights = scheduler.combine(losses, shared if scheduler.needs_shared else None, hierarchy)
        at = f"step {step + 1}"
        require(isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.dim() == 0,
                f"{at}: combine returned {loss!r}, not a scalar tensor")
        require(bool(torch.isfinite(loss.detach())), f"{at}: loss {float(loss.detach())}")
        require(loss.requires_grad, f"{at}: the loss does not back-propagate (detached)")
        require(set(weights) == set(losses),
                f"{at}: weights for {sorted(weights)}, levels are {sorted(losses)}")
        bad = {k: w for k, w in weights.items() if not (isinstance(w, (int, float)) and math.isfinite(w))}
        require(not bad, f"{at}: weights must be finite numbers, got {bad}")
        optimiser.zero_grad()
        loss.backward()
        unreached = [name for name, module in [("shared layer", trunk), *heads.items()]
                     if module.weight.grad is None or not torch.isfinite(module.weight.grad).all()]
        require(not unreached, f"{at}: no finite gradient reaches {', '.join(unreached)}")
        optimiser.step()
        sums.append(sum(float(v.detach()) for v in losses.values()))
    require(sums[-1] < 0.5 * sums[0], f"the summed level losses went from {sums[0]:.3f} to {sums[-1]:.3f} "
                                      f"in {STEPS} steps, not below half")
