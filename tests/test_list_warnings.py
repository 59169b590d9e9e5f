"""``xrdcore list`` names, on standard error, a plugin that failed to load: a real broken plugin
(tests/plugins/xrd-broken-import, whose module raises on import) installed by pip into a folder on
PYTHONPATH; ``XRDCORE_DISABLE`` by distribution name skips it, and the warning goes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import user_environment

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("broken")
    source = root / "src"
    shutil.copytree(REPO / "tests" / "plugins" / "xrd-broken-import", source)  # builds leave nothing in the repo
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                             "--no-index", "--quiet", "--disable-pip-version-check", "--target", str(root / "site"),
                             str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert list((root / "site").glob("xrd_broken_import-*.dist-info"))
    return root / "site"


def xrdcore(site: Path, *args: str, **variables: str) -> subprocess.CompletedProcess:
    env = user_environment()
    env.update(variables, PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return subprocess.run([sys.executable, "-m", "xrdcore", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_list_warns_on_stderr_naming_the_distribution_that_failed(broken_site):
    for args in (["list", "encoders"], ["list", "hierarchies", "--json"]):
        result = xrdcore(broken_site, *args)
        assert result.returncode == 0, result.stderr
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1, result.stderr
        assert warnings[0].startswith("warning: plugin xrd-broken-import failed to load, could not be loaded: ")
        assert warnings[0].endswith("; see `xrdcore plugins`, or XRDCORE_DISABLE=xrd-broken-import to skip it")
        assert "xrd-broken-import" not in result.stdout  # the listing itself is unchanged
    assert "rcnet" in xrdcore(broken_site, "list", "encoders").stdout


def test_a_disabled_plugin_is_skipped_without_a_warning(broken_site):
    result = xrdcore(broken_site, "list", "encoders", XRDCORE_DISABLE="xrd-broken-import")
    assert result.returncode == 0 and result.stderr == "" and "rcnet" in result.stdout
