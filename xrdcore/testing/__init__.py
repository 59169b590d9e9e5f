"""A plugin author's test kit: the conformance checks the core runs on its own components.

    import xrdcore.testing as kit
    def test_encoder(): kit.check_encoder("my-plugin:my-encoder")
    def test_hierarchy(): kit.check_hierarchy("my-plugin:my-hierarchy")

Each ``check_*`` takes a registered name (its ``tiny`` variant is checked, keyword arguments on
top) or a factory (a class, which then takes part in the checks as a component of a plugin
``xrdcore-testing`` would), runs every check of its kind on small real data shipped with xrdcore
(:mod:`xrdcore.testing.data`: 46 MP-20 structures, spglib labels, peak lists), and raises
``AssertionError("<component>: <check>: <what went wrong>")`` at the first failure. It returns a
:class:`CheckReport` of the checks that passed and those skipped (CUDA without a GPU, say).

Installing xrdcore also installs a pytest plugin (:mod:`xrdcore.testing.plugin`) with fixtures of
the same data: ``xrd_structures``, ``xrd_space_groups``, ``xrd_peaks``, ``xrd_cache``.
"""

import importlib
from typing import Any

#: public name → its module; imported on first use, so that the pytest plugin, which every pytest
#: run in the environment loads, costs no torch import
_EXPORTS = {"CheckReport": "_core", "build_encoder": "encoders", "check_encoder": "encoders",
            "default_spec": "encoders", "sample_batch": "encoders", "check_hierarchy": "labels",
            "check_scheduler": "labels", "check_generator": "structures", "check_simulator": "structures"}
__all__ = ["CheckReport", "build_encoder", "check_encoder", "check_generator", "check_hierarchy",
           "check_scheduler", "check_simulator", "default_spec", "sample_batch"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
