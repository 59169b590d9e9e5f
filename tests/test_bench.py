"""The benchmark harness on a real cache: the grid it finds, results.json/results.md/plots, mean ± std
over seeds, a run whose plugin raises, kill -9 then --resume, shards, and atomic result files."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import TINY_INPUT, stopped_after_write, without_timing
from xrdcore.bench.harness import BenchError, BenchSettings, find_combinations, run_bench
from xrdcore.crystal.hierarchy import LabelHierarchy
from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid
from xrdcore.hookspecs import hookimpl
from xrdcore.interfaces import Encoder, LossScheduler
from xrdcore.registry import Registry
from xrdcore.storage import TEMPORARY_SUFFIX

FAST = {"epochs": 2, "batch_size": 8, "warmup_epochs": 1.0}


class ImageEncoder(Encoder):
    """An encoder of 2-D images: no peak cache can feed it."""

    input_kind = "images"

    def __init__(self):
        super().__init__()
        self.embed_dim = 4
        self.linear = torch.nn.Linear(1, 4)

    def forward(self, batch):
        return self.linear(batch.mean(dim=(1, 2, 3, 4))[:, None])


class FlakyEncoder(Encoder):
    """A profile encoder that raises on its third training batch, like a buggy plugin."""

    input_kind = "profile"

    def __init__(self, grid: AngleGrid = DEFAULT_GRID):
        super().__init__()
        self.embed_dim, self.calls = 4, 0
        self.linear = torch.nn.Linear(grid.length, 4)

    def forward(self, batch):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("flaky plugin exploded")
        return self.linear(batch)


class PeakEncoder(Encoder):
    """Peak lists → intensity-weighted sums of sin/cos features of 2θ (takes the grid for its range)."""

    input_kind = "peaks"

    def __init__(self, grid: AngleGrid = DEFAULT_GRID):
        super().__init__()
        self.embed_dim, self.grid = 8, grid
        self.linear = torch.nn.Linear(8, 8)

    def forward(self, batch):
        angle = torch.deg2rad(batch["two_theta"])[..., None] * torch.arange(1, 5, device=batch["two_theta"].device)
        weight = (batch["intensity"] * batch["mask"])[..., None]
        return self.linear(torch.cat([(angle.sin() * weight).sum(1), (angle.cos() * weight).sum(1)], dim=1))


class Plugin:
    @hookimpl
    def register_encoders(self, register):
        register("images-only", ImageEncoder)
        register("peak-sums", PeakEncoder)
        register("flaky", FlakyEncoder)

    @hookimpl
    def register_label_hierarchies(self, register):
        register("no-space-group", lambda: LabelHierarchy(("crystal_system",)))


@pytest.fixture
def registry():
    registry = Registry(entry_points=[])
    registry.add_plugin("acme", Plugin(), version="9.9")
    return registry


def test_the_grid_holds_every_valid_combination_and_says_why_others_are_skipped(registry):
    valid, skipped = find_combinations(BenchSettings(), registry)
    ids = {c.id for c in valid}
    assert {"rcnet__flat__sum", "mlp__multilevel__sum", "flaky__multilevel__sum"} <= ids
    reasons = {(s["encoder"], s["hierarchy"], s["scheduler"]): s["reason"] for s in skipped}
    assert "'images' inputs" in reasons[("images-only", "flat", "sum")]
    assert "no space_group level" in reasons[("rcnet", "no-space-group", "sum")]
    assert "one-level hierarchy" in reasons[("rcnet", "flat", "weighted")]
    assert "same training as 'sum'" in reasons[("rcnet", "multilevel", "weighted")]
    assert len(valid) + len(skipped) == len(registry.names("encoder")) * len(registry.names("label_hierarchy")) \
        * len(registry.names("loss_scheduler"))
    only_builtins, _ = find_combinations(BenchSettings(plugins="xrdcore"), registry)
    assert not any(c.encoder == "flaky" for c in only_builtins)
    with pytest.raises(KeyError, match="Did you mean 'rcnet'"):
        find_combinations(BenchSettings(encoders="rcnett"), registry)
    with pytest.raises(BenchError, match="unknown plugins: nope"):
        find_combinations(BenchSettings(plugins="nope"), registry)


def test_encoders_on_peak_lists_get_peak_inputs_with_their_range(mp20_cache, tmp_path, registry):
    settings = BenchSettings(encoders="peak-sums", hierarchies="flat", schedulers="sum", quick=True,
                             training=FAST, input=TINY_INPUT)
    results = run_bench(mp20_cache, tmp_path, settings, device="cpu", progress=False, registry=registry)
    assert [r["status"] for r in results["runs"]] == ["complete"]
    record = json.loads((tmp_path / "runs" / "peak-sums__flat__sum" / "seed0" / "config.json").read_text())
    assert record["config"]["input"]["kind"] == "peaks"
    assert record["encoder"]["kwargs"] == {"grid": {"start": 5.0, "stop": 90.0, "step": 0.05, "axis": "log_d"}}
    assert "peaks on 5-90° at 0.05°" in (tmp_path / "results.md").read_text()


def test_a_bench_writes_results_with_seeds_a_leaderboard_and_plots_and_survives_a_failing_plugin(
        mp20_cache, tmp_path, registry):
    settings = BenchSettings(encoders="nopoolcnn,flaky", hierarchies="flat,multilevel", schedulers="sum",
                             seeds=(0, 1), quick=True, training=FAST, input=TINY_INPUT)
    results = run_bench(mp20_cache, tmp_path, settings, device="cpu", progress=False, registry=registry)
    runs = {r["id"]: r for r in results["runs"]}
    assert set(runs) == {"flaky__flat__sum", "flaky__multilevel__sum", "nopoolcnn__flat__sum",
                         "nopoolcnn__multilevel__sum"}
    assert runs["flaky__flat__sum"]["status"] == "failed"
    assert "flaky plugin exploded" in runs["flaky__flat__sum"]["seeds"]["0"]["error"]
    good = runs["nopoolcnn__multilevel__sum"]
    assert good["status"] == "complete"
    top1 = [json.loads((tmp_path / "runs" / good["id"] / f"seed{s}" / "metrics.json").read_text())["test"]["top1"]
            for s in (0, 1)]
    assert good["metrics"]["top1"]["values"] == top1
    assert good["metrics"]["top1"]["mean"] == pytest.approx(sum(top1) / 2)
    assert good["metrics"]["top1"]["std"] is not None and good["samples_per_s"]["mean"] > 0
    assert "level_accuracy.crystal_system" in good["metrics"] and "head_accuracy.point_group" in good["metrics"]
    env = results["environment"]
    assert env["plugins"] == {"acme": "9.9"} and env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert results["data"]["split_hash"] == mp20_cache.manifest["split_hash"] and results["seeds"] == [0, 1]
    assert 0 <= results["ceiling"]["extinction_class_any_setting"] <= 1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["runs"] == json.loads(json.dumps(results["runs"]))
    markdown = (tmp_path / "results.md").read_text()
    assert "extinction-class ceiling" in markdown and "## Failed runs" in markdown
    assert results["training"]["epochs"] == 2 and results["training"]["inputs"][0]["two_theta"] == [5.0, 90.0, 0.05]
    assert "2 epochs (1 warm-up, cosine), batch 8" in markdown and "at 0.05°" in markdown
    assert "flaky plugin exploded" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| ") and "nopoolcnn" in line]
    assert len(table) == 4 and sum("+ neighbour head" in line for line in table) == 2
    # the same runs with the nearest-neighbour head on their embedding: a row each, chosen on val
    heads = {r["id"]: r for r in results["neighbour_head"]}
    assert set(heads) == {"nopoolcnn__flat__sum+neighbours", "nopoolcnn__multilevel__sum+neighbours"}
    head = heads["nopoolcnn__multilevel__sum+neighbours"]
    retrieval = [json.loads((tmp_path / "runs" / good["id"] / f"seed{s}" / "metrics.json").read_text())["retrieval"]
                 for s in (0, 1)]
    assert head["metrics"]["top1"]["values"] == [r["test"]["top1"] for r in retrieval]
    assert head["neighbours"] == [r["neighbours"] for r in retrieval] and 0 <= min(head["weight"]) <= 1
    assert any(e["b"].endswith("+ neighbour head") or e["a"].endswith("+ neighbour head")
               for e in results["significance"])
    for name in ("level_accuracy.png", "confusion.png", "training_curves.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # baselines without learning, intervals, paired tests and the "learned nothing" flag
    true = mp20_cache.space_groups[mp20_cache.indices("test")]
    train_sg = mp20_cache.space_groups[mp20_cache.indices("train")]
    most_common = np.bincount(train_sg).argmax()
    baselines = results["baselines"]
    assert baselines["majority"]["top1"] == pytest.approx(np.mean(true == most_common))
    assert baselines["true"] == true.tolist() and 0 <= baselines["nearest_neighbour"]["top1"] <= 1
    low, high = good["top1_ci95"]
    assert low <= good["metrics"]["top1"]["mean"] <= high and isinstance(good["learned"], bool)
    assert {e["b"] for e in results["significance"]} >= {"nearest_neighbour", "majority"}
    assert all(0 < e["p"] <= 1 for e in results["significance"])
    assert "majority class (no learning)" in markdown and "nearest-neighbour lookup" in markdown


def test_an_occupied_directory_needs_resume_and_other_settings_are_refused(mp20_cache, tmp_path):
    settings = BenchSettings(encoders="mlp", hierarchies="flat", quick=True, training={**FAST, "epochs": 1},
                             input=TINY_INPUT)
    run_bench(mp20_cache, tmp_path, settings, device="cpu", progress=False)
    with pytest.raises(BenchError, match="add --resume"):
        run_bench(mp20_cache, tmp_path, settings, device="cpu", progress=False)
    with pytest.raises(BenchError, match="other settings"):
        run_bench(mp20_cache, tmp_path, BenchSettings(encoders="rcnet", quick=True), device="cpu", progress=False,
                  resume=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(BenchError, match="not a benchmark directory"):
        run_bench(mp20_cache, tmp_path / "mine", settings, device="cpu", progress=False)


def test_kill_9_then_resume_keeps_finished_runs_and_finishes_the_grid(mp20_cache, tmp_path):
    out = tmp_path / "bench"
    command = [sys.executable, "-m", "xrdcore", "bench", "--dataset", str(mp20_cache.path), "--quick",
               "--encoders", "mlp,nopoolcnn", "--hierarchies", "flat,multilevel", "--schedulers", "sum",
               "--epochs", "2", "--batch-size", "8", "--two-theta", "5", "90", "0.05", "--device", "cpu",
               "--quiet", "--out", str(out)]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and child.poll() is None and len(list(out.glob("runs/*/seed0/metrics.json"))) < 1:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    finished = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("runs/*/seed0/metrics.json")}
    assert 1 <= len(finished) < 4, "the bench should be killed in the middle"
    if (out / "results.json").exists():  # a kill never leaves a half-written results file
        json.loads((out / "results.json").read_text())
    done = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for path, (mtime, content) in finished.items():
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == content
    results = json.loads((out / "results.json").read_text())
    assert [r["status"] for r in results["runs"]] == ["complete"] * 4
    assert "results in" in done.stdout


def test_a_bench_stopped_after_any_of_its_writes_resumes_to_the_same_results(mp20_cache, tmp_path, monkeypatch):
    """Each file a benchmark commits in turn is the last before a stop; ``resume`` then ends with
    the uninterrupted results: every JSON file but its times, the table but its samples/s column."""
    import re

    def outcome(out: Path) -> dict[str, Any]:
        files = {}
        for path in sorted(out.rglob("*")):
            name = str(path.relative_to(out))
            if path.suffix == ".json" and not name.startswith("."):
                files[name] = without_timing(json.loads(path.read_text()))
        files["results.md"] = re.sub(r"\| [\d,]+ \|$", "|", (out / "results.md").read_text(), flags=re.M)
        return files

    settings = BenchSettings(encoders="mlp", hierarchies="flat", quick=True, training={**FAST, "epochs": 1},
                             input=TINY_INPUT)
    run_bench(mp20_cache, tmp_path / "reference", settings, device="cpu", progress=False)
    expected = outcome(tmp_path / "reference")
    n = 1
    while stopped_after_write(monkeypatch, n, lambda: run_bench(mp20_cache, tmp_path / f"stopped-{n}", settings,
                                                                device="cpu", progress=False, resume=True)):
        run_bench(mp20_cache, tmp_path / f"stopped-{n}", settings, device="cpu", progress=False, resume=True)
        assert outcome(tmp_path / f"stopped-{n}") == expected, f"stopped after write {n}"
        n += 1
    assert n > 6  # run config, checkpoints, metrics, results.json and .md


def test_shards_split_the_grid_and_together_give_all_runs(mp20_cache, tmp_path):
    settings = BenchSettings(encoders="mlp,nopoolcnn", hierarchies="flat", quick=True,
                             training={**FAST, "epochs": 1}, input=TINY_INPUT)
    first = run_bench(mp20_cache, tmp_path, settings, device="cpu", progress=False, shard="0/2")
    assert [r["status"] for r in first["runs"]] == ["complete", "pending"]
    final = run_bench(mp20_cache, tmp_path, settings, device="cpu", progress=False, shard="1/2", resume=True)
    assert [r["status"] for r in final["runs"]] == ["complete", "complete"]
    with pytest.raises(ValueError, match="shard must be 'k/n'"):
        run_bench(mp20_cache, tmp_path, settings, device="cpu", progress=False, shard="2/2", resume=True)


def test_a_disk_full_during_the_results_write_leaves_the_previous_file_whole(mp20_cache, tmp_path, monkeypatch):
    settings = BenchSettings(encoders="mlp", hierarchies="flat", quick=True, training={**FAST, "epochs": 1},
                             input=TINY_INPUT)
    run_bench(mp20_cache, tmp_path, settings, device="cpu", progress=False)
    before = (tmp_path / "results.json").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="(?i)no space left"):
        run_bench(mp20_cache, tmp_path, settings, device="cpu", progress=False, resume=True)
    monkeypatch.undo()
    assert (tmp_path / "results.json").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(TEMPORARY_SUFFIX)]


class ScaledEncoder(Encoder):
    """A linear profile encoder with a scale that must not decay (named by no_weight_decay)."""

    input_kind = "profile"

    def __init__(self, grid: AngleGrid = DEFAULT_GRID):
        super().__init__()
        self.embed_dim = 4
        self.linear = torch.nn.Linear(grid.length, 4)
        self.scale = torch.nn.Parameter(torch.ones(4))

    def forward(self, batch):
        return self.linear(batch) * self.scale

    def no_weight_decay(self):
        return ["scale"]


class ScaledPlugin:
    @hookimpl
    def register_encoders(self, register):
        register("scaled", ScaledEncoder)


def test_variants_run_as_extra_encoders_and_no_weight_decay_is_honoured(mp20_cache, tmp_path):
    from safetensors import safe_open

    from xrdcore.cli import main

    assert main(["bench", "--dataset", str(mp20_cache.path), "--encoders", "mlp", "--hierarchies", "flat",
                 "--variant", "mlp-small=xrdcore:mlp,hidden=[16,8],dropout=0.0", "--quick", "--epochs", "1",
                 "--two-theta", "5", "90", "0.05", "--device", "cpu", "--quiet", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted(r["encoder"] for r in results["runs"]) == ["mlp", "mlp-small"]
    record = json.loads((tmp_path / "runs" / "mlp-small__flat__sum" / "seed0" / "config.json").read_text())
    assert record["config"]["encoder_options"] == {"hidden": [16, 8], "dropout": 0.0}
    assert record["encoder"]["embed_dim"] == 8

    registry = Registry(entry_points=[])
    registry.add_plugin("scaled", ScaledPlugin())
    from xrdcore.train import InputSpec, TrainConfig, train

    config = TrainConfig("scaled", input=InputSpec(**TINY_INPUT), epochs=1, batch_size=8, weight_decay=0.5)
    train(config, mp20_cache, tmp_path / "scaled", device="cpu", progress=False, registry=registry)
    with safe_open(str(tmp_path / "scaled" / "checkpoints" / "last.safetensors"), "pt") as handle:
        groups = json.loads(handle.metadata()["state"])["optimizer_groups"]
    assert [(g["weight_decay"], len(g["params"])) for g in groups] == [(0.5, 4), (0.0, 1)]


class AlternatingScheduler(LossScheduler):
    """Weights that change every step, as an adaptive scheduler's do."""

    def __init__(self):
        self.step = 0

    def combine(self, losses, shared=None, hierarchy=None):
        self.step += 1
        first = 0.25 if self.step % 2 else 0.75
        weights = {name: (first if i == 0 else 1.0) for i, name in enumerate(losses)}
        return sum(weights[n] * loss for n, loss in losses.items()), weights


class AlternatingPlugin:
    @hookimpl
    def register_loss_schedulers(self, register):
        register("alternating", AlternatingScheduler)


def test_adaptive_loss_weights_are_logged_for_every_step(mp20_cache, tmp_path):
    from xrdcore.train import InputSpec, TrainConfig, train

    registry = Registry(entry_points=[])
    registry.add_plugin("alternating", AlternatingPlugin())
    config = TrainConfig("mlp", hierarchy="multilevel", scheduler="alternating", encoder_options={"hidden": (8,)},
                         input=InputSpec(**TINY_INPUT), epochs=1, batch_size=8)
    history = train(config, mp20_cache, tmp_path, device="cpu", progress=False, registry=registry)["history"]
    steps = history[0]["loss_weights_per_step"]
    assert steps["space_group"] == [0.25, 0.75, 0.25, 0.75, 0.25][:len(steps["space_group"])]
    assert len(steps["space_group"]) == 5 and set(steps["crystal_system"]) == {1.0}
    assert history[0]["loss_weights"]["space_group"] == pytest.approx(sum(steps["space_group"]) / 5)
