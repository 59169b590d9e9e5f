"""The registry in one process: built-ins, precedence, lazy factories, errors, strict mode, and a
conformance test over every registered hierarchy and scheduler. Real pluggy, real plugin
objects; installs through entry points are in test_entry_points.py."""

import ast
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch
from conftest import user_environment
from pymatgen.core import Lattice, Structure

import xrdcore
from xrdcore import hookspecs
from xrdcore.crystal import LabelHierarchy
from xrdcore.diffraction.pxrd import peak_list
from xrdcore.hookspecs import hookimpl
from xrdcore.interfaces import Encoder, Generator, Simulator, StructureDataset, StructureRecord
from xrdcore.discovery import KINDS, distribution_version, installed_entry_points
from xrdcore.registry import (
    BUILTIN_MODULES,
    AmbiguousComponentError,
    ComponentError,
    PluginError,
    Registry,
    UnknownComponentError,
)

ROOT = Path(__file__).resolve().parents[1]


class MeanEncoder(Encoder):
    """Mean and max of a profile, linearly embedded."""

    input_kind = "profile"

    def __init__(self, embed_dim: int = 4):
        super().__init__()
        self.embed_dim = embed_dim
        self.proj = torch.nn.Linear(2, embed_dim)

    def forward(self, batch):
        return self.proj(torch.stack([batch.mean(1), batch.amax(1)], 1))


class VolumeSimulator(Simulator):
    """Cell volume per atom: a one-number 'profile', enough to exercise the contract."""

    output_kind = "profile"
    settings = {"quantity": "volume per atom, Å^3"}

    def simulate(self, structures):
        return torch.tensor([[s.volume / len(s)] for s in structures])


