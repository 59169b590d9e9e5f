"""A trained model in a directory: ``config.json`` (its kind and the keyword arguments that build
it) and ``model.safetensors`` (weights, with the JSON state in the metadata). Nothing is pickled;
loading checks the kind, so a CPCP directory is never read as a diffusion model."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

MODEL_FILE, CONFIG_FILE = "model.safetensors", "config.json"


def save_model(directory: str | Path, model: torch.nn.Module, kind: str, kwargs: Mapping[str, Any],
               state: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` (built by ``kwargs``) to ``directory`` as a model of ``kind``."""
    from xrdcore.storage import atomic_write_json
    from xrdcore.train.checkpoint import save_checkpoint

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"kind": kind, "kwargs": dict(kwargs)}
    atomic_write_json(directory / CONFIG_FILE, config)
    save_checkpoint(directory / MODEL_FILE, model, {**config, **(state or {})})
    return directory


def load_model(directory: str | Path, kind: str, build: Callable[..., torch.nn.Module],
               device: str | torch.device = "cpu") -> Any:
    """The model of ``kind`` saved in ``directory``, built by ``build(**kwargs)``, in eval mode;
    a missing, foreign or damaged directory raises ``xrdcore.train.checkpoint.CheckpointError``."""
    from xrdcore.train.checkpoint import CheckpointError, load_checkpoint

    directory = Path(directory)
    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{directory}: no readable {CONFIG_FILE} ({exc})") from None
    if config.get("kind") != kind:
        raise CheckpointError(f"{directory}: not a {kind} model (kind {config.get('kind')!r})")
    model = build(**config["kwargs"])
    load_checkpoint(directory / MODEL_FILE, model)
    return model.to(device).eval()
