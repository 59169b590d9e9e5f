"""Writing files so that an interrupted write never leaves a half-written file behind, and
directories that one process at a time may write.

A write that fails (a full disk, a quota, a file-size limit) raises :class:`WriteError`, one line
naming the file, and leaves the previous version of the file as it was. :func:`directory_lock`
holds ``DIR/.lock`` (``flock``) for a command's life: a second process pointed at the same
directory is refused, naming the holder's pid; the operating system releases the lock when its
holder dies, however it dies, so a kill never leaves a stale lock.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMPORARY_SUFFIX = ".xrdcore-tmp"
LOCK_NAME = ".lock"

#: what a failed write says, by errno
_FULL = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "the file-size limit was reached",
         errno.EDQUOT: "the disk quota is exceeded"}
#: the process's umask, read once (reading it means setting it)
_UMASK = os.umask(0o022)
os.umask(_UMASK)
#: directories this process holds, and how many times (a lock is re-entrant within a process)
_HELD: dict[Path, int] = {}


class WriteError(OSError):
    """A file that could not be written; the message names it and says why."""


class LockError(RuntimeError):
    """A directory that another process is writing; the message names it and the holder's pid."""


def holds_other_files(directory: str | os.PathLike, ours: tuple[str, ...] = ()) -> bool:
    """Whether ``directory`` holds anything but the files named in ``ours``, lock files (``.lock``,
    ``.lock-...``) and temporaries that a write killed with -9 left behind: such a directory
    belongs to someone else and is left alone."""
    directory = Path(directory)
    return directory.exists() and any(p.name not in ours and not p.name.startswith(LOCK_NAME)
                                      and not p.name.endswith(TEMPORARY_SUFFIX) for p in directory.iterdir())


@contextmanager
def write_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn an OSError of writing ``path`` into a :class:`WriteError` naming it (the errno kept):
    a write error from the OS names no file."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        reason = _FULL.get(exc.errno, exc.strerror or str(exc))
        error = WriteError(f"{path}: not written: {reason}; the previous version, if any, is unchanged")
        error.errno = exc.errno  # only: with strerror and filename set, OSError prints those instead
        raise error from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it over
    ``path``: readers see the old file or the new one, never a truncated one (disk full included)."""
    path = Path(path)
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                if hasattr(os, "fchmod"):  # mkstemp makes it private (0600); a new file is normally 0666 & ~umask
                    os.fchmod(handle.fileno(), 0o666 & ~_UMASK)
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


@contextmanager
def directory_lock(directory: str | os.PathLike, name: str = LOCK_NAME) -> Iterator[Path]:
    """Hold ``directory/name`` exclusively for the block (the directory is created): a second
    process asking for it gets a :class:`LockError` at once. Re-entrant within a process. The lock
    file is removed on exit; one that a killed holder left is free (the OS dropped its lock). A
    directory created here and empty on exit is removed again."""
    directory = Path(directory)
    created = not directory.exists()
    with write_errors(directory / name):
        directory.mkdir(parents=True, exist_ok=True)
    key = directory.resolve() / name
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield key
        finally:
            _HELD[key] -= 1
        return
    path = directory / name
    while True:
        with write_errors(path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise LockError(f"{directory}: in use by another xrdcore process (pid {_holder(path)}); wait for it "
                            f"to finish, or choose another directory")
        try:  # the previous holder may have removed the file between our open and our lock
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[key] = 1
    try:
        yield key
    finally:
        del _HELD[key]
        try:
            os.unlink(path)  # still locked: a process that opened it meanwhile sees it gone and retries
        except OSError:
            pass
        os.close(fd)
        if created:
            try:
                directory.rmdir()  # only if empty
            except OSError:
                pass


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on an open file without waiting; False if another process has one."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _holder(path: Path) -> str:
    """The pid written in a lock file, or 'unknown' (it is written just after the lock is taken)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
