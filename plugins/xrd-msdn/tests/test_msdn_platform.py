"""xrd-msdn inside the platform: images simulated once into the cache, the harness grid with spot vs
shaped input and per-view heads, unseen space groups, and the command line."""

import json

import torch
from xrdcore.bench.harness import BenchSettings, run_bench
from xrdcore.cli import main
from xrdcore.train import InputSpec
from xrdcore.train.inputs import SplitInputs

from xrd_msdn.simulator import ZoneAxisSimulator

SMALL = {"size": 64}


def test_images_are_simulated_once_into_the_cache_and_read_back(mp20_cache):
    spec = InputSpec(kind="images", simulator="zone-axis", simulator_options=SMALL)
    assert spec.encoder_kwargs(lambda views=3, channels=3, image_size=224: None) == \
        {"views": 3, "channels": 3, "image_size": 64}
    first = SplitInputs(mp20_cache, "val", spec, torch.device("cpu"))
    files = sorted((mp20_cache.path / "images").glob("zone-axis-*"))
    assert sorted(f.name.split(".", 1)[1] for f in files) == ["done.npy", "json", "npy"]
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = SplitInputs(mp20_cache, "val", spec, torch.device("cpu"))
    assert {f: f.stat().st_mtime_ns for f in files} == stamps  # read, not simulated again
    x, labels = again.batch(torch.arange(len(again)))
    assert torch.equal(x, first.batch(torch.arange(len(first)))[0])
    assert x.shape == (len(again), 3, 3, 64, 64) and x.dtype == torch.float32
    assert torch.equal(labels, torch.as_tensor(mp20_cache.space_groups[mp20_cache.indices("val")]))
    index = int(mp20_cache.indices("val")[0])
    direct = ZoneAxisSimulator(**SMALL).simulate([mp20_cache.structure(index)])[0]
    assert (x[0] - direct).abs().max() <= 0.5 / 255 + 1e-6  # stored as uint8


def test_the_harness_trains_msdn_on_spots_and_shapes_with_unseen_space_groups(mp20_cache, tmp_path):
    settings = BenchSettings(
        encoders="msdn,densenet", hierarchies="flat", schedulers="sum", quick=True,
        variants={"msdn-spots": ("msdn", {"input.representation": "spots"}),
                  "msdn-paper": ("msdn", {"train.heads": "per-view"})},
        training={"epochs": 2, "batch_size": 8, "warmup_epochs": 1.0, "holdout_space_groups": 2})
    results = run_bench(mp20_cache, tmp_path, settings, device="cpu", progress=False)
    runs = {r["encoder"]: r for r in results["runs"]}
    assert sorted(runs) == ["densenet", "msdn", "msdn-paper", "msdn-spots"]
    assert all(r["status"] == "complete" for r in runs.values()), [r["seeds"] for r in runs.values()]
    config = {name: json.loads((tmp_path / "runs" / f"{name}__flat__sum" / "seed0" / "config.json").read_text())
              for name in runs}
    assert config["msdn-spots"]["config"]["input"]["simulator_options"] == {"representation": "spots", "size": 32}
    assert config["msdn"]["config"]["input"]["simulator_options"] == {"size": 32}  # the simulator's tiny variant
    assert config["msdn-paper"]["config"]["heads"] == "per-view" and config["msdn"]["config"]["heads"] == "shared"
    assert config["msdn"]["encoder"]["kwargs"]["image_size"] == 32
    for row in runs.values():
        assert row["unseen"]["top1"]["n"] == 1 and len(row["unseen"]["space_groups"]) == 2
    markdown = (tmp_path / "results.md").read_text()
    assert "images from zone-axis (size 32)" in markdown and "representation spots" in markdown
    assert "## Unseen space groups (2 held out of training)" in markdown
    assert results["ceiling"]["extinction_class_any_setting"] >= 0


def test_train_and_simulate_from_the_command_line(mp20_cache, tmp_path, capsys):
    assert main(["train", "--dataset", str(mp20_cache.path), "--encoder", "msdn", "--size", "tiny", "--simulator-option",
                 "size=64", "--heads", "per-view", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
                 "--quiet", "--out", str(tmp_path / "run")]) == 0
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["config"]["input"]["kind"] == "images" and record["config"]["input"]["simulator"] == "zone-axis"
    assert "test top-1" in capsys.readouterr().out

    cif = tmp_path / "NaCl.cif"
    cif.write_text(mp20_cache.structure(int(mp20_cache.indices("train")[0])).to(fmt="cif"))
    picture = tmp_path / "views.png"
    assert main(["simulate", str(cif), "--images", str(picture), "--simulator-option", "representation=spots"]) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["simulate", str(cif), "--images", str(picture), "--simulator-option", "size=3"]) == 2
    assert "size must be an int >= 8" in capsys.readouterr().err
