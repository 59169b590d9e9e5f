"""Fails on import: xrdcore must report it (status "failed") and load the other plugins."""

import xrdcore_nonexistent_dependency  # noqa: F401  (the point of this fixture)

from xrdcore.hookspecs import hookimpl


@hookimpl
def register_encoders(register):
    register("never-registered", "xrd_broken_import:nothing")
