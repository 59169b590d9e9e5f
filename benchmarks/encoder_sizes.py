"""Parameters and training throughput of every installed encoder at each registered size (tiny,
small, full) on the default input (the CoRE MOF recipe's, docs/training.md): one optimiser step is forward + backward +
AdamW on a batch of 64 with one linear head of 230 classes, after two warm-up steps. Writes
benchmarks/results/encoder_sizes-<device>.json (and prints a Markdown table for docs/training.md).

Run: `.venv/bin/python benchmarks/encoder_sizes.py [--sizes tiny,small] [--threads 2] [--device cpu]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,small,full")
    parser.add_argument("--encoders", default="*")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    import xrdcore
    from xrdcore.bench.harness import BenchSettings, run_config
    from xrdcore.storage import atomic_write_json
    from xrdcore.train.trainer import build_model

    torch.set_num_threads(args.threads)
    registry = xrdcore.get_registry()
    device = torch.device(args.device)
    rows = []
    for name in registry.names("encoder") if args.encoders == "*" else args.encoders.split(","):
        for size in args.sizes.split(","):
            component = registry.get("encoder", name)
            if size == "small" and component.small is None:
                rows.append({"encoder": name, "size": size, "error": "no small variant registered"})
                continue
            settings = BenchSettings(encoders=name, size=size)
            config = run_config(_combination(name), 0, settings, registry)
            try:
                model, _ = build_model(config, registry)
            except Exception as exc:  # noqa: BLE001 - a size that cannot be built is reported
                rows.append({"encoder": name, "size": size, "error": f"{type(exc).__name__}: {exc}"})
                continue
            model.to(device).train()
            batch = _batch(config.input, device)
            optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
            target = torch.randint(0, 230, (64,), device=device)
            for step in range(2 + args.steps):
                if step == 2:
                    started = time.perf_counter()
                _, logits = model(batch)
                loss = torch.nn.functional.cross_entropy(logits["space_group"], target)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            seconds = (time.perf_counter() - started) / args.steps
            rows.append({"encoder": name, "size": size, "parameters": sum(p.numel() for p in model.parameters()),
                         "samples_per_s": round(64 / seconds, 1), "options": config.encoder_options,
                         "input": config.input.kind})
            print(json.dumps(rows[-1]), flush=True)
    results = {"device": str(device), "threads": args.threads, "batch_size": 64,
               "environment": {"torch": torch.__version__, "python": platform.python_version(),
                               "cpus": __import__("os").cpu_count()}, "encoders": rows}
    atomic_write_json(ROOT / "benchmarks" / "results" / f"encoder_sizes-{device.type}.json", results)
    print("| encoder | size | parameters | samples/s |\n|---|---|---|---|")
    for row in rows:
        if "error" not in row:
            print(f"| {row['encoder']} | {row['size']} | {row['parameters']:,} | {row['samples_per_s']:.0f} |")


def _combination(name: str):
    from xrdcore.bench.harness import Combination

    return Combination(name, "flat", "sum")


def _batch(spec, device):
    """A batch of 64 inputs of the right kind with realistic content (profiles with peaks)."""
    generator = torch.Generator().manual_seed(0)
    if spec.kind == "images":
        views, channels, size = 3, 3, dict(spec.simulator_options).get("size", 224)
        return torch.rand(64, views, channels, size, size, generator=generator).to(device)
    import numpy as np

    from xrdcore.diffraction.profile import PeakBatch
    from xrdcore.diffraction.pxrd import PeakList

    rng = np.random.default_rng(0)
    peaks = []
    for _ in range(64):
        n = 300
        two_theta = np.sort(rng.uniform(5, 90, n))
        peaks.append(PeakList(two_theta, 1.54 / (2 * np.sin(np.radians(two_theta / 2))), rng.uniform(0.1, 100, n),
                              np.zeros((n, 3), int), np.ones(n, int), 1.54056, np.eye(3) * 20, np.eye(3, dtype=int)[None]))
    made = spec.make(PeakBatch.from_peak_lists(peaks))
    return {k: v.to(device) for k, v in made.items()} if isinstance(made, dict) else made.to(device)


if __name__ == "__main__":
    main()
