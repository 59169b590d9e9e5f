"""The GPU script's CPU dry run (benchmarks/gpu/run.sh --dry-run), in an environment shaped like the
lent GPU machine's, so that the one call there cannot fail on a typo or a missing package.

That machine has torch, numpy, pluggy, e3nn and scipy but not pymatgen, spglib, pyxtal, gemmi or
core-mof. The dry run's Python is this venv's with a ``sitecustomize`` that hides those packages
(and the other libraries only they pull in) from the venv's site-packages: an import of one finds
only what lies outside it, as in a venv where they were never installed (``find_spec`` returns
None, ``import`` raises ModuleNotFoundError). spglib reaches the run the way it reaches the GPU
machine: as a wheel in the carried folder that run.sh installs into a folder of its own (here the
installed spglib repacked into a wheel for this Python, since a download needs the network).

The data: 200 real structures (pymatgen's AFLOW prototypes) built and exported here, where pymatgen
is installed, then imported by the run, where it is not.
"""

from __future__ import annotations

import importlib.metadata
import json
import lzma
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_SH = ROOT / "benchmarks" / "gpu" / "run.sh"
#: absent from the GPU image (KINDS.md's package list): the science stack's pymatgen, spglib, pyxtal,
#: gemmi, core-mof, and what only they need
HIDDEN = ("pymatgen", "spglib", "pyxtal", "gemmi", "CoRE_MOF", "ase", "monty", "pyocse", "ruamel", "uncertainties",
          "palettable", "plotly", "bibtexparser", "orjson", "vasprun", "xmltodict", "lazy_importer")
SITECUSTOMIZE = '''
"""Hides HIDDEN from the venv's site-packages (tests/test_gpu_script.py says why)."""
import importlib.machinery
import sys
import sysconfig

HIDDEN = set({hidden!r})
_VENV = {{sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}}


class _WithoutHidden(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if path is None and name.split(".")[0] in HIDDEN:
            path = [p for p in sys.path if p not in _VENV]
        return super().find_spec(name, path, target)


sys.meta_path[:] = [_WithoutHidden if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
'''


def _strict(text: str):
    """JSON whose numbers are all finite (NaN and Infinity are refused)."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-finite number {c} in the results"))


def _numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def _wheel_of_installed(name: str, folder: Path) -> Path:
    """The installed distribution ``name`` as the wheel it came from (files, dist-info and tag)."""
    dist = importlib.metadata.distribution(name)
    base = Path(dist.locate_file(""))
    tag = next(line.split(":", 1)[1].strip() for line in dist.read_text("WHEEL").splitlines()
               if line.startswith("Tag:"))
    wheel = folder / f"{name}-{dist.version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in dist.files:
            if file.suffix != ".pyc" and (base / file).is_file() and ".." not in file.parts:
                archive.write(base / file, str(file))
    return wheel


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The carried folder of a dry run (a 200-structure export and the spglib wheel), the cache it
    was exported from, and the hiding sitecustomize."""
    from xrdcore.data.cache import BuildSpec, build_cache, resolve_dataset
    from xrdcore.data.export import export_cache

    root = tmp_path_factory.mktemp("gpu")
    name, options = resolve_dataset("prototypes", {})
    cache = build_cache(root / "cache", BuildSpec(name, options, limit=200), progress=False)
    carry = root / "carry"
    (carry / "wheels").mkdir(parents=True)
    export_cache(cache.path, carry / "coremof.xrdexport")
    _wheel_of_installed("spglib", carry / "wheels")
    (root / "hide").mkdir()
    (root / "hide" / "sitecustomize.py").write_text(SITECUSTOMIZE.format(hidden=HIDDEN))
    return {"root": root, "carry": carry, "cache": cache, "hide": root / "hide"}


