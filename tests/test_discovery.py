"""The listing ``xrdcore list`` remembers between commands (xrdcore.discovery): the rows of a fresh
load, answered without pluggy or any plugin, and forgotten whenever what the plugins register
could have changed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import user_environment

from xrdcore import discovery
from xrdcore.registry import Registry

PLUGIN = ("from xrdcore.hookspecs import hookimpl\n\n"
          "@hookimpl\ndef register_loss_schedulers(register):\n"
          "    register('acme-sum', 'xrdcore.builtin.schedulers:SumScheduler', description='{}')\n")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XRDCORE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def site(tmp_path, monkeypatch, cache):
    """A site directory on sys.path holding the distribution acme 1.0 and its hook module."""
    site = tmp_path / "site"
    (site / "acme-1.0.dist-info").mkdir(parents=True)
    (site / "acme-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: acme\nVersion: 1.0\n")
    (site / "acme-1.0.dist-info" / "entry_points.txt").write_text("[xrdcore]\nacme = xrdcore_test_acme_hooks\n")
    (site / "xrdcore_test_acme_hooks.py").write_text(PLUGIN.format("first"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "xrdcore_test_acme_hooks", raising=False)
    return site


def test_the_remembered_listing_is_the_fresh_one_for_every_kind_and_alias(site):
    registry = Registry()
    assert discovery.remember(registry)
    for kind in discovery.KINDS:
        assert discovery.remembered_listing(kind) == discovery.listing(registry, kind)
    rows = discovery.remembered_listing("schedulers")
    assert {"name": "acme-sum", "qualified_name": "acme:acme-sum", "plugin": "acme", "builtin": False,
            "description": "first"} in rows
    assert [r["name"] for r in rows] == registry.names("scheduler")
    with pytest.raises(ValueError, match="unknown component kind 'encodr'"):
        discovery.remembered_listing("encodr")


def forgotten_after(change) -> bool:
    """Whether a clean listing, remembered, is forgotten after ``change()``."""
    sys.modules.pop("xrdcore_test_acme_hooks", None)
    assert discovery.remember(Registry())
    assert discovery.remembered_listing("encoders") is not None
    change()
    return discovery.remembered_listing("encoders") is None


def later(path: Path) -> None:
    """Move a file's modification time on, as an edit a second later would."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_any_change_the_plugins_registrations_depend_on_forgets_it(site, tmp_path, monkeypatch):
    hooks, entry_points = site / "xrdcore_test_acme_hooks.py", site / "acme-1.0.dist-info" / "entry_points.txt"
    # an edit of an (editable) plugin's hook module, even one of the same size
    assert forgotten_after(lambda: (hooks.write_text(PLUGIN.format("other")), later(hooks)))
    # its entry points written again (a reinstall of the same version)
    assert forgotten_after(lambda: later(entry_points))
    # a distribution installed, upgraded or removed
    assert forgotten_after(lambda: (site / "other-2.0.dist-info").mkdir())
    assert forgotten_after(lambda: (site / "other-2.0.dist-info").rename(site / "other-2.1.dist-info"))
    assert forgotten_after(lambda: (site / "other-2.1.dist-info").rmdir())
    # another selection of plugins, strictness, or import path
    assert forgotten_after(lambda: monkeypatch.setenv("XRDCORE_DISABLE", "acme"))
    assert forgotten_after(lambda: monkeypatch.setenv("XRDCORE_STRICT", "1"))
    assert forgotten_after(lambda: monkeypatch.syspath_prepend(str(tmp_path)))
    # and nothing else: a file elsewhere changes nothing
    assert not forgotten_after(lambda: (tmp_path / "notes.txt").write_text("x"))


def test_a_load_with_a_failure_or_a_warning_is_never_remembered(site, cache, monkeypatch):
    (site / "acme-1.0.dist-info" / "entry_points.txt").write_text("[xrdcore]\nacme = xrdcore_no_such_module\n")
    registry = Registry()
    assert registry.plugins["acme"].status == "failed"
    assert not discovery.remember(registry) and not cache.exists()
    monkeypatch.setenv("XRDCORE_PLUGINS", "xrdcore,nope")
    registry = Registry()
    assert registry.warnings and not discovery.remember(registry) and not cache.exists()


def test_a_damaged_or_foreign_cache_file_is_ignored_and_replaced(site, cache):
    registry = Registry()
    assert discovery.remember(registry)
    (path,) = cache.iterdir()
    for damaged in ("", "{", "[]", '{"format": 1}', json.dumps({"format": 99})):
        path.write_text(damaged)
        assert discovery.remembered_listing("encoders") is None
    assert discovery.remember(registry)
    assert discovery.remembered_listing("encoders") == discovery.listing(registry, "encoders")


#: ``xrdcore ARGS`` in a child that prints every module it imported on its last line of stderr
CHILD = ("import sys\nfrom xrdcore.cli import main\ncode = main(sys.argv[1:])\n"
         "print(' '.join(sorted(sys.modules)), file=sys.stderr)\nsys.exit(code)")


def xrdcore_list(*args: str, **variables: str) -> subprocess.CompletedProcess:
    """``xrdcore list ARGS --json`` with ``variables`` set."""
    return subprocess.run([sys.executable, "-c", CHILD, "list", *args, "--json"], env={**user_environment(), **variables},
                          capture_output=True, text=True, timeout=120)


def imported(result: subprocess.CompletedProcess) -> set[str]:
    return set(result.stderr.splitlines()[-1].split())


def test_xrdcore_list_answers_from_it_without_pluggy_or_any_plugin(tmp_path):
    cache = str(tmp_path / "cache")
    first = xrdcore_list("encoders", XRDCORE_CACHE_DIR=cache)
    second = xrdcore_list("encoders", XRDCORE_CACHE_DIR=cache)
    assert first.returncode == second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    assert json.loads(second.stdout) == json.loads(first.stdout)
    assert {"pluggy", "xrdcore.registry", "xrdcore.builtin.plugin"} <= imported(first)
    assert not {m for m in imported(second) if m.startswith(("pluggy", "xrdcore.registry", "xrdcore.builtin",
                                                              "xrdcore.hookspecs", "xrd_", "torch", "numpy"))}
    # a pattern and another kind from the same remembered listing
    patterned = xrdcore_list("schedulers", "m*", XRDCORE_CACHE_DIR=cache)
    assert "pluggy" not in imported(patterned)
    assert [r["name"] for r in json.loads(patterned.stdout)] == ["mgda"]
    # `xrdcore plugins` always loads the plugins, and remembers afresh
    subprocess.run([sys.executable, "-c", CHILD, "plugins"], env={**user_environment(), "XRDCORE_CACHE_DIR": cache},
                   check=True, capture_output=True)
    assert "pluggy" not in imported(xrdcore_list("models", XRDCORE_CACHE_DIR=cache))


def test_xrdcore_list_works_where_nothing_can_be_remembered(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    for _ in range(2):
        result = xrdcore_list("encoders", XRDCORE_CACHE_DIR=str(blocked / "cache"))
        assert result.returncode == 0 and "rcnet" in {r["name"] for r in json.loads(result.stdout)}
        assert "pluggy" in imported(result)
