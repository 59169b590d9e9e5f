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
    # tiny: the smallest variant, what `xrdcore bench --quick` and the test kit (tests/test_example.py)
    # build; small: one that learns on a real data set on a CPU (`--size small`); full: the defaults.
    # The input grid is never among them: the data give it.
    register("example-conv", "xrd_example.encoder:ExampleConvEncoder",
             description="small 1-D CNN on profiles, any length (example plugin)",
             tiny={"channels": 8, "embed_dim": 16}, small={"channels": 32, "embed_dim": 64})


def lattice() -> LabelHierarchy:
    """Space group, crystal system and Bravais lattice: three heads from one space-group label."""
    return LabelHierarchy(("space_group", "crystal_system", "bravais"), name="lattice")


@hookimpl
def register_label_hierarchies(register):
    register("lattice", lattice)
