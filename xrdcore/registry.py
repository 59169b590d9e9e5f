"""Plugin registry: pluggy hooks fed by the entry-point group ``xrdcore``, one plugin at a time.

Each entry point is imported and each of its hooks called on its own, so one broken plugin is
reported in ``xrdcore plugins`` while the others keep working. ``XRDCORE_STRICT=1`` turns any
plugin problem into an error; ``XRDCORE_PLUGINS=a,b`` loads only those plugins and
``XRDCORE_DISABLE=a,b`` all but those (by distribution or entry-point name; an empty
``XRDCORE_PLUGINS`` loads none). Built-ins register through the same hooks and always load.

Start-up is part of every command: entry points are found by :mod:`xrdcore.discovery` without
importlib.metadata, and what only a failure needs (difflib, traceback) is imported when one happens.

Names: every component is reachable as ``plugin:name`` (``xrd-mamba:mamba``). A short name
resolves to its only provider; when several provide it, a built-in wins, and two third-party
providers make the short name ambiguous. Every collision is listed in the plugins' notes, and
is fatal in strict mode. Messages name plugins by distribution name.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from xrdcore import hookspecs
from xrdcore.discovery import (KINDS, EntryPoint, canonical_kind, distribution_version, import_object,
                               installed_entry_points, normalise)

BUILTIN_PLUGIN = "xrdcore"
BUILTIN_MODULES = ("xrdcore.builtin.plugin",)

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
    #: keyword arguments of the smallest variant: tests, conformance checks and ``bench --quick``
    tiny: dict[str, Any] = field(default_factory=dict)
    #: keyword arguments of a variant that learns on a real data set on a CPU (``--size small``)
    small: dict[str, Any] | None = None
    #: the component used when none is named (the built-in plugin chooses, e.g. the ``sum`` scheduler)
    default: bool = False

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
    ``entry_points`` defaults to :func:`installed_entry_points`; ``strict``, ``only`` and
    ``disable`` (plugin names, a list or ``"a,b"``) default to ``XRDCORE_STRICT``,
    ``XRDCORE_PLUGINS`` and ``XRDCORE_DISABLE``.
    """

    def __init__(self, *, builtins: Iterable[Any] = BUILTIN_MODULES,
                 entry_points: Iterable[EntryPoint] | None = None, strict: bool | None = None,
                 only: Iterable[str] | str | None = None, disable: Iterable[str] | str | None = None):
        self.strict = _env_flag("XRDCORE_STRICT") if strict is None else strict
        self._only = _selection(only, "XRDCORE_PLUGINS")
        self._disable = _selection(disable, "XRDCORE_DISABLE") or set()
        if normalise(BUILTIN_PLUGIN) in self._disable:
            raise ValueError(f"XRDCORE_DISABLE names {BUILTIN_PLUGIN!r}, the built-in plugin, "
                             "which cannot be disabled")
        self.warnings: list[str] = []
        self.plugins: dict[str, PluginInfo] = {}
        self._components: dict[str, list[Component]] = {kind: [] for kind in KINDS}
        #: the files of the plugins' hook modules and of factories registered as objects: what a
        #: remembered listing (:mod:`xrdcore.discovery`) depends on besides the installed metadata
        self.source_files: set[str] = {os.path.abspath(__file__), os.path.abspath(hookspecs.__file__)}
        self._pm = pluggy.PluginManager("xrdcore")
        self._pm.add_hookspecs(hookspecs)

        builtin = self.plugins.setdefault(BUILTIN_PLUGIN, PluginInfo(
            BUILTIN_PLUGIN, distribution_version(BUILTIN_PLUGIN), builtin=True))
        for module in builtins:
            self._add(builtin, lambda m=module: importlib.import_module(m) if isinstance(m, str) else m)
        known = {normalise(BUILTIN_PLUGIN)}
        for dist, eps in _group_by_distribution(
                installed_entry_points() if entry_points is None else entry_points):
            names = {normalise(dist), *(normalise(e.name) for e in eps)}
            known |= names
            info = self.plugins.setdefault(dist, PluginInfo(dist, eps[0].version))
            info.enabled = (self._only is None or bool(names & self._only)) and not names & self._disable
            if info.enabled:
                for ep in eps:
                    self._add(info, ep.load)
        for variable, selection in (("XRDCORE_PLUGINS", self._only), ("XRDCORE_DISABLE", self._disable)):
            for missing in sorted((selection or set()) - known):
                self.warnings.append(f"{variable} names {missing!r}, which is not installed")
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
        key = f"{info.name}#{len(self._pm.get_plugins())}"  # unique for pluggy, never shown
        try:
            plugin = load()
            if self._pm.is_registered(plugin):
                owner = self._pm.get_name(plugin).rpartition("#")[0]
                raise ValueError(f"its plugin object is already registered by {owner}")
            self._pm.register(plugin, name=key)
        except (Exception, SystemExit) as exc:  # a plugin may fail in any way, even sys.exit()
            return self._fail(info, "could not be loaded", exc, key)
        self._add_source(plugin)
        for caller in self._pm.get_hookcallers(plugin) or []:
            if not caller.has_spec():
                import difflib

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
                     tiny: dict[str, Any] | None = None, small: dict[str, Any] | None = None,
                     default: bool = False) -> None:
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
            else:
                self._add_source(factory)
            for size, options in (("tiny", tiny), ("small", small)):
                if options is not None and not (isinstance(options, dict) and all(isinstance(k, str) for k in options)):
                    raise TypeError(f"{kind} {name!r}: {size} must be a dict of keyword arguments, got {options!r}")
            if default and not info.builtin:
                raise ValueError(f"{kind} {name!r}: only the built-in plugin chooses defaults")
            added.append(Component(kind, name, info.name, factory, description or _summary(factory),
                                   info.builtin, dict(tiny or {}), None if small is None else dict(small),
                                   default=bool(default)))

        try:
            impl.function(**{arg: register for arg in impl.argnames})
        except (Exception, SystemExit) as exc:
            # keep what the hook registered before it failed: each component stands alone
            self._fail(info, f"hook {impl.function.__name__} raised", exc)
        info.components.extend(added)
        self._components[kind].extend(added)

    def _add_source(self, obj: Any) -> None:
        """Note the file that defines ``obj`` (a module, class, function or instance)."""
        module = obj if inspect.ismodule(obj) else sys.modules.get(getattr(obj, "__module__", None) or "")
        if module is None and not inspect.isclass(obj):
            module = sys.modules.get(type(obj).__module__)
        path = getattr(module, "__file__", None)
        if path:
            self.source_files.add(os.path.abspath(path))

    @staticmethod
    def _fail(info: PluginInfo, what: str, exc: BaseException, key: str | None = None) -> None:
        """Record a failure in one line, and its traceback for ``--debug``; pluggy's messages name
        the plugin by its pluggy ``key``, which users never see: they get the distribution name."""
        import traceback

        def named(text: str) -> str:
            return text if key is None else text.replace(repr(key), repr(info.name))

        info.errors.append(f"{what}: {type(exc).__name__}: {named(' '.join(str(exc).split()))}")
        info.tracebacks.append(named(traceback.format_exc()))

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
        return list(self._components[canonical_kind(kind)])

    def public_name(self, component: Component) -> str:
        """The name to type: the short name if it resolves to this component, else qualified."""
        try:
            resolved = self.get(component.kind, component.name)
        except LookupError:
            resolved = None
        return component.name if resolved is component else component.qualified_name

    def default(self, kind: str) -> str:
        """The name of the component of ``kind`` used when none is named (the built-in plugin
        marks it: ``flat`` hierarchy, ``sum`` scheduler)."""
        for component in self._components[canonical_kind(kind)]:
            if component.default:
                return self.public_name(component)
        raise LookupError(f"no default {kind.replace('_', ' ')} is registered")

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        """Names of components of ``kind`` matching a glob pattern, in natural order."""
        names = {self.public_name(c) for c in self._components[canonical_kind(kind)]}
        return sorted((n for n in names if fnmatch.fnmatchcase(n, pattern)), key=_natural)

    def get(self, kind: str, name: str) -> Component:
        """The component called ``name`` (short or ``plugin:name``), following the precedence rules."""
        kind = canonical_kind(kind)
        components = self._components[kind]
        if ":" in name:
            plugin, _, short = name.partition(":")
            found = [c for c in components if c.name == short and normalise(c.plugin) == normalise(plugin)]
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
            import difflib

            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            listing = ", ".join(listing) or "none installed"
            raise UnknownComponentError(f"Unknown {kind.replace('_', ' ')} {name!r}.{hint} Available: {listing}")
        return found[0]

    def create(self, kind: str, name: str, /, **kwargs: Any) -> Any:
        """Build a component from keyword arguments and check it honours its interface."""
        kind = canonical_kind(kind)
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


def _winner(candidates: list[Component]) -> Component | None:
    """The provider a short name resolves to: a built-in, else the only one; None if ambiguous."""
    builtin = [c for c in candidates if c.builtin]
    if builtin:
        return builtin[0]
    return candidates[0] if len(candidates) == 1 else None


def _group_by_distribution(entry_points: Iterable[EntryPoint]) -> list[tuple[str, list[EntryPoint]]]:
    """Entry points grouped by distribution name, sorted."""
    groups: dict[str, list[EntryPoint]] = {}
    for ep in entry_points:
        groups.setdefault(ep.distribution, []).append(ep)
    return sorted(groups.items())


def _summary(factory: Any) -> str:
    if isinstance(factory, str):
        return ""
    return (inspect.getdoc(factory) or "").split("\n", 1)[0]


def _selection(names: Iterable[str] | str | None, variable: str) -> set[str] | None:
    """Normalised plugin names given, else those of the environment variable; None if neither."""
    if names is None:
        names = os.environ.get(variable)
    if isinstance(names, str):
        names = names.split(",")
    return None if names is None else {normalise(n) for n in names if n.strip()}


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
