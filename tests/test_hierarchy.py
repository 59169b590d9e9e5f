"""Levels and LabelHierarchy: the vectorised map from space-group numbers to level indices."""

import numpy as np
import pytest
import torch

from xrdcore.crystal import LabelHierarchy, UnknownLevelError, level, level_names, space_groups


def test_level_index_maps_every_type_to_its_class_name():
    for name in level_names():
        lv = level(name)
        indices = lv.index(np.arange(1, 231))
        attribute = "symbol" if name == "space_group" else name
        assert [lv.classes[i] for i in indices] == [getattr(sg, attribute) for sg in space_groups()]


def test_classes_are_ordered_by_lowest_space_group_number():
    lv = level("crystal_system")
    assert lv.classes == ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal",
                          "hexagonal", "cubic")
    assert lv.members("trigonal") == list(range(143, 168))
    assert level("space_group").index([1, 230]).tolist() == [0, 229]


def test_index_keeps_shape_for_numpy_lists_and_scalars():
    lv = level("point_group")
    grid = np.array([[1, 2], [225, 14]])
    assert lv.index(grid).shape == (2, 2)
    assert lv.classes[lv.index(225)] == "m-3m"
    assert lv.index([14, 14]).tolist() == [lv.index(14)] * 2
    assert lv.index(np.array([225.0])).tolist() == lv.index([225]).tolist()  # integral floats are fine


def test_index_on_torch_tensors_stays_a_tensor_on_its_device():
    lv = level("bravais")
    numbers = torch.tensor([225, 166, 14])
    out = lv.index(numbers)
    assert isinstance(out, torch.Tensor) and out.device == numbers.device
    assert [lv.classes[i] for i in out.tolist()] == ["cF", "hR", "mP"]
    assert out.tolist() == lv.index(numbers.numpy()).tolist()


@pytest.mark.parametrize("bad, error, message", [
    ([0, 14], ValueError, "1-230, got 0"), ([231], ValueError, "got 231"),
    (np.array([14.5]), TypeError, "integers"), (np.array([np.nan]), TypeError, "integers"),
    (torch.tensor([14.0]), TypeError, "integers"), (torch.tensor([0, 5]), ValueError, "got 0")])
def test_bad_space_group_numbers_are_rejected_by_name(bad, error, message):
    with pytest.raises(error, match=message) as raised:
        level("crystal_system").index(bad)
    assert "crystal_system" in str(raised.value)


def test_hierarchy_with_chosen_levels():
    h = LabelHierarchy(["space_group", "crystal_system", "point_group"])
    assert h.num_classes == {"space_group": 230, "crystal_system": 7, "point_group": 32}
    targets = h.targets(torch.tensor([225, 14]))
    assert targets["crystal_system"].tolist() == [6, 1]
    assert [h["point_group"].classes[i] for i in targets["point_group"].tolist()] == ["m-3m", "2/m"]
    assert "point_group" in h and "bravais" not in h


def test_hierarchy_round_trips_through_json():
    h = LabelHierarchy(("space_group", "extinction_class"), weights={"extinction_class": 0.3}, name="ext")
    again = LabelHierarchy.from_dict(h.to_dict())
    assert again.to_dict() == h.to_dict()
    assert again.weights == {"space_group": 1.0, "extinction_class": 0.3}


@pytest.mark.parametrize("levels, kwargs, message", [
    (["space_group", "point_grup"], {}, "Did you mean 'point_group'"),
    ([], {}, "at least one level"),
    (["space_group", "space_group"], {}, "listed twice"),
    (["space_group"], {"weights": {"crystal_system": 2.0}}, "not in the hierarchy"),
])
def test_bad_hierarchies(levels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        LabelHierarchy(levels, **kwargs)


@pytest.mark.parametrize("levels, error, message", [
    ([1], TypeError, "level names"), ([["space_group"]], TypeError, "level names")])
def test_level_names_must_be_strings(levels, error, message):
    with pytest.raises(error, match=message):
        LabelHierarchy(levels)


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf")])
def test_loss_weights_must_be_finite_and_non_negative(weight):
    with pytest.raises(ValueError, match="finite and >= 0"):
        LabelHierarchy(["space_group", "crystal_system"], weights={"crystal_system": weight})


def test_members_by_name_or_index_with_clear_errors():
    lv = level("crystal_system")
    assert lv.members("cubic") == lv.members(6) == list(range(195, 231))
    with pytest.raises(ValueError, match="has no class 'cubix'. Did you mean 'cubic'"):
        lv.members("cubix")
    with pytest.raises(ValueError, match="0-6, got 99"):
        lv.members(99)


def test_bool_tensors_are_not_space_groups():
    with pytest.raises(TypeError, match="integers"):
        level("space_group").index(torch.tensor([True]))
    with pytest.raises(TypeError, match="integers"):
        level("space_group").index(np.array([True]))


def test_unknown_level_lists_known_levels():
    with pytest.raises(UnknownLevelError, match="Known levels: space_group, crystal_system"):
        level("crystal")
