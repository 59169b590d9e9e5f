"""Shared by every test directory (tests/ and each plugin's tests/): OpenMP threads that wait
passively, a cache folder of the session's own, and a small real data set (46 MP-20 structures,
tests/data/mp20_sample.csv) built into a peak cache once per test session."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import xrdcore  # noqa: F401 - sets OMP_WAIT_POLICY=PASSIVE before any test module imports torch

MP20_SAMPLE = Path(__file__).with_name("tests") / "data" / "mp20_sample.csv"


def pytest_configure(config):
    """Every command a test runs, in this process or a child, keeps its remembered ``xrdcore list``
    (xrdcore.discovery) in a folder of this session's, not in the user's cache."""
    folder = tempfile.mkdtemp(prefix="xrdcore-cache-")
    os.environ["XRDCORE_CACHE_DIR"] = folder
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


@pytest.fixture(scope="session")
def mp20_cache(tmp_path_factory):
    from xrdcore.data.cache import BuildSpec, build_cache

    spec = BuildSpec("csv", {"path": str(MP20_SAMPLE)})
    return build_cache(tmp_path_factory.mktemp("mp20") / "cache", spec, progress=False)
