"""Shared by the core's tests: small input settings and a tiny model trained on the MP-20 sample
(``mp20_cache``, from the repository's conftest.py)."""

import os
from pathlib import Path

import numpy as np
import pytest

#: a fast, small input: the recipe's grid at 0.05° (1,700 points), Gaussian peaks; the grid as
#: JSON settings (and so the benchmark's) give it, the fields that differ
TINY_INPUT = {"grid": {"step": 0.05}}
TINY_RCNET = {"blocks": 2, "kernel_size": 5, "channels": (8,)}


def user_environment() -> dict[str, str]:
    """This process's environment as a user's shell would have it: no XRDCORE_* plugin selection
    or strictness, but the session's own cache folder (conftest.py) kept."""
    return {k: v for k, v in os.environ.items() if not k.startswith("XRDCORE_") or k == "XRDCORE_CACHE_DIR"}


class Stopped(BaseException):
    """Stands for a kill after one write (a BaseException: nothing in xrdcore may catch it)."""


def stopped_after_write(monkeypatch, n: int, action) -> bool:
    """Run ``action()`` with the ``n``-th file commit (``os.replace``: every atomic write;
    ``os.rename``: a chunk folder) as the last thing it does, as a kill right after it would; True
    if it was stopped, False if it finished with fewer commits."""
    real = {"replace": os.replace, "rename": os.rename}
    done = 0

    def committing(name):
        def commit(src, dst, *args, **kwargs):
            nonlocal done
            real[name](src, dst, *args, **kwargs)
            done += 1
            if done == n:
                raise Stopped(dst)
        return commit

    with monkeypatch.context() as patched:
        for name in real:
            patched.setattr(os, name, committing(name))
        try:
            action()
        except Stopped:
            return True
    return False


def visible_files(root: Path, timed: tuple[str, ...] = ("manifest.json", "report.json")) -> dict[str, bytes]:
    """Every file under ``root`` by relative path but hidden ones (locks, temporaries a kill left)
    and the ``timed`` records (which hold seconds)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in timed and not any(part.startswith(".") for part in p.relative_to(root).parts)}


#: keys that hold times, speeds or dates: the only things allowed to differ after a resume
TIMING = ("second", "per_s", "wall", "created", "date")


def without_timing(value):
    """A JSON value without its :data:`TIMING` keys, at any depth."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if not any(t in k for t in TIMING)}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def write_xy(path: Path, two_theta: np.ndarray, intensity: np.ndarray) -> Path:
    np.savetxt(path, np.column_stack([two_theta, intensity]), fmt="%.4f %.6g", header="2theta intensity")
    return path


@pytest.fixture(scope="session")
def tiny_run(mp20_cache, tmp_path_factory):
    """A finished run: a two-block RCNet with every hierarchy level, three epochs."""
    from xrdcore.train import InputSpec, TrainConfig, train

    config = TrainConfig("rcnet", hierarchy="multilevel", encoder_options=TINY_RCNET,
                         input=InputSpec(**TINY_INPUT), epochs=3, batch_size=8, warmup_epochs=1)
    out = tmp_path_factory.mktemp("runs") / "rcnet"
    train(config, mp20_cache, out, device="cpu", progress=False)
    return out


@pytest.fixture(scope="session")
def simulated(tiny_run, mp20_cache, tmp_path_factory):
    """The profile of the first training structure rendered with the run's peak shape on the default
    grid (0.01°, finer than the tiny run's, as a measurement would be), as an .xy file, and that
    structure's index in the cache."""
    from xrdcore.diffraction.grid import DEFAULT_GRID
    from xrdcore.diffraction.profile import PeakBatch, render
    from xrdcore.train import load_run

    spec = load_run(tiny_run)[1].input
    index = int(mp20_cache.indices("train")[0])
    fine = DEFAULT_GRID
    profile = render(PeakBatch.from_peak_lists([mp20_cache.peaks(index)]), fine, shape=spec.shape,
                     caglioti=spec.caglioti, eta=spec.eta)[0].numpy()
    return write_xy(tmp_path_factory.mktemp("predict") / "simulated.xy", fine.values, profile), index
