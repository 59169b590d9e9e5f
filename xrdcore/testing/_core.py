"""What every check shares: finding the component under test, and turning a failed check into
one AssertionError that names the component and the check."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from xrdcore.discovery import KINDS
from xrdcore.hookspecs import hookimpl
from xrdcore.registry import Component, Registry

#: the plugin a factory handed to a check is registered under, beside the installed plugins
TEST_PLUGIN = "xrdcore-testing"
UNDER_TEST = "under-test"


@dataclass
class CheckReport:
    """What a check function verified: the checks that passed, in order, and those it skipped,
    with the reason (e.g. ``{"device cuda": "no CUDA device"}``)."""

    component: str
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class Subject:
    """The component under test: how to name it in messages, and how to build it."""

    kind: str
    label: str
    registry: Registry
    component: Component
    options: dict[str, Any]

    @property
    def name(self) -> str:
        """The name that creates it in :attr:`registry`."""
        return self.component.qualified_name

    def factory(self) -> Callable[..., Any]:
        return self.component.load()

    def create(self, **overrides: Any) -> Any:
        """Build it through the registry (which checks its interface and contract) with the
        options under test, ``overrides`` first."""
        return self.registry.create(self.kind, self.name, **{**overrides, **self.options})


def resolve(kind: str, target: str | Callable[..., Any], options: Mapping[str, Any],
            registry: Registry | None) -> Subject:
    """A registered name (its ``tiny`` variant, ``options`` on top) or a factory, which is then
    registered as ``xrdcore-testing:under-test`` in a registry of its own beside every installed
    plugin, so it is built and combined exactly as a plugin's component would be."""
    if registry is None:
        from xrdcore import get_registry

        registry = get_registry()
    if isinstance(target, str):
        component = registry.get(kind, target)
        label = f"{kind.replace('_', ' ')} {component.qualified_name!r}"
        return Subject(kind, label, registry, component, {**component.tiny, **options})
    if not callable(target):
        raise TypeError(f"expected a registered {kind.replace('_', ' ')} name or a factory, got {target!r}")
    plugin = types.ModuleType(f"{TEST_PLUGIN}-{kind}")
    setattr(plugin, KINDS[kind], hookimpl(lambda register: register(UNDER_TEST, target)))
    local = Registry()
    local.add_plugin(TEST_PLUGIN, plugin)
    name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
    component = local.get(kind, f"{TEST_PLUGIN}:{UNDER_TEST}")
    return Subject(kind, f"{kind.replace('_', ' ')} {name}", local, component, dict(options))


class Skip(Exception):
    """Raised inside a check that does not apply; the message is the reason."""


class Checker:
    """Runs named checks; the first that fails raises ``AssertionError("<component>: <check>:
    <what went wrong>")``, with the original exception chained when the component raised. A
    check that raises :class:`Skip` is reported as skipped."""

    def __init__(self, label: str):
        self.label = label
        self.report = CheckReport(label)

    @contextmanager
    def check(self, name: str) -> Iterator[None]:
        try:
            yield
        except Skip as exc:
            self.report.skipped[name] = str(exc)
            return
        except AssertionError as exc:
            raise AssertionError(f"{self.label}: {name}: {exc}") from None
        except Exception as exc:
            message = " ".join(str(exc).split())
            raise AssertionError(f"{self.label}: {name}: raised {type(exc).__name__}: {message}") from exc
        self.report.passed.append(name)


def require(condition: bool, message: str) -> None:
    """``assert`` that survives ``python -O``."""
    if not condition:
        raise AssertionError(message)


def take_rows(x: Any, rows: Any) -> Any:
    """Rows ``rows`` of a batch: a tensor or array, or a mapping of them (peak lists)."""
    return {k: v[rows] for k, v in x.items()} if isinstance(x, Mapping) else x[rows]
