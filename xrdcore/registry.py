"""Plugin registry: pluggy hooks fed by the entry-point group ``xrdcore``, one plugin at a time.

Each entry point is imported and each of its hooks called on its own, so one broken plugin is
reported in ``xrdcore plugins`` while the others keep working. ``XRDCORE_STRICT=1`` turns any
plugin problem into an error; ``XRDCORE_PLUGINS=a,b`` loads only those plugins (by
distribution or entry-point name; empty loads none). Built-ins register through the same hooks.

Names: every component is reachable as ``plugin:name`` (``xrd-mamba:mamba``). A short name
resolves to its only provider; when several provide it, a built-in wins unless it was
registered ``overridable=True`` (then the single third-party provider wins), and two
third-party providers make the short name ambiguous. Every collision is listed in the
plugins' notes, and is fatal in strict mode.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata as metadata
import importlib.util
import inspect
import os
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from xrdcore import hookspecs

ENTRY_POINT_GROUP = "xrdcore"
BUILTIN_PLUGIN = "xrdcore"
BUILTIN_MODULES = ("xrdcore.builtin.plugin",)

#: component kind → hook that registers it
KINDS: dict[str, str] = {
    "encoder": "register_encoders",
    "label_hierarchy": "register_label_hierarchies",
    "loss_scheduler": "register_loss_schedulers",
    "simulator": "register_simulators",
    "generator": "register_generators",
    "dataset": "register_datasets",
    "model": "register_models",
}
#: the class each kind's factory must return, imported only when a component is created
INTERFACES: dict[str, str] = {
    "encoder": "xrdcore.interfaces:Encoder",
    "label_hierarchy": "xrdcore.crystal.hierarchy:LabelHierarchy",
    "loss_scheduler": "xrdcore.interfaces:LossScheduler",
    "simulator": "xrdcore.interfaces:Simulator",
    "generator": "xrdcore.interfaces:Generator",
    "dataset": "xrdcore.interfaces:StructureDataset",
    "model": "xrdcore.zoo:PretrainedModel",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class PluginError(RuntimeError):
    """A plugin failed to load or register, in strict mode."""


#: registered model sizes: ``tiny`` (tests, ``--quick``), ``small`` (a CPU run on real data), ``full``
SIZES = ("tiny", "small", "full")


class UnknownComponentError(KeyError):
    """No component of that kind and name; the message lists close matches."""

    def __str__(self) -> str:
        return str(self.args[0])


class AmbiguousComponentError(LookupError):
    """Several third-party plugins provide the same short name."""


class ComponentError(TypeError):
    """A component could not be built: bad arguments, or it does not honour its interface."""


@dataclass
class Component:
    """One registered factory. ``target`` is the factory or a lazy ``"module:attr"`` string."""

    kind: str
    name: str
    plugin: str
    target: Any
    description: str
    builtin: bool
    overridable: bool = False
    #: keyword arguments of the smallest variant: tests, conformance checks and ``bench --quick``
    tiny: dict[str, Any] = field(default_factory=dict)
    #: keyword arguments of a variant that learns on a real data set on a CPU (``--size small``)
    small: dict[str, Any] | None = None

    def size_options(self, size: str) -> dict[str, Any]:
        """The keyword arguments of a registered size: ``tiny``, ``small`` or ``full`` (the defaults)."""
        if size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
        if size == "small" and self.small is None:
            raise ComponentError(f"{self.kind} {self.qualified_name!r} registers no 'small' variant; "
                                 "use --size tiny or full")
        return dict({"tiny": self.tiny, "small": self.small or {}, "full": {}}[size])

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}"

    def load(self) -> Callable[..., Any]:
        """The factory, importing it first if it was registered as a string."""
        if isinstance(self.target, str):
            try:
                self.target = import_object(self.target)
            except (ImportError, AttributeError) as exc:
                raise ComponentError(f"{self.kind} {self.qualified_name!r}: cannot import "
                                     f"{self.target!r}: {exc}") from exc
        return self.target


@dataclass
class PluginInfo:
    """What ``xrdcore plugins`` reports about one plugin."""

    name: str
    version: str | None
    builtin: bool = False
    enabled: bool = True
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.errors:
            return "partial" if self.components else "failed"
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        components: dict[str, list[str]] = {}
        for c in self.components:
            components.setdefault(c.kind, []).append(c.name)
        return {"name": self.name, "version": self.version, "builtin": self.builtin,
                "status": self.status, "errors": self.errors, "notes": self.notes,
                "components": components}


class Registry:
    """All components of all loaded plugins, by kind.

    ``builtins`` are module names (or plugin objects) registered as the built-in plugin;
    ``entry_points`` defaults to the installed ``xrdcore`` group; ``strict`` and ``only``
    default to ``XRDCORE_STRICT`` and ``XRDCORE_PLUGINS``.
    """

    def __init__(self, *, builtins: Iterable[Any] = BUILTIN_MODULES,
                 entry_points: Iterable[metadata.EntryPoint] | None = None,
                 strict: bool | None = None, only: Iterable[str] | None = None):
        self.strict = _env_flag("XRDCORE_STRICT") if strict is None else strict
        if only is None and "XRDCORE_PLUGINS" in os.environ:
            only = os.environ["XRDCORE_PLUGINS"]
        if isinstance(only, str):
            only = only.split(",")
        self._only = None if only is None else {_normalise(p) for p in only if p.strip()}
        self.warnings: list[str] = []
        self.plugins: dict[str, PluginInfo] = {}
        self._components: dict[str, list[Component]] = {kind: [] for kind in KINDS}
        self._pm = pluggy.PluginManager("xrdcore")
        self._pm.add_hookspecs(hookspecs)

        builtin = self.plugins.setdefault(BUILTIN_PLUGIN, PluginInfo(
            BUILTIN_PLUGIN, _version("xrdcore"), builtin=True))
        for module in builtins:
            self._add(builtin, lambda m=module: importlib.import_module(m) if isinstance(m, str) else m)
        known = {_normalise(BUILTIN_PLUGIN)}
        for dist, eps in _group_by_distribution(
                metadata.entry_points(group=ENTRY_POINT_GROUP) if entry_points is None else entry_points):
            names = {_normalise(dist), *(_normalise(e.name) for e in eps)}
            known |= names
            info = self.plugins.setdefault(dist, PluginInfo(dist, _version(dist)))
            info.enabled = self._only is None or bool(names & self._only)
            if info.enabled:
                for ep in eps:
                    self._add(info, ep.load)
        if self._only is not None:
            for missing in sorted(self._only - known):
                self.warnings.append(f"XRDCORE_PLUGINS names {missing!r}, which is not installed")
        self._resolve_collisions()
        self._check_strict()

    def add_plugin(self, name: str, plugin: Any, version: str | None = None) -> PluginInfo:
        """Register a third-party plugin object in this process (a notebook, a test), as if it
        had been installed under the distribution name ``name``."""
        if name in self.plugins:
            raise ValueError(f"a plugin called {name!r} is already registered")
        info = self.plugins[name] = PluginInfo(name, version)
        self._add(info, lambda: plugin)
        self._resolve_collisions()
        try:
            self._check_strict()
        except PluginError:  # leave the registry as it was
            del self.plugins[name]
            for kind in KINDS:
                self._components[kind] = [c for c in self._components[kind] if c.plugin != name]
            if self._pm.is_registered(plugin):
                self._pm.unregister(plugin)
            self._resolve_collisions()
            raise
        return info

    # loading ------------------------------------------------------------------------------
    def _add(self, info: PluginInfo, load: Callable[[], Any]) -> None:
        """Import one plugin object and call each of its hooks, recording any failure."""
        try:
            plugin = load()
            self._pm.register(plugin, name=f"{info.name}#{len(self._pm.get_plugins())}")
        except (Exception, SystemExit) as exc:  # a plugin may fail in any way, even sys.exit()
            return self._fail(info, "could not be loaded", exc)
        for caller in self._pm.get_hookcallers(plugin) or []:
            if not caller.has_spec():
                close = difflib.get_close_matches(caller.name, KINDS.values(), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                info.errors.append(f"implements unknown hook {caller.name!r}{hint}")
        for kind, hook in KINDS.items():
            for impl in getattr(self._pm.hook, hook).get_hookimpls():
                if impl.plugin is plugin:
                    self._call(info, kind, impl)

    def _call(self, info: PluginInfo, kind: str, impl: pluggy.HookImpl) -> None:
        added: list[Component] = []

        def register(name: str, factory: Any, *, description: str | None = None,
                     overridable: bool = False, tiny: dict[str, Any] | None = None,
                     small: dict[str, Any] | None = None) -> None:
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(f"invalid {kind} name {name!r}: use lower-case letters, digits, '.', '_', '-'")
            if any(c.kind == kind and c.name == name for c in info.components + added):
                raise ValueError(f"{kind} {name!r} is registered twice by this plugin")
            if isinstance(factory, str):
                module = factory.partition(":")[0]
                if ":" not in factory or importlib.util.find_spec(module) is None:
                    raise ValueError(f"{kind} {name!r}: {factory!r} is not an importable 'module:attr'")
            elif not callable(factory):
                raise TypeError(f"{kind} {name!r}: factory must be callable or 'module:attr', got {factory!r}")
            for size, options in (("tiny", tiny), ("small", small)):
                if options is not None and not (isinstance(options, dict) and all(isinstance(k, str) for k in options)):
                    raise TypeError(f"{kind} {name!r}: {size} must be a dict of keyword arguments, got {options!r}")
            added.append(Component(kind, name, info.name, factory, description or _summary(factory),
                                   info.builtin, overridable and info.builtin, dict(tiny or {}),
                                   None if small is None else dict(small)))

        try:
            impl.function(**{arg: register for arg in impl.argnames})
        except (Exception, SystemExit) as exc:
            # keep what the hook registered before it failed: each component stands alone
            self._fail(info, f"hook {impl.function.__name__} raised", exc)
        info.components.extend(added)
        self._components[kind].extend(added)

    @staticmethod
    def _fail(info: PluginInfo, what: str, exc: BaseException) -> None:
        info.errors.append(f"{what}: {type(exc).__name__}: {' '.join(str(exc).split())}")
        info.tracebacks.append(traceback.format_exc())

    def _resolve_collisions(self) -> None:
        """Write the collision notes afresh."""
        for info in self.plugins.values():
            info.notes.clear()
        for kind, components in self._components.items():
            by_name: dict[str, list[Component]] = {}
            for c in components:
                by_name.setdefault(c.name, []).append(c)
            for name, candidates in by_name.items():
                if len(candidates) < 2:
                    continue
                winner = _winner(candidates)
                for c in candidates:
                    others = ", ".join(o.plugin for o in candidates if o is not c)
                    if winner is None:
                        note = f"{kind} {name!r} is also provided by {others}: use {c.qualified_name!r}"
                    elif c is winner:
                        note = f"{kind} {name!r} takes precedence over {others}"
                    else:
                        note = (f"{kind} {name!r} is shadowed by {winner.plugin}: "
                                f"use {c.qualified_name!r}")
                    self.plugins[c.plugin].notes.append(note)

    def _check_strict(self) -> None:
        """In strict mode any error, collision or warning is fatal."""
        if self.strict:
            problems = [f"{p.name}: {m}" for p in self.plugins.values() for m in p.errors + p.notes]
            if problems or self.warnings:
                raise PluginError("plugin problems (XRDCORE_STRICT=1): " + "; ".join(problems + self.warnings))

    # queries --------------------------------------------------------------------------------
    def components(self, kind: str) -> list[Component]:
        """Every registered component of ``kind``, shadowed ones included."""
        return list(self._components[_kind(kind)])

    def public_name(self, component: Component) -> str:
        """The name to type: the short name if it resolves to this component, else qualified."""
        try:
            resolved = self.get(component.kind, component.name)
        except LookupError:
            resolved = None
        return component.name if resolved is component else component.qualified_name

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        """Names of components of ``kind`` matching a glob pattern, in natural order."""
        names = {self.public_name(c) for c in self._components[_kind(kind)]}
        return sorted((n for n in names if fnmatch.fnmatchcase(n, pattern)), key=_natural)

    def get(self, kind: str, name: str) -> Component:
        """The component called ``name`` (short or ``plugin:name``), following the precedence rules."""
        kind = _kind(kind)
        components = self._components[kind]
        if ":" in name:
            plugin, _, short = name.partition(":")
            found = [c for c in components if c.name == short and _normalise(c.plugin) == _normalise(plugin)]
        else:
            found = [c for c in components if c.name == name]
            if len(found) > 1:
                winner = _winner(found)
                if winner is None:
                    options = ", ".join(c.qualified_name for c in found)
                    raise AmbiguousComponentError(f"{kind} {name!r} is provided by several plugins: use one of {options}")
                found = [winner]
        if not found:
            listing = self.names(kind)
            known = [c.qualified_name for c in components] if ":" in name else listing
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            listing = ", ".join(listing) or "none installed"
            raise UnknownComponentError(f"Unknown {kind.replace('_', ' ')} {name!r}.{hint} Available: {listing}")
        return found[0]

    def create(self, kind: str, name: str, /, **kwargs: Any) -> Any:
        """Build a component from keyword arguments and check it honours its interface."""
        kind = _kind(kind)
        component = self.get(kind, name)
        factory = component.load()
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):
            signature = None
        if signature is not None:
            try:
                signature.bind(**kwargs)
            except TypeError as exc:
                accepted = ", ".join(p for p in signature.parameters if p not in ("args", "kwargs")) or "nothing"
                raise ComponentError(f"{kind} {component.qualified_name!r}: {exc}; it accepts: {accepted}") from None
        obj = factory(**kwargs)
        interface = import_object(INTERFACES[kind])
        if not isinstance(obj, interface):
            raise ComponentError(f"{kind} {component.qualified_name!r} returned {type(obj).__name__}, "
                                 f"which is not an {interface.__module__}.{interface.__name__}")
        errors = obj.contract_errors() if hasattr(obj, "contract_errors") else []
        if errors:
            raise ComponentError(f"{kind} {component.qualified_name!r}: {'; '.join(errors)}")
        return obj


def import_object(path: str) -> Any:
    """Resolve ``"package.module:attr.sub"``."""
    module_name, _, attr = path.partition(":")
    obj = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def _winner(candidates: list[Component]) -> Component | None:
    builtin = [c for c in candidates if c.builtin]
    third_party = [c for c in candidates if not c.builtin]
    if builtin and not builtin[0].overridable:
        return builtin[0]
    return third_party[0] if len(third_party) == 1 else None


def _kind(kind: str) -> str:
    """Accept ``encoders``, ``hierarchies``, ``label-hierarchies``, ``schedulers`` and so on."""
    key = kind.lower().replace("-", "_")
    aliases = {k: k for k in KINDS} | {k + "s": k for k in KINDS} | {
        "hierarchy": "label_hierarchy", "hierarchies": "label_hierarchy",
        "label_hierarchies": "label_hierarchy", "scheduler": "loss_scheduler",
        "schedulers": "loss_scheduler"}
    if key not in aliases:
        raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
    return aliases[key]


def _group_by_distribution(entry_points: Iterable[metadata.EntryPoint]) -> list[tuple[str, list]]:
    """Entry points grouped by distribution name (duplicates on sys.path dropped), sorted."""
    groups: dict[str, dict[tuple[str, str], metadata.EntryPoint]] = {}
    for ep in entry_points:
        dist = ep.dist.name if getattr(ep, "dist", None) is not None else ep.name
        groups.setdefault(dist, {}).setdefault((ep.name, ep.value), ep)
    return [(dist, list(eps.values())) for dist, eps in sorted(groups.items())]


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _summary(factory: Any) -> str:
    if isinstance(factory, str):
        return ""
    return (inspect.getdoc(factory) or "").split("\n", 1)[0]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
