"""xrd-mamba as an installed plugin: it loads cleanly, lazily, and only when selected."""

import json
import subprocess
import sys

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
