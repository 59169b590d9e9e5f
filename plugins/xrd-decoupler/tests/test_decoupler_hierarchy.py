"""The ``superclass`` label hierarchy: levels, presets, β and errors, through the registry too."""

from __future__ import annotations

import math

import pytest
import torch
import xrdcore
from xrdcore.crystal import LabelHierarchy, UnknownLevelError

from xrd_decoupler.hierarchy import CODE_LEVELS, PAPER_LEVELS, superclass

PAPER_COUNTS = {"space_group": 230, "crystal_system": 7, "bravais": 14, "point_group": 32,
                "lattice_system": 7, "arithmetic_class": 73}


def test_default_is_the_papers_five_superclasses_after_the_space_group():
    hierarchy = superclass()
    assert isinstance(hierarchy, LabelHierarchy) and hierarchy.name == "superclass"
    assert hierarchy.level_names == ("space_group", *PAPER_LEVELS)
    assert hierarchy.num_classes == PAPER_COUNTS
    assert hierarchy.weights == {name: 1.0 for name in PAPER_COUNTS}
    assert superclass(preset="paper").level_names == hierarchy.level_names


def test_code_preset_is_the_published_codes_four_tasks():
    hierarchy = superclass(preset="code")
    assert hierarchy.level_names == ("space_group", "crystal_system", "centring", "point_group")
    assert hierarchy.level_names[1:] == CODE_LEVELS
    assert hierarchy.num_classes["centring"] == 6  # P, C, F, I, A, R


def test_beta_weights_every_superclass_level_and_weights_override():
    hierarchy = superclass(beta=0.3)
    assert hierarchy.weights["space_group"] == 1.0
    assert all(hierarchy.weights[name] == pytest.approx(0.3) for name in PAPER_LEVELS)
    custom = superclass(levels=("point_group", "bravais"), beta=0.5,
                        weights={"bravais": 2.0, "space_group": 0.8})
    assert custom.weights == {"space_group": 0.8, "point_group": 0.5, "bravais": 2.0}
    assert superclass(beta=0).weights["crystal_system"] == 0.0


def test_any_core_level_and_the_space_group_always_first_once():
    hierarchy = superclass(levels=("laue_class", "space_group", "extinction_class"))
    assert hierarchy.level_names == ("space_group", "laue_class", "extinction_class")
    assert superclass(levels="point_group").level_names == ("space_group", "point_group")
    assert superclass(levels=()).level_names == ("space_group",)


def test_targets_follow_the_space_group():
    hierarchy = superclass()
    targets = hierarchy.targets(torch.tensor([1, 225]))
    assert set(targets) == set(hierarchy.level_names)
    system = hierarchy["crystal_system"]
    assert [system.classes[i] for i in targets["crystal_system"].tolist()] == ["triclinic", "cubic"]
    assert [hierarchy["bravais"].classes[i] for i in targets["bravais"].tolist()] == ["aP", "cF"]


def test_round_trip_through_a_checkpoint_description():
    hierarchy = superclass(preset="code", beta=0.25)
    again = LabelHierarchy.from_dict(hierarchy.to_dict())
    assert again.level_names == hierarchy.level_names and again.weights == hierarchy.weights
    assert again.name == "superclass"


def test_errors_are_clear():
    with pytest.raises(UnknownLevelError, match="Did you mean 'point_group'"):
        superclass(levels=("point_grup",))
    with pytest.raises(ValueError, match="Unknown preset 'cod'. Did you mean 'code'"):
        superclass(preset="cod")
    with pytest.raises(ValueError, match="levels or preset, not both"):
        superclass(levels=("bravais",), preset="code")
    for beta in (-0.1, math.nan, math.inf, True, "1"):
        with pytest.raises(ValueError, match="beta"):
            superclass(beta=beta)
    with pytest.raises(ValueError, match="not in the hierarchy"):
        superclass(weights={"laue_class": 1.0})
    with pytest.raises(ValueError, match="listed twice"):
        superclass(levels=("bravais", "bravais"))


def test_built_through_the_registry():
    hierarchy = xrdcore.create_hierarchy("xrd-decoupler:superclass", preset="code", beta=0.5)
    assert hierarchy.level_names == ("space_group", *CODE_LEVELS)
    assert hierarchy.weights["point_group"] == 0.5
    assert xrdcore.create_hierarchy("xrd-decoupler:superclass").level_names == ("space_group", *PAPER_LEVELS)
    with pytest.raises(xrdcore.ComponentError, match="accepts"):
        xrdcore.create_hierarchy("xrd-decoupler:superclass", betta=0.5)
