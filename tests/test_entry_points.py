"""Real entry-point installs: the example plugin and three broken ones, in a throw-away venv.

Nothing of xrdcore is mocked. A child venv sees the dev venv's packages (torch, xrdcore, pip,
setuptools) through a ``.pth`` file, so one offline ``pip install`` of four local directories
is all it needs, and the dev venv itself never sees the plugins. Every ``xrdcore`` start imports
torch (a few seconds), so the invocations the tests inspect run once, concurrently, in a
module fixture; each test then reads the results it is about.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import user_environment

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = [REPO / "docs" / "examples" / "xrd-example",
               *(REPO / "tests" / "plugins" / name
                 for name in ("xrd-broken-import", "xrd-broken-hook", "xrd-duplicate"))]
DISTRIBUTIONS = [d.name for d in PLUGIN_DIRS]
PARENT_SITE = Path(sysconfig.get_paths()["purelib"])
BROKEN = ("xrd-broken-import", "xrd-broken-hook", "xrd-duplicate")


def run(python: Path | str, *args: str, cwd: Path, **xrdcore_env: str) -> subprocess.CompletedProcess:
    """Run ``python *args`` in the caller's environment, every XRDCORE_* replaced by ``xrdcore_env``."""
    env = user_environment()
    env.update(xrdcore_env)
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def parse(result: subprocess.CompletedProcess):
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}"
    return json.loads(result.stdout)


def plugins(result: subprocess.CompletedProcess) -> dict[str, dict]:
    """``xrdcore plugins --json`` output, by plugin name."""
    return {p["name"]: p for p in parse(result)["plugins"]}


def dist_infos(site: Path, distribution: str) -> list[Path]:
    return list(site.glob(distribution.replace("-", "_") + "-*.dist-info"))


@dataclass(frozen=True)
class Child:
    python: Path
    site: Path
    cwd: Path  # empty, so nothing is imported from a source tree by accident


