"""An order-preserving parallel map, so results never depend on the number of workers.

Only a few items per worker are read ahead, so a long stream (a 12,000-file archive) is never
read into memory at once. Processes are spawned, not forked, because forking a process that
has started torch or BLAS threads can deadlock; a worker that cannot start (a script without
the ``if __name__ == "__main__":`` guard that spawning needs) is reported as one clear error
instead of the endless restarts of ``multiprocessing.Pool``. Workers exit when the process that
started them dies, whatever killed it (kill -9 included, which no handler of the parent sees), so
none is left behind holding memory (:func:`_die_with_parent`).
"""

from __future__ import annotations

import gzip
import itertools
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from xrdcore.storage import atomic_write_bytes
from xrdcore import validate

T = TypeVar("T")
R = TypeVar("R")


class WorkerError(RuntimeError):
    """The worker processes died or could not start."""


def check_workers(workers: int) -> int:
    """``workers`` as a positive int within what the machine can run (:func:`xrdcore.validate.workers`)."""
    return validate.workers(workers)


def ordered_map(func: Callable[[T], R], items: Iterable[T], workers: int = 1,
                in_flight: int = 8) -> Iterator[R]:
    """``map(func, items)`` over ``workers`` processes, results in input order.

    At most ``in_flight`` items per worker are read ahead, so workers stay busy while the
    caller handles a result. ``func`` must be importable (module level) and should not raise:
    return failures as values.
    """
    if check_workers(workers) == 1:
        yield from map(func, items)
        return
    pending: deque[Future[R]] = deque()
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_worker, initargs=(os.getpid(),)) as pool:
            for item in items:
                pending.append(pool.submit(func, item))
                if len(pending) >= workers * in_flight:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    except BrokenProcessPool as exc:
        raise WorkerError(
            f"worker processes for {getattr(func, '__name__', func)} stopped ({exc}). With workers > 1 "
            "a script must run its code under `if __name__ == \"__main__\":` (processes are spawned); "
            "or use workers=1") from None


def unordered_map(func: Callable[[T], R], items: Iterable[T], workers: int = 1) -> Iterator[R]:
    """``map(func, items)`` over ``workers`` processes, each result as soon as it is ready (items are
    submitted in the order given: put the slowest first). Results must say which item they are for."""
    if check_workers(workers) == 1:
        yield from map(func, items)
        return
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_worker, initargs=(os.getpid(),)) as pool:
            for future in as_completed([pool.submit(func, item) for item in items]):
                yield future.result()
    except BrokenProcessPool as exc:
        raise WorkerError(
            f"worker processes for {getattr(func, '__name__', func)} stopped ({exc}). With workers > 1 "
            "a script must run its code under `if __name__ == \"__main__\":` (processes are spawned); "
            "or use workers=1") from None


def _start_worker(parent: int) -> None:
    """Every worker's initialiser: it dies with ``parent`` and runs one thread of BLAS/torch."""
    _die_with_parent(parent)
    _one_thread_each()


#: seconds between a worker's checks that its parent is alive (where the OS cannot tell it)
PARENT_POLL_SECONDS = 0.5


def _die_with_parent(parent: int) -> None:
    """Make this process exit when ``parent`` dies, however it dies: on Linux the kernel sends it
    SIGKILL (prctl PR_SET_PDEATHSIG; strictly, when the parent's thread that started the worker
    ends, which here is the thread that runs the map); everywhere a daemon thread sees the parent
    id change (the orphan is adopted) within PARENT_POLL_SECONDS and exits. A parent already gone
    when this runs is noticed at once."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="xrdcore-watch-parent", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)  # no cleanup: the parent that wanted the results is gone


def _one_thread_each() -> None:
    """Workers are already one per core: threaded BLAS/torch inside each would oversubscribe it."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``"k/n"`` (0 <= k < n) as (k, n); ``None`` is the whole, (0, 1). Shard k of n takes items
    k, k + n, k + 2n, ... of a stable order (crystals of a data set, runs of a benchmark grid)."""
    if shard is None:
        return 0, 1
    k, sep, n = str(shard).partition("/")
    if not (sep and k.strip().isdigit() and n.strip().isdigit() and int(k) < int(n)):
        raise ValueError(f"shard must be 'k/n' with 0 <= k < n, got {shard!r}")
    return int(k), int(n)


def checkpointed_map(func: Callable[[T], R], items: Iterable[T], *, workers: int = 1, chunk: int = 500,
                     folder: str | Path | None = None, encode: Callable[[R], Any] = lambda r: r,
                     decode: Callable[[Any], R] = lambda r: r, progress: str | None = None,
                     total: int | None = None, unit: str = "item") -> Iterator[R]:
    """:func:`ordered_map` whose results are saved, ``chunk`` items at a time, as
    ``folder/<k>.json.gz`` (``encode`` makes a result JSON-ready, ``decode`` undoes it); items of
    chunks already saved are skipped and their results read back, so an interrupted run resumes
    where it stopped. ``progress``: a tqdm bar with that description (rate and ETA)."""
    from tqdm import tqdm

    folder = Path(folder) if folder is not None else None
    done = {int(p.name.split(".")[0]) for p in folder.glob("*.json.gz")} if folder is not None and folder.is_dir() else set()
    todo = (item for k, item in enumerate(items) if k // chunk not in done)
    results = ordered_map(func, todo, workers)
    with tqdm(total=total, unit=unit, desc=progress, disable=progress is None, smoothing=0.05) as bar:
        for k in itertools.count():
            if k in done:
                saved = json.loads(gzip.decompress((folder / f"{k:05d}.json.gz").read_bytes()))
                bar.update(len(saved))
                yield from (decode(r) for r in saved)
                continue
            batch = []
            for result in itertools.islice(results, chunk):
                batch.append(result)
                bar.update()
            if not batch and not any(j > k for j in done):
                return
            if folder is not None and batch:
                atomic_write_bytes(folder / f"{k:05d}.json.gz",
                                   gzip.compress(json.dumps([encode(r) for r in batch]).encode(), 1))
            yield from batch
