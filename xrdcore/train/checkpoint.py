"""Checkpoints as safetensors: tensors plus a JSON state in the file's metadata, in one file
written atomically. Loading parses tensors and JSON only; nothing is ever unpickled."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from xrdcore.storage import atomic_write_bytes

CHECKPOINT_FORMAT = "xrdcore-checkpoint/1"


#: the largest safetensors header read (safetensors' own limit): its JSON lists names, shapes, offsets
MAX_HEADER_BYTES = 100_000_000


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, foreign, or for another model."""


def check_header(path: str | Path) -> int:
    """The length of a safetensors file's JSON header, checked against the file's size and
    MAX_HEADER_BYTES before anything is allocated for it (a forged length claiming 100 GB is
    refused at once); the reader then checks every tensor's offsets against the file."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        raw = handle.read(8)
    if len(raw) < 8:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({size} bytes, shorter than the 8 bytes "
                              "of its header length)")
    length = int.from_bytes(raw, "little")
    if length > min(MAX_HEADER_BYTES, size - 8):
        raise CheckpointError(f"{path}: header of {length:,} bytes does not fit the file ({size:,} bytes) or the "
                              f"{MAX_HEADER_BYTES:,}-byte limit: the file is damaged or not a checkpoint")
    return length


def save_checkpoint(path: str | Path, model: torch.nn.Module, state: Mapping[str, Any],
                    optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Model weights (and optimiser moments) with ``state`` (JSON-safe) in the metadata."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    state = dict(state)
    if optimizer is not None:
        saved = optimizer.state_dict()
        for index, moments in saved["state"].items():
            for key, value in moments.items():
                tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().contiguous().cpu()
        state["optimizer_groups"] = saved["param_groups"]
    metadata = {"format": CHECKPOINT_FORMAT, "state": json.dumps(state)}
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_checkpoint(path: str | Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Load weights into ``model`` (and ``optimizer``) and return the stored state; every problem
    is a :class:`CheckpointError` naming the file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    check_header(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({' '.join(str(exc).split())})") from None
    except BaseException as exc:  # a panic in the Rust reader (pyo3's PanicException is no Exception)
        if type(exc).__name__ != "PanicException":
            raise
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint (the reader failed: "
                              f"{' '.join(str(exc).split())[:200]})") from None
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an xrdcore checkpoint (format {metadata.get('format')!r}, "
                              f"expected {CHECKPOINT_FORMAT!r})")
    try:
        state = json.loads(metadata["state"])
    except (KeyError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: its state metadata is missing or not JSON ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: its state metadata is a JSON {type(state).__name__}, not an object")
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    wrong = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in weights and weights[k].shape != v.shape]
    if missing or unexpected or wrong:
        details = "; ".join(part for part in (
            f"missing {', '.join(missing[:5])}" if missing else "",
            f"unexpected {', '.join(unexpected[:5])}" if unexpected else "",
            f"shapes differ: {', '.join(wrong[:5])}" if wrong else "") if part)
        raise CheckpointError(f"{path}: does not fit this model ({details})")
    model.load_state_dict(weights)
    if optimizer is not None:
        groups = state.get("optimizer_groups")
        if groups is None:
            raise CheckpointError(f"{path}: holds no optimiser state to resume from")
        moments: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = (key.split(".", 2) + ["", ""])[:3]
                if not index.isdigit() or not name:
                    raise CheckpointError(f"{path}: tensor {key!r} is no optimiser moment (optimizer.INDEX.NAME)")
                moments.setdefault(int(index), {})[name] = value
        if not (isinstance(groups, list) and all(isinstance(g, dict) for g in groups)):
            raise CheckpointError(f"{path}: optimiser state does not fit (its param groups are not a list of objects)")
        try:
            optimizer.load_state_dict({"state": moments, "param_groups": groups})
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: optimiser state does not fit ({' '.join(str(exc).split())[:200]})") from None
    return state
