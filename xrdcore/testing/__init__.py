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

from xrdcore.testing._core import CheckReport
from xrdcore.testing.encoders import build_encoder, check_encoder, default_spec, sample_batch
from xrdcore.testing.labels import check_hierarchy, check_scheduler
from xrdcore.testing.structures import check_generator, check_simulator

__all__ = ["CheckReport", "build_encoder", "check_encoder", "check_generator", "check_hierarchy",
           "check_scheduler", "check_simulator", "default_spec", "sample_batch"]