@pytest.fixture(scope="session")
def child(tmp_path_factory) -> Child:
    """A venv with the four plugin distributions installed, built once per session."""
    root = tmp_path_factory.mktemp("entry-points")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    found = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root)
    assert found.returncode == 0, found.stderr
    site = Path(found.stdout.strip())
    (site / "_xrdcore_parent_site.pth").write_text(f"import site; site.addsitedir({str(PARENT_SITE)!r})\n")

    sources = []  # copies, so that the builds leave no build/ or *.egg-info in the repository
    for source in PLUGIN_DIRS:
        shutil.copytree(source, root / "src" / source.name,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        sources.append(str(root / "src" / source.name))
    result = run(python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                 "--quiet", "--disable-pip-version-check", *sources, cwd=root)
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"

    for distribution in DISTRIBUTIONS:
        assert dist_infos(site, distribution), f"{distribution} is not installed in the child venv"
        assert not dist_infos(PARENT_SITE, distribution), (
            f"{distribution} is installed in the dev venv {PARENT_SITE}: uninstall it, these tests "
            "need a dev venv without the test plugins")
    (root / "cwd").mkdir()
    return Child(python, site, root / "cwd")


SNIPPET = r"""
import json, torch, xrdcore, xrd_example
from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid

def error(call):
    try:
        call()
    except Exception as exc:
        return [type(exc).__name__, str(exc)]

out = {"example_file": xrd_example.__file__}
encoder = xrdcore.create_encoder("xrd-example:example-conv", grid=AngleGrid(stop=8.0))  # 300 points
y = encoder(torch.randn(4, 300))
y.square().mean().backward()
out["example"] = {"class": type(encoder).__module__ + "." + type(encoder).__name__,
                  "embed_dim": encoder.embed_dim, "shape": list(y.shape),
                  "finite": bool(torch.isfinite(y).all()),
                  "all_grads": all(p.grad is not None for p in encoder.parameters())}
default = xrdcore.create_encoder("xrd-example:example-conv")  # every argument has a default
out["default_shape"] = list(default(torch.randn(2, DEFAULT_GRID.length)).shape)
out["duplicate_shape"] = list(xrdcore.create_encoder("xrd-duplicate:example-conv")(torch.randn(4, 300)).shape)
out["ambiguous"] = error(lambda: xrdcore.create_encoder("example-conv"))
out["typo"] = error(lambda: xrdcore.create_encoder("exampel-conv"))

registry = xrdcore.get_registry()
flat = xrdcore.create_hierarchy("flat")
out["flat"] = {"levels": flat.level_names, "name": flat.name,
               "plugin": registry.get("hierarchy", "flat").plugin}
out["duplicate_flat"] = xrdcore.create_hierarchy("xrd-duplicate:flat").level_names
out["lattice"] = xrdcore.create_hierarchy("lattice").level_names

loss, weights = xrdcore.create_scheduler("half-sum").combine(
    {"space_group": torch.tensor(2.0), "crystal_system": torch.tensor(4.0)})
out["half_sum"] = [loss.item(), weights]
out["twice"] = type(xrdcore.create_scheduler("twice")).__name__
print(json.dumps(out))
"""

#: the registry's own discovery against importlib.metadata's, over the child's real installs
SCAN = r"""
import importlib.metadata as metadata, json
from xrdcore.discovery import distribution_version, installed_entry_points
print(json.dumps({
    "found": sorted([ep.name, ep.value, ep.distribution, ep.version] for ep in installed_entry_points()),
    "expected": sorted([ep.name, ep.value, ep.dist.name, ep.dist.version]
                       for ep in metadata.entry_points(group="xrdcore")),
    "versions": [[distribution_version(d), metadata.version(d)] for d in ("xrdcore", "xrd-example")]}))
"""

#: the child invocations the tests read: key → (arguments, XRDCORE_* variables)
CALLS: dict[str, tuple[list[str], dict[str, str]]] = {
    "plugins": (["-m", "xrdcore", "plugins", "--json"], {}),
    "encoders": (["-m", "xrdcore", "list", "encoders", "--json"], {}),
    "hierarchies": (["-m", "xrdcore", "list", "hierarchies", "--json"], {}),
    "api": (["-c", SNIPPET], {}),
    "strict": (["-m", "xrdcore", "plugins"], {"XRDCORE_STRICT": "1"}),
    "strict-debug": (["-m", "xrdcore", "--debug", "plugins"], {"XRDCORE_STRICT": "1"}),
    "only-distribution": (["-m", "xrdcore", "plugins", "--json"], {"XRDCORE_PLUGINS": "xrd-example"}),
    "only-strict": (["-m", "xrdcore", "plugins", "--json"],
                    {"XRDCORE_PLUGINS": "xrd-example", "XRDCORE_STRICT": "1"}),
    "only-entry-point": (["-m", "xrdcore", "plugins", "--json"], {"XRDCORE_PLUGINS": "example"}),
    "only-none": (["-m", "xrdcore", "plugins", "--json"], {"XRDCORE_PLUGINS": ""}),
    "only-missing": (["-m", "xrdcore", "plugins", "--json"], {"XRDCORE_PLUGINS": "nonexistent"}),
    # the three broken plugins, by distribution and entry-point names: strict mode has nothing left to fail on
    "disable": (["-m", "xrdcore", "plugins", "--json"],
                {"XRDCORE_DISABLE": "xrd-broken-import,broken_hook,xrd_duplicate", "XRDCORE_STRICT": "1"}),
    "disable-missing": (["-m", "xrdcore", "plugins", "--json"], {"XRDCORE_DISABLE": "nonexistent"}),
    "disable-builtin": (["-m", "xrdcore", "list", "encoders"], {"XRDCORE_DISABLE": "xrdcore"}),
    "scan": (["-c", SCAN], {}),
}


@pytest.fixture(scope="module")
def cli(child) -> dict[str, subprocess.CompletedProcess]:
    """Every invocation in CALLS, run concurrently in the child venv."""
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        futures = {key: pool.submit(run, child.python, *args, cwd=child.cwd, **env)
                   for key, (args, env) in CALLS.items()}
        return {key: future.result() for key, future in futures.items()}


def test_dev_venv_does_not_see_the_plugins(child, tmp_path):  # after the child install, on purpose
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.distribution("xrd-example")
    names = [row["name"] for row in parse(run(sys.executable, "-m", "xrdcore", "list", "encoders", "--json",
                                              cwd=tmp_path))]
    assert not [n for n in names if "example-conv" in n]


def test_plugins_are_imported_from_the_child_venv(cli, child):
    assert Path(parse(cli["api"])["example_file"]).is_relative_to(child.site)


def test_plugins_report_status_errors_and_notes(cli):
    found = plugins(cli["plugins"])

    core = found["xrdcore"]
    assert core["builtin"] and core["status"] == "ok" and not core["errors"]
    assert core["components"]["label_hierarchy"] == ["flat", "multilevel"]
    assert core["notes"] == ["label_hierarchy 'flat' takes precedence over xrd-duplicate"]

    example = found["xrd-example"]
    assert (example["status"], example["version"], example["builtin"]) == ("ok", "0.1.0", False)
    assert example["components"] == {"encoder": ["example-conv"], "label_hierarchy": ["lattice"]}
    assert example["notes"] == ["encoder 'example-conv' is also provided by xrd-duplicate: "
                                "use 'xrd-example:example-conv'"]

    broken_import = found["xrd-broken-import"]
    assert broken_import["status"] == "failed" and broken_import["components"] == {}
    assert broken_import["errors"] == ["could not be loaded: ModuleNotFoundError: "
                                       "No module named 'xrdcore_nonexistent_dependency'"]

    broken_hook = found["xrd-broken-hook"]
    assert broken_hook["status"] == "partial"
    assert broken_hook["components"] == {"loss_scheduler": ["half-sum"]}
    assert sorted(broken_hook["errors"]) == [
        "hook register_encoders raised: RuntimeError: boom",
        "implements unknown hook 'register_encoder'; did you mean 'register_encoders'?"]

    duplicate = found["xrd-duplicate"]
    assert duplicate["status"] == "partial"
    assert duplicate["components"] == {"encoder": ["example-conv"], "label_hierarchy": ["flat"],
                                       "loss_scheduler": ["twice"]}
    assert duplicate["errors"] == ["hook register_loss_schedulers raised: ValueError: "
                                   "loss_scheduler 'twice' is registered twice by this plugin"]
    assert sorted(duplicate["notes"]) == [
        "encoder 'example-conv' is also provided by xrd-example: use 'xrd-duplicate:example-conv'",
        "label_hierarchy 'flat' is shadowed by xrdcore: use 'xrd-duplicate:flat'"]
    assert parse(cli["plugins"])["warnings"] == []


def test_messages_name_plugins_by_distribution_never_by_pluggy_name(cli):
    for key in ("plugins", "encoders", "hierarchies", "strict", "strict-debug"):
        printed = cli[key].stdout + cli[key].stderr
        assert not re.search(r"[\w.-]#\d", printed), f"{key}: {printed}"
    assert "xrd-broken-import: could not be loaded" in cli["strict"].stderr
    assert "xrd-broken-hook: hook register_encoders raised" in cli["strict"].stderr
    assert "xrd-duplicate: hook register_loss_schedulers raised" in cli["strict"].stderr


def test_discovery_matches_importlib_metadata(cli):
    out = parse(cli["scan"])
    assert out["found"] == out["expected"]
    assert {d for _, _, d, _ in out["found"]} >= {"xrd-example", *BROKEN}
    assert out["versions"][1] == ["0.1.0", "0.1.0"] and out["versions"][0][0] == out["versions"][0][1]


def test_list_shows_qualified_names_for_collisions(cli):
    encoders = {row["name"]: row for row in parse(cli["encoders"])}
    assert "example-conv" not in encoders  # ambiguous: two third-party providers
    assert encoders["xrd-example:example-conv"]["plugin"] == "xrd-example"
    assert encoders["xrd-example:example-conv"]["description"].startswith("small 1-D CNN")
    assert encoders["xrd-duplicate:example-conv"]["plugin"] == "xrd-duplicate"

    hierarchies = {row["name"]: row for row in parse(cli["hierarchies"])}
    assert hierarchies["flat"]["plugin"] == "xrdcore" and hierarchies["flat"]["builtin"]
    assert hierarchies["xrd-duplicate:flat"]["plugin"] == "xrd-duplicate"
    assert hierarchies["lattice"]["plugin"] == "xrd-example"


def test_components_are_created_through_the_api(cli):
    out = parse(cli["api"])
    assert out["example"] == {"class": "xrd_example.encoder.ExampleConvEncoder", "embed_dim": 32,
                              "shape": [4, 32], "finite": True, "all_grads": True}
    assert out["default_shape"] == [2, 32]
    assert out["duplicate_shape"] == [4, 1]  # the other provider, reached by its qualified name

    kind, message = out["ambiguous"]
    assert kind == "AmbiguousComponentError"
    assert "xrd-example:example-conv" in message and "xrd-duplicate:example-conv" in message
    kind, message = out["typo"]
    assert kind == "UnknownComponentError" and "Did you mean" in message and "example-conv" in message

    assert out["flat"] == {"levels": ["space_group"], "name": "flat", "plugin": "xrdcore"}
    assert out["duplicate_flat"] == ["crystal_system"]
    assert out["lattice"] == ["space_group", "crystal_system", "bravais"]
    assert out["half_sum"] == [3.0, {"space_group": 0.5, "crystal_system": 0.5}]
    assert out["twice"] == "SumScheduler"  # the first registration survives the failed second


def test_strict_mode_fails_in_one_line(cli):
    result = cli["strict"]
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("xrdcore: error:") and "xrd-broken-import" in lines[0]
    assert "Traceback" not in result.stderr

    debug = cli["strict-debug"]
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr and "PluginError" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("xrdcore: error:")


@pytest.mark.parametrize("key", ["only-distribution", "only-strict", "only-entry-point"])
def test_only_the_selected_plugin_is_loaded(cli, key):
    found = plugins(cli[key])  # exit 0 even in strict mode: the broken plugins are not loaded
    assert found["xrdcore"]["status"] == "ok"
    assert found["xrd-example"]["status"] == "ok" and found["xrd-example"]["notes"] == []
    assert found["xrd-example"]["components"]["encoder"] == ["example-conv"]
    for name in BROKEN:
        plugin = found[name]
        assert (plugin["status"], plugin["errors"], plugin["components"]) == ("disabled", [], {})


def test_entry_point_name_selection_gives_no_warning(cli):
    assert parse(cli["only-entry-point"])["warnings"] == []


def test_empty_selection_loads_no_plugin(cli):
    report = parse(cli["only-none"])
    found = {p["name"]: p for p in report["plugins"]}
    assert found["xrdcore"]["status"] == "ok"
    assert {p["status"] for name, p in found.items() if name != "xrdcore"} == {"disabled"}
    assert report["warnings"] == []


def test_disabled_plugins_are_not_loaded(cli):
    found = plugins(cli["disable"])  # exit 0 in strict mode: the broken plugins are not loaded
    assert found["xrdcore"]["status"] == "ok"
    assert found["xrd-example"]["status"] == "ok" and found["xrd-example"]["notes"] == []
    for name in BROKEN:
        assert (found[name]["status"], found[name]["errors"], found[name]["components"]) == ("disabled", [], {})
    assert parse(cli["disable"])["warnings"] == []

    report = parse(cli["disable-missing"])
    assert report["warnings"] == ["XRDCORE_DISABLE names 'nonexistent', which is not installed"]
    assert {p["status"] for p in report["plugins"]} >= {"ok", "failed", "partial"}


def test_the_builtin_plugin_cannot_be_disabled(cli):
    result = cli["disable-builtin"]
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "xrdcore: error: XRDCORE_DISABLE names 'xrdcore', the built-in plugin, which cannot be disabled"]


def test_unknown_selection_warns(cli):
    report = parse(cli["only-missing"])
    assert report["warnings"] == ["XRDCORE_PLUGINS names 'nonexistent', which is not installed"]
    assert {p["status"] for p in report["plugins"] if not p["builtin"]} == {"disabled"}
