"""Finding plugins without importing them: the component kinds, the ``xrdcore`` entry points read
from the ``*.dist-info`` / ``*.egg-info`` directories on ``sys.path``, and what the plugins
registered the last time they were loaded.

Nothing here imports pluggy or a plugin, so ``xrdcore list`` answers from the remembered listing
in the time of an interpreter start-up plus a few file reads. The listing is remembered per
environment (``$XDG_CACHE_HOME/xrdcore``, or ``XRDCORE_CACHE_DIR``) with what it depends on: the
interpreter, ``sys.path``, the plugin selection variables, every installed distribution (its
metadata directory and the time its entry points were written) and the source files of the
plugins' hook modules. Any change to those, an install, an upgrade, an edit to an editable
plugin, loads the plugins again. A listing with a plugin failure or a warning is never remembered,
so the warning is shown each time. ``xrdcore plugins`` always loads the plugins and remembers
afresh. Entry points are read directly, not through importlib.metadata: its import and full scan
of every installed distribution cost more than the rest of ``xrdcore list``.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from collections import namedtuple
from collections.abc import Iterable, Iterator

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

ENTRY_POINT_GROUP = "xrdcore"
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
_KIND_ALIASES = {k: k for k in KINDS} | {k + "s": k for k in KINDS} | {
    "hierarchy": "label_hierarchy", "hierarchies": "label_hierarchy",
    "label_hierarchies": "label_hierarchy", "scheduler": "loss_scheduler", "schedulers": "loss_scheduler"}
#: the environment variables that decide which plugins load
SELECTION_VARIABLES = ("XRDCORE_PLUGINS", "XRDCORE_DISABLE", "XRDCORE_STRICT")
_CACHE_FORMAT = 1


def canonical_kind(kind: str) -> str:
    """Accept ``encoders``, ``hierarchies``, ``label-hierarchies``, ``schedulers`` and so on."""
    key = kind.lower().replace("-", "_")
    if key not in _KIND_ALIASES:
        raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
    return _KIND_ALIASES[key]


class EntryPoint(namedtuple("EntryPoint", "name value distribution version", defaults=(None,))):
    """One entry point of the ``xrdcore`` group: ``value`` is ``module`` or ``module:attr``."""

    __slots__ = ()

    def load(self) -> Any:
        return import_object(re.sub(r"\s+", "", self.value.partition("[")[0]))  # no extras


def import_object(path: str) -> Any:
    """Resolve ``"package.module:attr.sub"``."""
    module_name, _, attr = path.partition(":")
    obj = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def installed_entry_points(path: Iterable[str] | None = None) -> list[EntryPoint]:
    """The ``xrdcore`` entry points of the distributions on ``path`` (default ``sys.path``).

    Only the distributions that declare the group have their metadata read. Zip archives on
    the path are not searched (pip never installs into one).
    """
    found = []
    for normalised, directory in _distributions(sys.path if path is None else path):
        try:
            with open(os.path.join(directory, "entry_points.txt"), encoding="utf-8") as f:
                pairs = _section(f.read(), ENTRY_POINT_GROUP)
        except OSError:  # none, or an .egg-info file of a distutils install
            continue
        if pairs:
            name, version = _name_and_version(directory)
            found += [EntryPoint(key, value, name or normalised, version) for key, value in pairs]
    return found


def distribution_version(name: str, path: Iterable[str] | None = None) -> str | None:
    """The version of the distribution ``name`` that Python imports, or None if not installed."""
    wanted = normalise(name)
    for normalised, directory in _distributions(sys.path if path is None else path):
        if normalised == wanted:
            return _name_and_version(directory)[1]
    return None


def normalise(name: str) -> str:
    """A distribution or plugin name as packaging compares them: ``XRD_Mamba`` → ``xrd-mamba``."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _distributions(path: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(normalised name, metadata directory) of each distribution, as importlib.metadata finds
    them: in path order, then directory order, the first of each name only."""
    seen = set()
    for entry in path:
        try:
            children = os.listdir(entry or ".")
        except OSError:
            continue
        for child in children:
            low = child.lower()
            if low.endswith((".dist-info", ".egg-info")):
                normalised = normalise(low.rpartition(".")[0].partition("-")[0])
                if normalised not in seen:
                    seen.add(normalised)
                    yield normalised, os.path.join(entry, child)


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` pairs of one ``[group]`` of an entry_points.txt."""
    pairs, current = [], None
    for line in map(str.strip, text.splitlines()):
        if line.startswith("[") and line.endswith("]"):
            current = line.strip("[]")
        elif current == group and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def _name_and_version(directory: str) -> tuple[str | None, str | None]:
    """``Name`` and ``Version`` from the headers of a METADATA (or an .egg-info's PKG-INFO)."""
    for filename in ("METADATA", "PKG-INFO"):
        headers: dict[str, str] = {}
        try:
            with open(os.path.join(directory, filename), encoding="utf-8") as f:
                for line in f:
                    if not line.strip() or len(headers) == 2:
                        break
                    key, _, value = line.partition(":")
                    if key in ("Name", "Version"):
                        headers[key] = value.strip()
        except OSError:
            continue
        return headers.get("Name"), headers.get("Version")
    return None, None