def _dry_run(prepared, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(prepared["hide"]),
                   "GPU_CARRY": str(prepared["carry"]), "GPU_SITE": str(prepared["root"] / "site"), **(env or {})}
    environment.pop("OUT", None)
    export = ["--export", str(prepared["carry"] / "coremof.xrdexport")]
    done = subprocess.run(["bash", str(RUN_SH), "--dry-run", *export, *args], env=environment, capture_output=True, text=True,
                          timeout=300, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _files(out: Path) -> dict[str, dict]:
    names = ("stages", "mamba-scan", "encoder-throughput", "simulator", "coremof-reference")
    return {name: _strict((out / f"{name}-cpu-dryrun.json").read_text()) for name in names}


def test_the_hiding_is_what_a_venv_without_those_packages_does(prepared):
    code = ("import importlib.util, json, torch, numpy, pluggy, xrdcore; "
            "print(json.dumps([importlib.util.find_spec(n) is None for n in ('pymatgen', 'spglib', 'pyxtal')]))")
    done = subprocess.run([sys.executable, "-c", code + "; import pymatgen"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(prepared["hide"])}, timeout=60, check=False)
    assert json.loads(done.stdout) == [True, True, True]
    assert "ModuleNotFoundError: No module named 'pymatgen'" in done.stderr


def test_dry_run_writes_every_result_and_resumes_on_a_fresh_machine(prepared):
    first, second = prepared["root"] / "first", prepared["root"] / "second"
    _dry_run(prepared, "--out", str(first), "--work", str(prepared["root"] / "work1"), "--max-runs", "4")
    results = _files(first)
    stages = results["stages"]
    assert {k: v["status"] for k, v in stages["stages"].items()} == {
        "import": "complete", "scan": "complete", "throughput": "complete", "simulator": "skipped",
        "leaderboard": "partial"}
    # spglib came from the carried wheel, and pymatgen was truly absent (the simulator says so)
    assert any(a.startswith("wheel spglib-") for a in stages["install"]["installed"])
    assert "No module named 'pymatgen'" in results["simulator"]["reason"]
    assert stages["data"]["structures"] == 200 and stages["environment"]["device"] == "cpu"
    assert (first / "stages-cpu-dryrun.log").read_text().count("[leaderboard] partial") == 1
    for name, data in results.items():
        assert all(math.isfinite(x) for x in _numbers(data)), name
        if name != "stages":
            assert data["environment"]["torch"] and data["mode"] == "cpu-dryrun"

    scan = results["mamba-scan"]
    assert {r["method"] for r in scan["runs"]} == {"loop", "chunked"} and "kernel" in scan["skipped"]
    # the fast method at every size first, the loop last (a budget cut costs loop rows only)
    assert [(r["method"], r["batch"]) for r in scan["runs"]] == [("chunked", 1), ("chunked", 2), ("loop", 1),
                                                                  ("loop", 2)]
    assert all(r["median_s"] > 0 for r in scan["runs"])
    assert scan["comparison"]["batch 2"]["speedup_loop_over_chunked"] > 0
    assert max(max(e.values()) for k, e in scan["agreement"].items() if k != "what") < 1e-4

    rows = {r["encoder"]: r for r in results["encoder-throughput"]["encoders"]}
    trained = [r for r in rows.values() if "samples_per_s" in r]
    assert {"mlp", "cnn", "mamba"} <= {r["encoder"] for r in trained}
    assert all(r["samples_per_s"] > 0 and r["peak_memory_mb"] for r in trained)
    assert all("takes images" in r["skipped"] for r in rows.values() if "samples_per_s" not in r)

    board = results["coremof-reference"]
    assert board["status"] == "partial" and len(board["trained_this_call"]) == 4
    assert len({(r["encoder"], r["hierarchy"]) for r in board["leaderboard"]}) == 4
    assert board["baselines"]["majority"]["top1"] >= 0

    # a second call on a fresh machine: only the small resume file travels
    earlier = json.loads(lzma.decompress((first / "resume-cpu-dryrun.json.xz").read_bytes()))["runs"]
    assert set(earlier) == set(board["trained_this_call"])
    _dry_run(prepared, "--resume", str(first), "--out", str(second), "--work", str(prepared["root"] / "work2"))
    again = _files(second)
    assert {k: v["status"] for k, v in again["stages"]["stages"].items()} == {
        "import": "complete", "scan": "kept", "throughput": "kept", "simulator": "skipped", "leaderboard": "complete"}
    assert again["mamba-scan"] == scan
    board2 = again["coremof-reference"]
    assert sorted(board2["restored_from_earlier_calls"]) == sorted(board["trained_this_call"])
    assert not set(board2["trained_this_call"]) & set(board["trained_this_call"])
    planned = sum(len(seeds) for seeds in board2["planned"].values())
    assert len(board2["trained_this_call"]) + 4 == planned > len(board2["planned"])  # some rows got more seeds
    later = json.loads(lzma.decompress((second / "resume-cpu-dryrun.json.xz").read_bytes()))["runs"]
    assert set(later) == set(earlier) | set(board2["trained_this_call"])
    assert all(later[key] == earlier[key] for key in earlier)  # restored as they were, not trained again


def test_simulator_stage_where_pymatgen_and_structures_are_there(prepared):
    """Not the lent machines' case (no pymatgen there), but the stage must work where it can."""
    out = prepared["root"] / "simulator"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu" / "run.py"), "--dry-run", "--stages", "simulator",
                    "--structures-cache", str(prepared["cache"].path), "--out", str(out),
                    "--work", str(prepared["root"] / "work3")], check=True, capture_output=True, timeout=120,
                   env={**os.environ, "GPU_CARRY": str(prepared["carry"])})
    result = _strict((out / "simulator-cpu-dryrun.json").read_text())
    assert result["status"] == "complete" and result["structures"] == 8
    assert result["devices"]["cpu"]["patterns_per_s"] > 0 and "no CUDA" in result["cuda"]


@pytest.mark.slow
def test_install_step_on_a_bare_offline_python(tmp_path):
    """run.sh's installation on a Python that has never seen the project, as on a lent machine: a
    new venv with only pip and a setuptools (what the machine's image holds), nothing fetched."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    python = venv / "bin" / "python"
    setuptools = _wheel_of_installed("setuptools", tmp_path)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--upgrade", str(setuptools)],
                   check=True, capture_output=True, timeout=120)
    done = subprocess.run(["bash", str(RUN_SH), "--install-only", "--out", str(tmp_path / "out")], cwd=ROOT,
                          env={**os.environ, "PYTHON": str(python), "GPU_CARRY": str(tmp_path / "no-carry")},
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and "tree (editable)" in done.stdout, done.stdout + done.stderr
    code = ("import importlib.metadata as m, importlib.util as u, json; print(json.dumps([u.find_spec('xrdcore').origin, "
            "sorted(e.name for e in m.entry_points(group='xrdcore'))]))")  # no pluggy here: nothing imported
    source, plugins = json.loads(subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True,
                                                timeout=60).stdout)
    assert Path(source).is_relative_to(ROOT)
    assert plugins == sorted(p.parent.name for p in ROOT.glob("plugins/*/pyproject.toml"))
