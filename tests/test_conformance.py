"""The test kit (xrdcore.testing) over every installed component of every kind, its packaged data
and fixtures, and components broken on purpose: each must fail the check that is about its defect,
with a message that names the component, the check and what is wrong."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_entry_points import PARENT_SITE, dist_infos, run  # the suite's helpers for child venvs
from torch import nn

import xrdcore
import xrdcore.testing as kit
from xrdcore.builtin.pxrd import PXRDSimulator
from xrdcore.builtin.schedulers import SumScheduler
from xrdcore.crystal import LabelHierarchy
from xrdcore.data.labels import space_group_number
from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid
from xrdcore.diffraction.pxrd import peak_lists
from xrdcore.interfaces import Encoder
from xrdcore.testing import data

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "xrd-example"


# every installed component ---------------------------------------------------------------------
@pytest.mark.parametrize("name", xrdcore.list_encoders())
def test_every_encoder_conforms(name):
    report = kit.check_encoder(name)
    assert {"gradients", "safetensors round trip", "learning", "training flat × sum"} <= set(report.passed)
    assert set(report.skipped) <= {"device cuda"}


@pytest.mark.parametrize("name", xrdcore.list_hierarchies())
def test_every_hierarchy_conforms(name):
    report = kit.check_hierarchy(name)
    assert {f"trains with {s}" for s in xrdcore.list_schedulers()} <= set(report.passed)


@pytest.mark.parametrize("name", xrdcore.list_schedulers())
def test_every_scheduler_conforms(name):
    report = kit.check_scheduler(name)
    assert {f"with {h}" for h in xrdcore.list_hierarchies()} <= set(report.passed)


@pytest.mark.parametrize("name", xrdcore.list_simulators())
def test_every_simulator_conforms(name):
    report = kit.check_simulator(name)
    assert "one per structure, in order" in report.passed


def test_the_profile_simulator_puts_bragg_peaks_where_expected():
    assert "Bragg peaks" in kit.check_simulator("pxrd").passed


@pytest.mark.slow
@pytest.mark.parametrize("name", xrdcore.list_generators())
def test_every_generator_conforms(name, xrd_cache):
    report = kit.check_generator(name, cache=xrd_cache)
    assert {"fit", "load", "sample", "rank"} <= set(report.passed)


# the packaged data -----------------------------------------------------------------------------
def test_packaged_labels_are_spglib_space_groups():
    structures = data.structures()
    assert len(structures) == len(data.ids()) == 46 and len(set(data.space_groups())) == 31
    assert [space_group_number(s) for s in structures] == data.space_groups().tolist()


def test_packaged_peak_lists_are_what_the_simulator_gives():
    fresh_lists = peak_lists(data.structures(), **data.PEAK_SETTINGS)
    for stored, fresh in zip(data.peak_lists(), fresh_lists, strict=True):
        assert len(stored) == len(fresh)
        np.testing.assert_allclose(stored.two_theta, fresh.two_theta, rtol=1e-6)
        np.testing.assert_allclose(stored.intensity, fresh.intensity, rtol=1e-5, atol=1e-4)
        assert (stored.hkl == fresh.hkl).all() and (stored.multiplicity == fresh.multiplicity).all()
        assert (stored.rotations == fresh.rotations).all() and stored.wavelength == fresh.wavelength


def test_fixtures_give_the_packaged_data(xrd_structures, xrd_space_groups, xrd_peaks, xrd_cache):
    assert len(xrd_structures) == len(xrd_space_groups) == len(xrd_peaks) == len(xrd_cache) == 46
    assert sorted(xrd_cache.space_groups.tolist()) == sorted(xrd_space_groups.tolist())
    assert xrd_structures[0].composition.reduced_formula == "Hf(AlNi4)3" and len(xrd_peaks[0]) > 10


def test_the_pytest_plugin_loads_without_torch():
    """Every pytest run in an environment with xrdcore loads it (entry point pytest11)."""
    code = ("import sys, xrdcore.testing.plugin; "
            "print(sorted(m for m in ('torch', 'pymatgen') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded == "[]\n"


@pytest.mark.slow
def test_the_data_is_small_and_lands_in_the_wheel(tmp_path):
    """Built from a copy of the sources, so the repository gets no build/ or egg-info."""
    files = sorted(data.FOLDER.iterdir())
    assert sum(f.stat().st_size for f in files) < 300_000
    source = tmp_path / "src"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (source / name).parent.mkdir(exist_ok=True)
        (source / name).write_bytes((ROOT / name).read_bytes())
    shutil.copytree(ROOT / "xrdcore", source / "xrdcore", ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--no-index", "--quiet", "-w", str(tmp_path / "dist"), str(source)],
                           check=False, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("xrdcore-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert {f"xrdcore/testing/mp20/{f.name}" for f in files} <= names
    assert "[pytest11]\nxrdcore = xrdcore.testing.plugin" in entry_points


# components broken on purpose: the kit must catch each ---------------------------------------
class PooledEncoder(Encoder):
    """A sound profile encoder (the control): convolution, adaptive pooling, projection."""

    input_kind = "profile"

    def __init__(self, grid: AngleGrid = DEFAULT_GRID, embed_dim: int = 8):
        super().__init__()
        self.embed_dim = embed_dim
        self.conv = nn.Conv1d(1, 4, kernel_size=9, stride=4)
        self.project = nn.Linear(4 * 8, embed_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"expected (B, L) profiles, got shape {tuple(x.shape)}")
        return F.adaptive_avg_pool1d(torch.relu(self.conv(x[:, None])), 8).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(x))


class UnusedParameter(PooledEncoder):
    """A layer built and never called."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.gate = nn.Linear(8, 8)


