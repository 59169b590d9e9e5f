"""The trainer on a real cache: it learns, selects on validation, is deterministic on CPU, resumes
after kill -9 to the same result, runs under torchrun with two gloo processes that agree, and its
checkpoints load without unpickling anything."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import TINY_INPUT, TINY_RCNET, stopped_after_write, visible_files

from xrdcore.cli import main
from xrdcore.train import (CheckpointError, InputSpec, RunError, TrainConfig, build_model, load_checkpoint,
                           load_run, save_checkpoint, train)
from xrdcore.storage import TEMPORARY_SUFFIX


def tiny_config(**changes):
    settings = dict(encoder="rcnet", hierarchy="multilevel", encoder_options=TINY_RCNET,
                    input=InputSpec(**TINY_INPUT), epochs=3, batch_size=8, warmup_epochs=1)
    return TrainConfig(**{**settings, **changes})


def test_a_run_learns_selects_on_validation_and_scores_test_once(tiny_run, mp20_cache):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    history = metrics["history"]
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    # the best epoch is the one with the best (val top-1, -val loss), and test is scored with it
    keys = [(h["val_top1"], -h["val_loss"]) for h in history]
    assert metrics["best_epoch"] == 1 + keys.index(max(keys))
    assert metrics["val"]["top1"] == history[metrics["best_epoch"] - 1]["val_top1"]
    assert metrics["test"]["n"] == len(mp20_cache.indices("test"))
    assert metrics["val"]["n"] == len(mp20_cache.indices("val"))
    assert set(metrics["test"]["head_accuracy"]) == set(metrics["test"]["level_accuracy"]) - {"space_group"}
    assert metrics["parameters"] > 0 and metrics["samples_per_s"] > 0
    record = json.loads((tiny_run / "config.json").read_text())
    assert record["data"]["split_hash"] == mp20_cache.manifest["split_hash"]
    assert record["encoder"]["kwargs"]["grid"] == {"start": 5.0, "stop": 90.0, "step": 0.05, "axis": "log_d"}
    assert record["config"]["input"]["two_theta"] == [5.0, 90.0, 0.05] and record["environment"]["torch"]
    assert record["hierarchy"]["levels"][0] == "space_group"


def test_a_finished_run_is_returned_not_redone_and_other_settings_are_refused(tiny_run, mp20_cache):
    before = (tiny_run / "metrics.json").stat().st_mtime_ns
    again = train(tiny_config(), mp20_cache, tiny_run, device="cpu", progress=False)
    assert (tiny_run / "metrics.json").stat().st_mtime_ns == before and again["best_epoch"] >= 1
    with pytest.raises(RunError, match="other settings"):
        train(tiny_config(lr=0.1), mp20_cache, tiny_run, device="cpu", progress=False)


def test_training_is_deterministic_on_cpu(mp20_cache, tmp_path):
    config = tiny_config(hierarchy="flat", epochs=2)
    first = train(config, mp20_cache, tmp_path / "a", device="cpu", progress=False)
    second = train(config, mp20_cache, tmp_path / "b", device="cpu", progress=False)
    assert first["parameter_digest"] == second["parameter_digest"]
    assert first["history"][-1]["train_loss"] == second["history"][-1]["train_loss"]
    other = train(tiny_config(hierarchy="flat", epochs=2, seed=1), mp20_cache, tmp_path / "c", device="cpu",
                  progress=False)
    assert other["parameter_digest"] != first["parameter_digest"]


def test_a_killed_run_resumes_from_its_last_checkpoint_to_the_same_result(mp20_cache, tmp_path):
    config = tiny_config(epochs=6, encoder_options={**TINY_RCNET, "channels": (16,)})
    reference = train(config, mp20_cache, tmp_path / "reference", device="cpu", progress=False)
    script = (f"from xrdcore.train import TrainConfig, train\n"
              f"config = TrainConfig.from_dict({json.dumps(config.to_dict())})\n"
              f"train(config, {str(mp20_cache.path)!r}, {str(tmp_path / 'killed')!r}, device='cpu', progress=False)\n")
    child = subprocess.Popen([sys.executable, "-c", script.replace("null", "None")])
    last = tmp_path / "killed" / "checkpoints" / "last.safetensors"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists(), "the run finished before it could be killed"
    resumed = train(config, mp20_cache, tmp_path / "killed", device="cpu", progress=False)
    assert resumed["parameter_digest"] == reference["parameter_digest"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in reference["history"]]


def test_a_run_stopped_after_any_of_its_writes_resumes_to_the_same_files(mp20_cache, tmp_path, monkeypatch):
    """Each file a run commits in turn is the last before a stop; the rerun ends with the
    uninterrupted run's files and tensors bit for bit (metrics and checkpoints also hold times)."""
    from safetensors.torch import load_file

    def outcome(run: Path):
        timed = ("metrics.json", "last.safetensors", "best.safetensors")
        return visible_files(run, timed), {name: load_file(run / "checkpoints" / name) for name in timed[1:]}

    def same(a, b):
        return a[0] == b[0] and all(a[1][name].keys() == b[1][name].keys() and all(
            torch.equal(a[1][name][k], b[1][name][k]) for k in a[1][name]) for name in a[1])

    config = tiny_config(hierarchy="flat", epochs=2)
    reference = train(config, mp20_cache, tmp_path / "reference", device="cpu", progress=False)
    expected = outcome(tmp_path / "reference")
    n = 1
    while stopped_after_write(monkeypatch, n, lambda: train(config, mp20_cache, tmp_path / f"stopped-{n}",
                                                            device="cpu", progress=False)):
        resumed = train(config, mp20_cache, tmp_path / f"stopped-{n}", device="cpu", progress=False)
        assert same(outcome(tmp_path / f"stopped-{n}"), expected), f"stopped after write {n}"
        assert resumed["parameter_digest"] == reference["parameter_digest"]
        assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in reference["history"]]
        n += 1
    assert n > 4  # config, a checkpoint per epoch, metrics


