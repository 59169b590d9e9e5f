"""Space-group tables and the label-hierarchy levels, all derived from spglib's database."""

from xrdcore.crystal.hierarchy import LabelHierarchy
from xrdcore.crystal.levels import Level, UnknownLevelError, level, level_names
from xrdcore.crystal.spacegroups import SpaceGroup, space_group, space_groups

__all__ = ["LabelHierarchy", "Level", "SpaceGroup", "UnknownLevelError", "level", "level_names",
           "space_group", "space_groups"]