class WrongWidth(PooledEncoder):
    """Declares embed_dim 8, returns 7 columns."""

    def forward(self, x):
        return super().forward(x)[:, :-1]


class Noisy(PooledEncoder):
    """Adds noise in eval mode too."""

    def forward(self, x):
        return super().forward(x) + 0.01 * torch.randn(len(x), self.embed_dim)


class NegativeRoot(PooledEncoder):
    """The square root of a value that can be negative."""

    def forward(self, x):
        return torch.sqrt(super().forward(x) - 1.0)


class Constant(PooledEncoder):
    """Reads its input's shape only."""

    def forward(self, x):
        return self.project(self.features(x) * 0 + 1)


class UnseededInit(PooledEncoder):
    """Initialises a layer from numpy's global random state, which torch.manual_seed does not set."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with torch.no_grad():
            self.project.weight.copy_(torch.from_numpy(np.random.randn(*self.project.weight.shape)))


class AnyShape(PooledEncoder):
    """Flattens whatever it gets, so a (B, L, 1) batch passes silently."""

    def features(self, x):
        return super().features(x.reshape(len(x), -1))


class UnsavedProjection(PooledEncoder):
    """A random projection kept in a non-persistent buffer: checkpoints lose it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.register_buffer("mix", torch.randn(self.embed_dim, self.embed_dim), persistent=False)

    def forward(self, x):
        return super().forward(x) @ self.mix