class RockSaltDataset(StructureDataset):
    provenance = "built in the test from Fm-3m and a lattice parameter"
    licence = "CC0"

    def records(self, limit=None):
        for i, a in enumerate([5.64, 4.2, 6.0][:limit]):
            yield StructureRecord(f"nacl-{i}", Structure.from_spacegroup(
                "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))


class ScaledCopyGenerator(Generator):
    """Returns the seed structure, scaled: candidates ranked by how close the d-spacing of their
    strongest powder peak is to the pattern's."""

    def __init__(self, seed_structure=None):
        self.seed_structure = seed_structure

    def embed_patterns(self, peaks):
        return torch.tensor([[float(p.d[p.intensity.argmax()])] for p in peaks])

    def sample(self, condition, composition, n):
        return [self.seed_structure.copy().scale_lattice(self.seed_structure.volume * (1 + 0.1 * i))
                for i in range(n)]

    def rank(self, condition, candidates):
        return [-abs(self.embed_patterns([peak_list(c)])[0, 0].item() - condition[0].item()) for c in candidates]


class EveryKind:
    """A plugin registering one component of every kind, through every hook."""

    @hookimpl
    def register_encoders(self, register):
        register("mean", MeanEncoder)

    @hookimpl
    def register_label_hierarchies(self, register):
        register("systems", lambda: LabelHierarchy(["space_group", "crystal_system"]),
                 description="space group and crystal system")

    @hookimpl
    def register_loss_schedulers(self, register):
        register("lazy-sum", "xrdcore.builtin.schedulers:SumScheduler")

    @hookimpl
    def register_simulators(self, register):
        register("volume", VolumeSimulator)

    @hookimpl
    def register_generators(self, register):
        register("scaled-copy", ScaledCopyGenerator)

    @hookimpl
    def register_datasets(self, register):
        register("rocksalt", RockSaltDataset)

    @hookimpl
    def register_models(self, register):  # created from a real packaged run in tests/test_zoo.py
        register("packaged", "xrdcore.zoo:PretrainedModel.from_folder")


def test_builtins_are_registered_through_the_hooks():
    registry = Registry(entry_points=[])
    assert registry.names("hierarchies") == ["flat", "multilevel"]
    assert registry.names("schedulers") == ["sum", "weighted"]
    assert registry.plugins["xrdcore"].builtin and registry.plugins["xrdcore"].status == "ok"
    assert [c.qualified_name for c in registry.components("hierarchies")] == ["xrdcore:flat", "xrdcore:multilevel"]


def test_every_hook_reaches_the_registry_and_builds_real_components():
    registry = Registry(builtins=[*BUILTIN_MODULES, EveryKind()], entry_points=[])
    encoder = registry.create("encoder", "mean", embed_dim=3)
    assert encoder(torch.rand(2, 50)).shape == (2, 3)
    assert registry.create("label_hierarchy", "systems").num_classes == {"space_group": 230, "crystal_system": 7}
    scheduler = registry.create("loss_scheduler", "lazy-sum")
    assert float(scheduler.combine({"a": torch.tensor(1.0), "b": torch.tensor(2.0)})[0]) == 3.0
    records = list(registry.create("dataset", "rocksalt").records(limit=2))
    assert [r.id for r in records] == ["nacl-0", "nacl-1"]
    volumes = registry.create("simulator", "volume").simulate([r.structure for r in records])
    assert volumes[0, 0].item() == pytest.approx(5.64 ** 3 / 8)
    assert registry.names("models") == ["packaged"]
    generator = registry.create("generator", "scaled-copy", seed_structure=records[0].structure)
    candidates = generator.sample(torch.zeros(1), "NaCl", 3)
    target = records[0].structure.copy().scale_lattice(records[0].structure.volume * 1.1)
    scores = generator.rank(generator.embed_patterns([peak_list(target)])[0], candidates)
    assert max(range(3), key=scores.__getitem__) == 1


def test_glob_patterns_and_natural_order():
    class Numbered:
        @hookimpl
        def register_encoders(self, register):
            for n in (10, 2, 1):
                register(f"net{n}", MeanEncoder)
            register("other", MeanEncoder)

    registry = Registry(builtins=[Numbered()], entry_points=[])
    assert registry.names("encoders", "net*") == ["net1", "net2", "net10"]
    assert registry.names("encoders", "*th*") == ["other"]


def test_unknown_names_suggest_close_matches():
    registry = Registry(entry_points=[])
    with pytest.raises(UnknownComponentError, match=r"Did you mean 'multilevel'\?.*Available: flat, multilevel"):
        registry.create("label_hierarchy", "multilevle")
    with pytest.raises(ValueError, match="unknown component kind"):
        registry.names("potentials")


def test_precedence_between_builtins_and_third_parties():
    class Builtins:
        @hookimpl
        def register_encoders(self, register):
            register("fixed", MeanEncoder)

    def third_party(tag):
        class Plugin:
            @hookimpl
            def register_encoders(self, register):
                for name in ("fixed", "shared"):
                    register(name, MeanEncoder, description=tag)
        return Plugin()

    registry = Registry(builtins=[Builtins()], entry_points=[])
    registry.add_plugin("acme", third_party("acme"))
    assert registry.get("encoder", "fixed").plugin == "xrdcore"  # built-ins keep their names
    assert registry.get("encoder", "acme:fixed").description == "acme"  # qualified names always work
    assert registry.names("encoders") == ["acme:fixed", "fixed", "shared"]
    assert "shadowed by xrdcore: use 'acme:fixed'" in " ".join(registry.plugins["acme"].notes)

    # a second third party providing the same names makes those names ambiguous
    registry.add_plugin("zeta", third_party("zeta"))
    with pytest.raises(AmbiguousComponentError, match="acme:shared, zeta:shared"):
        registry.get("encoder", "shared")
    assert registry.get("encoder", "fixed").plugin == "xrdcore"
    assert "is also provided by acme: use 'zeta:shared'" in " ".join(registry.plugins["zeta"].notes)
    with pytest.raises(ValueError, match="already registered"):
        registry.add_plugin("acme", third_party("again"))


def test_a_failing_plugin_is_isolated_and_strict_mode_makes_it_fatal():
    class Failing:
        @hookimpl
        def register_encoders(self, register):
            register("before-failure", MeanEncoder)
            raise RuntimeError("broken on purpose")

        @hookimpl
        def register_loss_schedulers(self, register):
            register("ok-scheduler", "xrdcore.builtin.schedulers:SumScheduler")

    registry = Registry(builtins=[*BUILTIN_MODULES, Failing()], entry_points=[], strict=False)
    assert registry.plugins["xrdcore"].status == "partial"
    assert "register_encoders raised: RuntimeError: broken on purpose" in registry.plugins["xrdcore"].errors[0]
    assert "ok-scheduler" in registry.names("schedulers") and "flat" in registry.names("hierarchies")
    with pytest.raises(PluginError, match="broken on purpose"):
        Registry(builtins=[*BUILTIN_MODULES, Failing()], entry_points=[], strict=True)


def test_a_plugin_that_cannot_be_imported_is_reported():
    registry = Registry(builtins=["xrdcore.builtin.plugin", "xrdcore_no_such_module"], entry_points=[])
    assert registry.plugins["xrdcore"].status == "partial"
    assert "ModuleNotFoundError" in registry.plugins["xrdcore"].errors[0]
    assert registry.names("hierarchies") == ["flat", "multilevel"]


def test_a_plugin_calling_sys_exit_does_not_stop_the_host():
    class Exiting:
        @hookimpl
        def register_encoders(self, register):
            raise SystemExit("plugin quit")

    registry = Registry(builtins=[*BUILTIN_MODULES, Exiting()], entry_points=[])
    assert "register_encoders raised: SystemExit: plugin quit" in registry.plugins["xrdcore"].errors[0]
    assert registry.names("schedulers") == ["sum", "weighted"]


def test_lazy_factories_import_only_on_create():
    class Lazy:
        @hookimpl
        def register_encoders(self, register):
            register("late", "tests_lazy_target:Late", description="lazy")
            register("typo", "xrdcore_no_such_module:Encoder")

    registry = Registry(builtins=[Lazy()], entry_points=[])
    # the module must exist when registering (typos are reported at once) ...
    assert "'xrdcore_no_such_module:Encoder' is not an importable 'module:attr'" in registry.plugins["xrdcore"].errors[0]
    assert registry.names("encoders") == ["late"]
    # ... but it is imported only when the component is created
    assert "tests_lazy_target" not in sys.modules
    with pytest.raises(ComponentError, match="encoder 'xrdcore:late': cannot import 'tests_lazy_target:Late'"):
        registry.create("encoder", "late")
    assert "tests_lazy_target" in sys.modules


def test_loading_every_installed_plugin_imports_no_torch_or_pymatgen():
    """Every command loads every plugin: their hooks must stay light (lazy "module:attr" factories)."""
    code = ("import sys, xrdcore; r = xrdcore.get_registry(); "
            "[r.names(k) for k in ('encoder', 'label_hierarchy', 'loss_scheduler', 'simulator', 'generator', "
            "'dataset')]; print(len(r.plugins), sorted(m for m in ('torch', 'pymatgen', 'pyxtal', 'e3nn') "
            "if m in sys.modules))")
    env = {**user_environment(), "XRDCORE_STRICT": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    plugins, heavy = out.stdout.strip().split(" ", 1)
    assert int(plugins) >= 1 and heavy == "[]"


def write_distribution(site: Path, folder: str, name: str, version: str, entry_points: str | None,
                       metadata_file: str = "METADATA") -> None:
    """The metadata directory pip (``*.dist-info``) or setuptools (``*.egg-info``) writes."""
    (site / folder).mkdir(parents=True)
    (site / folder / metadata_file).write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: s\n\nName: not a header\n")
    if entry_points is not None:
        (site / folder / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def two_sites(tmp_path, monkeypatch):
    """Two site directories: acme-tools in both (2.0 first on the path), a setuptools develop
    install, a distutils ``.egg-info`` file, a distribution without xrdcore entry points."""
    first, second = tmp_path / "first", tmp_path / "second"
    write_distribution(first, "Acme_Tools-2.0.dist-info", "Acme.Tools", "2.0",
                       "[console_scripts]\nacme = acme:main\n\n[xrdcore]\n# hooks\nacme = xrdcore_test_acme\n"
                       "extra = xrdcore_test_acme : Extra [gpu]\n")
    write_distribution(second, "acme_tools-1.0.dist-info", "acme-tools", "1.0", "[xrdcore]\nold = acme_old\n")
    write_distribution(second, "legacy.egg-info", "legacy", "0.3",
                       "[xrdcore]\nlegacy = xrdcore_no_such_module\n", metadata_file="PKG-INFO")
    write_distribution(second, "other-1.0.dist-info", "other", "1.0", "[pytest11]\nother = other\n")
    (second / "distutils_only-0.1.egg-info").write_text("Name: distutils-only\n")
    (first / "xrdcore_test_acme.py").write_text(
        "from xrdcore.hookspecs import hookimpl\n\n"
        "@hookimpl\ndef register_label_hierarchies(register):\n"
        "    register('acme-flat', 'xrdcore.builtin.hierarchies:flat')\n\n"
        "class Extra:\n    @staticmethod\n    @hookimpl\n    def register_loss_schedulers(register):\n"
        "        register('acme-sum', 'xrdcore.builtin.schedulers:SumScheduler')\n")
    monkeypatch.syspath_prepend(str(first))
    monkeypatch.delitem(sys.modules, "xrdcore_test_acme", raising=False)
    return [str(first), str(second), str(tmp_path / "missing")]


def test_entry_points_are_found_as_importlib_metadata_finds_them(two_sites):
    expected, seen = [], set()
    for dist in metadata.distributions(path=two_sites):  # the first of each name wins
        key = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
        if key not in seen:
            seen.add(key)
            expected += [(ep.name, ep.value, dist.metadata["Name"], dist.version)
                         for ep in dist.entry_points if ep.group == "xrdcore"]
    found = [(ep.name, ep.value, ep.distribution, ep.version) for ep in installed_entry_points(two_sites)]
    assert sorted(found) == sorted(expected) == [
        ("acme", "xrdcore_test_acme", "Acme.Tools", "2.0"),
        ("extra", "xrdcore_test_acme : Extra [gpu]", "Acme.Tools", "2.0"),
        ("legacy", "xrdcore_no_such_module", "legacy", "0.3")]
    assert distribution_version("acme-tools", two_sites) == "2.0"
    assert distribution_version("nope", two_sites) is None

    # and this environment's real installs, editable ones included
    installed = [(ep.name, ep.value, ep.dist.name, ep.dist.version)
                 for ep in metadata.entry_points(group="xrdcore")]
    found = [(ep.name, ep.value, ep.distribution, ep.version) for ep in installed_entry_points()]
    assert sorted(found) == sorted(installed)
    assert distribution_version("xrdcore") == metadata.version("xrdcore")


def test_plugins_are_loaded_by_distribution_and_can_be_disabled(two_sites):
    registry = Registry(entry_points=installed_entry_points(two_sites))
    acme, legacy = registry.plugins["Acme.Tools"], registry.plugins["legacy"]
    assert (acme.status, acme.version, acme.errors) == ("ok", "2.0", [])
    assert registry.get("hierarchy", "acme-flat").plugin == "Acme.Tools"
    assert registry.get("scheduler", "acme-sum").plugin == "Acme.Tools"
    assert legacy.status == "failed" and "ModuleNotFoundError" in legacy.errors[0]

    # by distribution name, normalised, or by entry-point name; unknown names warn
    for disable in ("acme-tools,legacy,nope", ["acme_tools", " legacy", "nope"], "extra,legacy,nope"):
        registry = Registry(entry_points=installed_entry_points(two_sites), disable=disable, strict=False)
        assert {p.name: p.status for p in registry.plugins.values()} == {
            "xrdcore": "ok", "Acme.Tools": "disabled", "legacy": "disabled"}
        assert "acme-flat" not in registry.names("hierarchies")
        assert registry.warnings == ["XRDCORE_DISABLE names 'nope', which is not installed"]
    registry = Registry(entry_points=installed_entry_points(two_sites), only="acme-tools,legacy", disable="legacy")
    assert [p.name for p in registry.plugins.values() if p.enabled] == ["xrdcore", "Acme.Tools"]
    with pytest.raises(ValueError, match="^XRDCORE_DISABLE names 'xrdcore', the built-in plugin, "
                       "which cannot be disabled$"):
        Registry(entry_points=[], disable="xrd-mamba,XRDcore")


def test_disable_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("XRDCORE_DISABLE", "xrd-nonexistent,")
    assert Registry(entry_points=[]).warnings == ["XRDCORE_DISABLE names 'xrd-nonexistent', which is not installed"]
    assert Registry(entry_points=[], disable=[]).warnings == []


def test_qualified_names_and_plugin_selection_are_normalised():
    registry = Registry(entry_points=[], only="xrd_example, ")
    assert registry.get("scheduler", "XRDcore:sum").qualified_name == "xrdcore:sum"
    assert registry.warnings == ["XRDCORE_PLUGINS names 'xrd-example', which is not installed"]


def test_add_plugin_in_strict_mode_leaves_the_registry_unchanged():
    class Clashing:
        @hookimpl
        def register_label_hierarchies(self, register):
            register("flat", "xrdcore.builtin.hierarchies:flat")

        @hookimpl
        def register_encoders(self, register):
            register("new-one", MeanEncoder)

    registry = Registry(entry_points=[], strict=True)
    with pytest.raises(PluginError, match="shadowed by xrdcore"):
        registry.add_plugin("clash", Clashing())
    assert "clash" not in registry.plugins and "new-one" not in registry.names("encoders")
    assert registry.plugins["xrdcore"].notes == []


def test_multi_line_plugin_errors_become_one_line():
    class WrongArgument:
        @hookimpl
        def register_encoders(self, reg):  # pluggy rejects an argument the spec does not have
            pass

    registry = Registry(builtins=[WrongArgument()], entry_points=[])
    (error,) = registry.plugins["xrdcore"].errors
    assert "\n" not in error and "could not be loaded: PluginValidationError" in error


def test_pluggy_errors_name_the_plugin_by_its_distribution_name():
    class WrongArgument:
        @hookimpl
        def register_encoders(self, reg):
            pass

    registry = Registry(entry_points=[])
    registry.add_plugin("acme-tools", WrongArgument())
    (error,) = registry.plugins["acme-tools"].errors
    assert "Plugin 'acme-tools' for hook 'register_encoders'" in error and "#" not in error
    (traceback,) = registry.plugins["acme-tools"].tracebacks  # shown by --debug
    assert "PluginValidationError: Plugin 'acme-tools'" in traceback and not re.search(r"acme-tools#\d", traceback)

    shared = EveryKind()  # two distributions whose entry points name the same object
    registry.add_plugin("first", shared)
    registry.add_plugin("second", shared)
    assert registry.plugins["second"].errors == [
        "could not be loaded: ValueError: its plugin object is already registered by first"]


def test_create_checks_arguments_and_interface():
    class Wrong:
        @hookimpl
        def register_encoders(self, register):
            register("not-an-encoder", lambda: torch.nn.Linear(2, 2))

    class NoKind(MeanEncoder):
        input_kind = "spectrum"

    class NoDim(MeanEncoder):
        def __init__(self):
            super().__init__()
            self.embed_dim = 0

    class Contract:
        @hookimpl
        def register_encoders(self, register):
            register("no-kind", NoKind)
            register("no-dim", NoDim)

    registry = Registry(builtins=[*BUILTIN_MODULES, Wrong(), Contract()], entry_points=[])
    with pytest.raises(ComponentError, match="input_kind must be one of profile, peaks, images, got 'spectrum'"):
        registry.create("encoder", "no-kind")
    with pytest.raises(ComponentError, match="embed_dim must be a positive int"):
        registry.create("encoder", "no-dim")
    with pytest.raises(ComponentError, match="unexpected keyword argument 'levls'.*accepts: levels, weights, beta"):
        registry.create("label_hierarchy", "multilevel", levls=["space_group"])
    with pytest.raises(ComponentError, match="not an xrdcore.interfaces.Encoder"):
        registry.create("encoder", "not-an-encoder")


def test_invalid_registrations_are_errors_of_that_plugin():
    class Invalid:
        @hookimpl
        def register_encoders(self, register):
            register("Upper Case", MeanEncoder)

        @hookimpl
        def register_loss_schedulers(self, register):
            register("no-factory", 42)

    registry = Registry(builtins=[Invalid()], entry_points=[])
    errors = " ".join(registry.plugins["xrdcore"].errors)
    assert "invalid encoder name 'Upper Case'" in errors and "factory must be callable" in errors
    assert registry.plugins["xrdcore"].status == "failed"


# --- conformance: every registered hierarchy and scheduler, like timm's test over all models ---


def test_multilevel_accepts_one_level_as_a_string():
    assert xrdcore.create_hierarchy("multilevel", levels="crystal_system").level_names == ("crystal_system",)


def test_weighted_scheduler_uses_hierarchy_beta_and_rejects_unknown_levels():
    hierarchy = xrdcore.create_hierarchy("multilevel", levels=["space_group", "point_group"], beta=0.25)
    losses = {"space_group": torch.tensor(2.0), "point_group": torch.tensor(4.0)}
    total, weights = xrdcore.create_scheduler("weighted").combine(losses, hierarchy=hierarchy)
    assert float(total) == 3.0 and weights == {"space_group": 1.0, "point_group": 0.25}
    with pytest.raises(ValueError, match="point_grup"):
        xrdcore.create_scheduler("weighted", weights={"point_grup": 1.0}).combine(losses)
    with pytest.raises(ValueError, match=">= 0"):
        xrdcore.create_scheduler("weighted", weights={"space_group": -1.0})


# --- meta: every hook is documented, has a kind and a docstring (as datasette does) ---


def hook_names():
    tree = ast.parse(Path(hookspecs.__file__).read_text())
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]


def test_every_hookspec_is_documented_and_has_a_kind():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert sorted(hook_names()) == sorted(KINDS.values())
    for name in hook_names():
        assert getattr(hookspecs, name).__doc__, name
        assert f"`{name}`" in docs, f"{name} is not documented in docs/plugins.md"


def test_every_hook_is_exercised_by_the_every_kind_plugin():
    implemented = {name for name in dir(EveryKind) if name.startswith("register_")}
    assert implemented == set(hook_names())
