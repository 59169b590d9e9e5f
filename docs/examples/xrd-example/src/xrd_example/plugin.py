"""The hooks xrdcore calls when it loads this plugin (entry point ``example``).

Every ``xrdcore`` command imports this module, so it stays light: the encoder is registered as
a ``"module:attr"`` string, and its module (which imports torch) is imported only when someone
creates the encoder.
"""

from xrdcore.crystal import LabelHierarchy
from xrdcore.hookspecs import hookimpl


@hookimpl
def register_encoders(register):
    # A lazy string has no docstring to summarise until it is imported: pass a description.
    register("example-conv", "xrd_example.encoder:ExampleConvEncoder",
             description="small 1-D CNN on profiles, any length (example plugin)")


def lattice() -> LabelHierarchy:
    """Space group, crystal system and Bravais lattice: three heads from one space-group label."""
    return LabelHierarchy(("space_group", "crystal_system", "bravais"), name="lattice")


@hookimpl
def register_label_hierarchies(register):
    register("lattice", lattice)
