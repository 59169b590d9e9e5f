"""xrd-mamba as an installed plugin: it loads cleanly, lazily, only when selected, and its
encoder is listed exactly when the distribution is installed."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from xrd_mamba.plugin import TINY

import xrdcore
from xrdcore.cli import main


@pytest.fixture
def plugins_env(monkeypatch):
    """Set XRDCORE_PLUGINS for one test; the registry is reloaded afterwards with the old setting."""
    def select(value):
        monkeypatch.setenv("XRDCORE_PLUGINS", value)
        return xrdcore.reload_plugins()
    yield select
    monkeypatch.undo()
    xrdcore.reload_plugins()


def listed_encoders(capsys):
    assert main(["list", "encoders", "--json"]) == 0
    return {row["qualified_name"] for row in json.loads(capsys.readouterr().out)}


def test_plugin_loads_cleanly():
    info = xrdcore.reload_plugins().plugins["xrd-mamba"]
    assert info.status == "ok", info.errors
    component = xrdcore.get_registry().get("encoder", "xrd-mamba:mamba")
    assert component.tiny == TINY and "XRDMamba" in component.description


def test_list_encoders_shows_mamba_only_when_the_plugin_is_selected(plugins_env, capsys):
    plugins_env("xrd-mamba")
    assert "xrd-mamba:mamba" in listed_encoders(capsys)
    assert "mamba" in xrdcore.list_encoders("*mamba*")
    registry = plugins_env("")
    assert registry.plugins["xrd-mamba"].status == "disabled"
    assert "xrd-mamba:mamba" not in listed_encoders(capsys)
    assert xrdcore.list_encoders("*mamba*") == []


def test_loading_the_plugin_imports_neither_torch_nor_the_encoder():
    code = ("import sys, xrdcore; xrdcore.get_registry(); "
            "print(sorted(m for m in ('torch', 'xrd_mamba.encoder', 'xrd_mamba.scan', 'mamba_ssm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_mamba_is_listed_once_the_distribution_is_installed_and_not_before(tmp_path):
    """A real venv that sees every package of this one except xrd-mamba (symlinks to the rest),
    then a real ``pip install`` of plugins/xrd-mamba into it."""
    parent = Path(sysconfig.get_paths()["purelib"])
    visible = tmp_path / "site"
    visible.mkdir()
    for entry in parent.iterdir():
        if "xrd_mamba" not in entry.name.lower().replace("-", "_"):
            (visible / entry.name).symlink_to(entry)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "_parent_site.pth").write_text(f"import site; site.addsitedir({str(visible)!r})\n")
    # no plugin selection of the caller's; the test session's cache folder (conftest.py) kept
    env = {k: v for k, v in os.environ.items() if not k.startswith("XRDCORE_") or k == "XRDCORE_CACHE_DIR"}
    (tmp_path / "cwd").mkdir()

    def run(*args):
        result = subprocess.run([python, *args], check=False, cwd=tmp_path / "cwd", env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def encoders():
        return {row["qualified_name"] for row in json.loads(run("-m", "xrdcore", "list", "encoders", "--json"))}

    before = encoders()
    assert "xrdcore:rcnet" in before and not any(name.startswith("xrd-mamba:") for name in before)
    source = Path(__file__).resolve().parents[1]
    shutil.copytree(source, tmp_path / "xrd-mamba", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    run("-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
        "--disable-pip-version-check", str(tmp_path / "xrd-mamba"))
    assert encoders() - before == {"xrd-mamba:mamba"}