def test_a_run_killed_while_writing_its_config_starts_again(mp20_cache, tmp_path):
    """kill -9 between creating the temporary config file and renaming it leaves only that file."""
    (tmp_path / f".config.json.k1ll3d{TEMPORARY_SUFFIX}").write_text('{"form')
    result = train(tiny_config(hierarchy="flat", epochs=1), mp20_cache, tmp_path, device="cpu", progress=False)
    assert result["status"] == "complete" and (tmp_path / "config.json").is_file()


def test_early_stopping_ends_a_run_that_stops_improving(mp20_cache, tmp_path):
    result = train(tiny_config(hierarchy="flat", epochs=12, patience=1, lr=1e-6), mp20_cache, tmp_path / "r",
                   device="cpu", progress=False)
    assert result["stopped_early"] and result["epochs_run"] < 12
    assert result["epochs_run"] - result["best_epoch"] == 1


def test_a_time_budget_fits_the_epochs_and_the_schedule_to_it(mp20_cache, tmp_path):
    short = train(tiny_config(hierarchy="flat", epochs=40, patience=None, time_budget=1e-3), mp20_cache,
                  tmp_path / "short", device="cpu", progress=False)
    assert short["epochs_planned"] == short["epochs_run"] == 2  # at least two epochs, whatever the budget
    assert short["history"][-1]["lr"] < 0.2 * short["history"][0]["lr"]  # its cosine decay ran to the end
    long = train(tiny_config(hierarchy="flat", epochs=3, patience=None, time_budget=3600), mp20_cache,
                 tmp_path / "long", device="cpu", progress=False)
    assert long["epochs_planned"] == long["epochs_run"] == 3  # never more than asked


def test_checkpoints_round_trip_and_bad_ones_are_refused_without_unpickling(tiny_run, tmp_path):
    model, config, record = load_run(tiny_run)
    assert record["format"] == "xrdcore-run/1" and not model.training
    copy, _ = build_model(config)
    path = save_checkpoint(tmp_path / "c.safetensors", model, {"note": "x"})
    assert load_checkpoint(path, copy) == {"note": "x"}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), copy.state_dict().values()))

    (tmp_path / "garbage.safetensors").write_bytes(os.urandom(256))
    with pytest.raises(CheckpointError, match="garbage.safetensors: .*(not a readable|damaged)"):
        load_checkpoint(tmp_path / "garbage.safetensors", copy)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="not an xrdcore checkpoint"):
        load_checkpoint(tmp_path / "foreign.safetensors", copy)
    other, _ = build_model(TrainConfig("mlp", encoder_options={"hidden": (8,)}, input=InputSpec(**TINY_INPUT)))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_checkpoint(path, other)
    marker = tmp_path / "executed"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "pickle.safetensors").write_bytes(pickle.dumps({"model": Exploit()}))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "pickle.safetensors", copy)
    assert not marker.exists()


