"""Writing files so that an interrupted write never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

TEMPORARY_SUFFIX = ".xrdcore-tmp"


def holds_other_files(directory: str | os.PathLike, ours: tuple[str, ...] = ()) -> bool:
    """Whether ``directory`` holds anything but the files named in ``ours`` and temporaries that a
    write killed with -9 left behind: such a directory belongs to someone else and is left alone."""
    directory = Path(directory)
    return directory.exists() and any(p.name not in ours and not p.name.endswith(TEMPORARY_SUFFIX)
                                      for p in directory.iterdir())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it over
    ``path``: readers see the old file or the new one, never a truncated one (disk full included)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_value) + "\n")


def _json_value(value: Any) -> Any:
    """A settings object (e.g. the ``AngleGrid`` among an encoder's arguments in a run's
    config.json) as its ``to_dict()``."""
    if callable(getattr(value, "to_dict", None)):
        return value.to_dict()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
