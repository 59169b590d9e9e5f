"""Where a result came from: versions of xrdcore, every plugin and the libraries, the git commit
of the source, and the device, recorded in every run and results file."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def git_revision(path: str | Path | None = None) -> dict[str, Any] | None:
    """Commit hash of the git checkout holding ``path`` (xrdcore's source by default), and whether
    it has uncommitted changes; None when it is not a git checkout (an installed wheel)."""
    root = Path(path) if path is not None else Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def device_name(device: Any) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def environment(device: Any = "cpu", registry: Any | None = None) -> dict[str, Any]:
    """A JSON-safe description of the software and hardware a run used."""
    import numpy
    import torch

    from xrdcore import __version__, get_registry

    registry = registry or get_registry()
    return {
        "xrdcore": __version__,
        "plugins": {p.name: p.version for p in registry.plugins.values() if not p.builtin and p.enabled},
        "git": git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "numpy": numpy.__version__,
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
    }