class PlainTensorAttribute(PooledEncoder):
    """A tensor kept as a plain attribute: .to(device) does not move it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scale = torch.ones(self.embed_dim)

    def forward(self, x):
        return super().forward(x) * self.scale


def test_a_sound_encoder_class_passes_as_a_plugin_component_would():
    report = kit.check_encoder(PooledEncoder)
    assert report.component == f"encoder {__name__}.PooledEncoder"
    assert "training multilevel × mgda" in report.passed and "learning" in report.passed


@pytest.mark.parametrize("broken, check, detail", [
    (UnusedParameter, "gradients", "no gradient reaches gate.weight, gate.bias"),
    (WrongWidth, "forward", r"output shape \(4, 7\), expected \(B, embed_dim\) = \(4, 8\)"),
    (Noisy, "eval determinism", "two forward passes in eval mode differ"),
    (NegativeRoot, "forward", r"\d+ non-finite outputs"),
    (Constant, "depends on its input", "the same embedding for 4 different real patterns"),
    (UnseededInit, "seed determinism", r"two builds after torch.manual_seed\(1\) differ in project.weight"),
    (AnyShape, "bad batch", r"accepted a batch of shape \(4, 850, 1\) without a ValueError"),
    (UnsavedProjection, "safetensors round trip", "the reloaded encoder gives other outputs"),
])
def test_a_broken_encoder_fails_the_check_about_its_defect(broken, check, detail):
    label = f"{broken.__module__}.{broken.__name__}"
    with pytest.raises(AssertionError, match=f"^encoder {label}: {check}: {detail}"):
        kit.check_encoder(broken)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_tensor_left_behind_by_to_fails_the_device_check():
    with pytest.raises(AssertionError, match="PlainTensorAttribute: device cuda: raised RuntimeError"):
        kit.check_encoder(PlainTensorAttribute)


class DetachedSum(SumScheduler):
    """Sums the losses as numbers: nothing back-propagates."""

    def combine(self, losses, shared=None, hierarchy=None):
        total, weights = super().combine(losses, shared, hierarchy)
        return total.detach(), weights


class FirstLevelWeight(SumScheduler):
    """Reports the weight of the first level only."""

    def combine(self, losses, shared=None, hierarchy=None):
        return super().combine(losses, shared, hierarchy)[0], {"space_group": 1.0}


class ZeroVariance(SumScheduler):
    """Uncertainty weighting (Kendall et al. 2018) with its log-variances started at log 0."""

    def combine(self, losses, shared=None, hierarchy=None):
        log_variance = torch.log(torch.zeros(()))
        total = sum(torch.exp(-log_variance) * loss + log_variance for loss in losses.values())
        return total, {name: float(torch.exp(-log_variance)) for name in losses}


@pytest.mark.parametrize("broken, detail", [
    (DetachedSum, "step 1: the loss does not back-propagate"),
    (FirstLevelWeight, r"step 1: weights for \['space_group'\], levels are \['crystal_system', 'sp"),
    (ZeroVariance, "step 1: loss nan"),
])
def test_a_broken_scheduler_fails_with_a_two_level_hierarchy(broken, detail):
    label = f"{broken.__module__}.{broken.__name__}"
    with pytest.raises(AssertionError, match=f"^loss scheduler {label}: with two levels: {detail}"):
        kit.check_scheduler(broken)


class OneBased(LabelHierarchy):
    """Space groups 1-230 used as class indices 1-230 of a 230-class level."""

    def targets(self, space_groups):
        targets = super().targets(space_groups)
        return {name: t + 1 if name == "space_group" else t for name, t in targets.items()}


def test_a_broken_hierarchy_fails_the_check_about_its_defect():
    with pytest.raises(AssertionError,
                       match=r"<lambda>: space_group level: levels \('crystal_system',\) have no space_gr"):
        kit.check_hierarchy(lambda: LabelHierarchy(("crystal_system",)))
    with pytest.raises(AssertionError,
                       match=r"OneBased: targets: space_group: targets outside 0-229: \[230\]"):
        kit.check_hierarchy(OneBased)


class ThetaForTwoTheta(PXRDSimulator):
    """Draws every peak at θ instead of 2θ."""

    def peaks(self, structures):
        return [dataclasses.replace(p, two_theta=p.two_theta / 2) for p in super().peaks(structures)]


def test_a_simulator_with_peaks_in_the_wrong_place_fails_the_bragg_check():
    expected = (r"ThetaForTwoTheta: Bragg peaks: the strongest peak is at 18\.\d\d°; Bragg's law puts "
                r"\(2, 2, 0\), the strongest reflection of face-centred cubic NdInRh2, at 37\.4\d°")
    with pytest.raises(AssertionError, match=expected):
        kit.check_simulator(ThetaForTwoTheta)


# a new plugin, built from the example --------------------------------------------------------
@pytest.fixture(scope="module")
def new_plugin(tmp_path_factory) -> tuple[Path, Path]:
    """The example plugin copied unchanged and pip-installed into a venv of its own, which sees the
    dev venv's packages (xrdcore, torch, pytest) as in test_entry_points.py: (python, its sources)."""
    root = tmp_path_factory.mktemp("new-plugin")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    found = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root)
    site = Path(found.stdout.strip())
    (site / "_xrdcore_parent_site.pth").write_text(f"import site; site.addsitedir({str(PARENT_SITE)!r})\n")
    source = root / "xrd-example"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    installed = run(python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "--disable-pip-version-check", str(source), cwd=root)
    assert installed.returncode == 0, installed.stderr
    assert dist_infos(site, "xrd-example") and not dist_infos(PARENT_SITE, "xrd-example")
    return python, source


@pytest.mark.slow
def test_a_plugin_built_from_the_example_passes_its_three_line_tests(new_plugin):
    python, source = new_plugin
    assert len((source / "tests" / "test_example.py").read_text().splitlines()) == 3
    result = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=source)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout


@pytest.mark.slow
def test_a_plugin_built_from_the_example_is_benchmarked(new_plugin, xrd_cache, tmp_path):
    python, _ = new_plugin
    out = tmp_path / "bench"
    result = run(python, "-m", "xrdcore", "bench", "--dataset", str(xrd_cache.path), "--quick",
                 "--encoders", "example-conv", "--hierarchies", "flat,lattice", "--schedulers", "sum",
                 "--epochs", "1", "--device", "cpu", "--quiet", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert sorted((r["encoder"], r["hierarchy"], r["status"]) for r in runs) == [
        ("example-conv", "flat", "complete"), ("example-conv", "lattice", "complete")]
    record = json.loads((out / "runs" / "example-conv__flat__sum" / "seed0" / "config.json").read_text())
    assert record["encoder"]["qualified_name"] == "xrd-example:example-conv"
    assert record["encoder"]["embed_dim"] == 16  # its registered tiny variant