def test_a_run_directory_is_protected(mp20_cache, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not an xrdcore run directory"):
        train(tiny_config(), mp20_cache, tmp_path, device="cpu", progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(RunError, match="not an xrdcore run directory"):
        load_run(tmp_path)


@pytest.mark.parametrize("changes, message", [
    ({"optimizer": "sgd"}, "optimizer must be one of adamw, adam"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"lr": -1.0}, "lr must be a positive"),
    ({"warmup_epochs": -1.0}, "warmup_epochs must be >= 0"),
    ({"precision": "fp8"}, "precision must be one of"),
    ({"time_budget": 0}, "time_budget must be a positive number"),
])
def test_bad_settings_are_refused_with_the_reason(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**changes)


def test_bf16_is_for_cuda_and_unknown_components_suggest_names(mp20_cache, tmp_path):
    with pytest.raises(RunError, match="bf16 is for CUDA"):
        train(tiny_config(precision="bf16"), mp20_cache, tmp_path / "a", device="cpu", progress=False)
    with pytest.raises(KeyError, match="Did you mean 'rcnet'"):
        train(tiny_config(encoder="rcnett"), mp20_cache, tmp_path / "b", device="cpu", progress=False)
    with pytest.raises(ValueError, match="2θ 5.0-90.0 deg"):
        train(tiny_config(input=InputSpec(grid={"start": 2.0, "step": 0.05})), mp20_cache, tmp_path / "c",
              device="cpu", progress=False)


def test_augmented_training_runs_and_peaks_inputs_are_dicts(mp20_cache, tmp_path):
    config = tiny_config(hierarchy="flat", epochs=1, input=InputSpec(**TINY_INPUT, augment="laboratory"))
    result = train(config, mp20_cache, tmp_path / "aug", device="cpu", progress=False)
    assert result["epochs_run"] == 1
    spec = InputSpec(kind="peaks")
    from xrdcore.diffraction.profile import PeakBatch

    batch = spec.make(PeakBatch.from_peak_lists([mp20_cache.peaks(0), mp20_cache.peaks(1)]))
    assert set(batch) == {"two_theta", "intensity", "mask"} and float(batch["intensity"].max()) == pytest.approx(1.0)


def _profile_and_peak_encoders() -> list[str]:
    from xrdcore import get_registry

    registry = get_registry()
    return [n for n in registry.names("encoder")
            if getattr(registry.get("encoder", n).load(), "input_kind", None) in ("profile", "peaks")]


@pytest.mark.parametrize("encoder", _profile_and_peak_encoders())
def test_a_change_of_step_reaches_every_encoder_and_the_run_record_with_no_other_edit(encoder, mp20_cache, tmp_path):
    """The grid is declared once: changing its step (``--step 0.2``) retrains every installed
    profile and peak-list encoder on 425 points instead of 850, and the run records the step."""
    from xrdcore import get_registry

    grid = replace(InputSpec().grid, step=0.2)
    kind = get_registry().get("encoder", encoder).load().input_kind
    config = TrainConfig(encoder, encoder_options=get_registry().get("encoder", encoder).tiny,
                         input=InputSpec(kind=kind, grid=grid), epochs=1, batch_size=16, train_limit=16)
    train(config, mp20_cache, tmp_path / encoder, device="cpu", progress=False)
    model, loaded, record = load_run(tmp_path / encoder)
    assert loaded.input.grid == grid and record["config"]["input"]["two_theta"][2] == 0.2
    if kind == "profile":
        assert record["encoder"]["kwargs"]["grid"]["step"] == 0.2
        assert model.encoder.input_length == grid.length == 425
        assert model.encoder(torch.rand(2, grid.length)).shape == (2, model.encoder.embed_dim)


def test_torchrun_with_two_gloo_processes_trains_one_model(mp20_cache, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               "-m", "xrdcore", "train", "--dataset", str(mp20_cache.path), "--encoder", "rcnet", "--size", "tiny",
               "--hierarchy", "multilevel", "--epochs", "2", "--batch-size", "8", "--two-theta", "5", "90", "0.05",
               "--device", "cpu", "--quiet", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [json.loads((out / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["parameter_digest"] == ranks[1]["parameter_digest"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["parameter_digest"] == ranks[0]["parameter_digest"]


def test_cli_train_writes_a_run_and_reports_it(mp20_cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(mp20_cache.path), "--encoder", "nopoolcnn", "--size", "tiny", "--epochs", "1",
                 "--two-theta", "5", "90", "0.05", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    assert "test top-1" in capsys.readouterr().out and (out / "metrics.json").exists()
    if not torch.cuda.is_available():
        assert main(["train", "--dataset", str(mp20_cache.path), "--encoder", "mlp", "--device", "cuda",
                     "--out", str(tmp_path / "gpu")]) == 2
        assert "no GPU" in capsys.readouterr().err