# the remembered listing --------------------------------------------------------------------------
def listing(registry: Any, kind: str) -> list[dict[str, Any]]:
    """One row per component of ``kind`` a user can name, in natural order: ``name`` (what to
    type), ``qualified_name``, ``plugin``, ``builtin``, ``description``."""
    rows = []
    for name in registry.names(kind):
        c = registry.get(kind, name)
        rows.append({"name": name, "qualified_name": c.qualified_name, "plugin": c.plugin,
                     "builtin": c.builtin, "description": c.description})
    return rows


def remembered_listing(kind: str) -> list[dict[str, Any]] | None:
    """The rows of :func:`listing` from the last clean load in this environment, or None when
    there is none or anything it depends on has changed since."""
    kind = canonical_kind(kind)
    try:
        with open(_cache_file(), encoding="utf-8") as f:
            cached = json.load(f)
        if cached["format"] != _CACHE_FORMAT or cached["fingerprint"] != _fingerprint(cached["fingerprint"]["files"]):
            return None
        return cached["components"][kind]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # none, damaged or from another layout
        return None


def remember(registry: Any) -> bool:
    """Write the listing of a cleanly loaded registry for the next ``xrdcore list``; False (and
    nothing written) after a plugin failure or warning, or where the cache cannot be written."""
    if registry.warnings or any(p.errors for p in registry.plugins.values()):
        return False
    from xrdcore.storage import atomic_write_text

    record = {"format": _CACHE_FORMAT, "fingerprint": _fingerprint(sorted(registry.source_files)),
              "components": {kind: listing(registry, kind) for kind in KINDS}}
    try:
        atomic_write_text(_cache_file(), json.dumps(record))
    except OSError:  # a read-only home: listing still works, only slower
        return False
    return True


def _fingerprint(files: Iterable[str]) -> dict[str, Any]:
    """What the plugins' registrations depend on, as JSON values."""
    distributions = []
    for _, directory in _distributions(sys.path):
        distributions.append([directory, _stamp(os.path.join(directory, "entry_points.txt"))])
    return {"prefix": sys.prefix, "version": sys.version, "path": list(sys.path),
            "selection": {v: os.environ.get(v) for v in SELECTION_VARIABLES},
            "distributions": distributions, "files": {f: _stamp(f) for f in files}}


def _stamp(path: str) -> list[int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_mtime_ns, stat.st_size]


def _cache_file() -> str:
    """One file per Python environment (``sys.prefix``)."""
    folder = os.environ.get("XRDCORE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "xrdcore")
    environment = re.sub(r"[^A-Za-z0-9]+", "-", sys.prefix).strip("-")[-120:] or "root"
    return os.path.join(folder, f"components-{environment}.json")
