"""xrdcore: plugin-based deep learning on diffraction data.

The public API is a handful of functions over the plugin registry, one pair per component kind
(``list_encoders("*mamba*")``, ``create_encoder("mamba", grid=AngleGrid(step=0.05))``), plus the
crystallographic tables in :mod:`xrdcore.crystal`.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

    from xrdcore.registry import Registry

# OpenMP threads that spin while they wait make small models 30-50x slower when two processes share
# the cores (a benchmark beside a test run); read by torch's OpenMP when torch is first imported
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")



#: imported from the registry when first asked for: ``xrdcore list`` answers without pluggy
_FROM_REGISTRY = ("AmbiguousComponentError", "ComponentError", "PluginError", "Registry", "UnknownComponentError")


def __getattr__(name: str) -> Any:
    """The registry's classes and ``__version__``, imported or read only when asked for (start-up time)."""
    if name == "__version__":
        from xrdcore.discovery import distribution_version

        return distribution_version("xrdcore") or "0+unknown"  # a source tree never installed: unknown
    if name in _FROM_REGISTRY:
        from xrdcore import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'xrdcore' has no attribute {name!r}")

__all__ = [
    "AmbiguousComponentError", "ComponentError", "PluginError", "Registry", "UnknownComponentError",
    "create_dataset", "create_encoder", "create_generator", "create_hierarchy", "create_scheduler",
    "create_simulator", "get_registry", "list_datasets", "list_encoders", "list_generators",
    "list_hierarchies", "list_models", "list_schedulers", "list_simulators", "load_model", "reload_plugins",
]

_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        from xrdcore.registry import Registry

        _registry = Registry()
    return _registry


def reload_plugins() -> Registry:
    """Discard the registry and load the plugins again (after installing one, or changing env)."""
    global _registry
    _registry = None
    return get_registry()


def list_encoders(pattern: str = "*") -> list[str]:
    return get_registry().names("encoder", pattern)


def create_encoder(name: str, /, **kwargs: Any):
    return get_registry().create("encoder", name, **kwargs)


def list_hierarchies(pattern: str = "*") -> list[str]:
    return get_registry().names("label_hierarchy", pattern)


def create_hierarchy(name: str, /, **kwargs: Any):
    return get_registry().create("label_hierarchy", name, **kwargs)


def list_schedulers(pattern: str = "*") -> list[str]:
    return get_registry().names("loss_scheduler", pattern)


def create_scheduler(name: str, /, **kwargs: Any):
    return get_registry().create("loss_scheduler", name, **kwargs)


def list_simulators(pattern: str = "*") -> list[str]:
    return get_registry().names("simulator", pattern)


def create_simulator(name: str, /, **kwargs: Any):
    return get_registry().create("simulator", name, **kwargs)


def list_generators(pattern: str = "*") -> list[str]:
    return get_registry().names("generator", pattern)


def create_generator(name: str, /, **kwargs: Any):
    return get_registry().create("generator", name, **kwargs)


def list_datasets(pattern: str = "*") -> list[str]:
    return get_registry().names("dataset", pattern)


def create_dataset(name: str, /, **kwargs: Any):
    return get_registry().create("dataset", name, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Pretrained models installed (``xrdcore models`` prints their cards' facts)."""
    return get_registry().names("model", pattern)


def load_model(name: str, /):
    """A pretrained model by name, its weights checked against their sha256: ``.predict(path)``,
    ``.load()`` for the torch module, ``.card`` and ``.card_text`` (:mod:`xrdcore.zoo`)."""
    from xrdcore.zoo import load_model as load

    return load(name)
