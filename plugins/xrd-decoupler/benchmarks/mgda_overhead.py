"""MGDA's per-step cost against ``sum``, side by side in one run, written to
``benchmarks/results/mgda-overhead-cpu.json`` at the repository root.

What it guards: MGDA-UB adds one backward pass per level through the heads only (gradients with
respect to the embedding), a Gram matrix and a small solve; the design target is a full
training step (forward, combine, backward, optimiser step) at most 1.5× the step with ``sum``.
Each configuration is one encoder with one linear head per level of the ``superclass``
hierarchy (space group + the paper's five superclasses); the two schedulers alternate step by
step on the same model and batch, so drifting machine load hits both alike, and the median step
time of each is reported with their ratio.

Run: ``.venv/bin/python plugins/xrd-decoupler/benchmarks/mgda_overhead.py [--steps 12] [--threads N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F
import xrdcore
from xrdcore.diffraction.grid import DEFAULT_GRID, AngleGrid
from xrdcore.storage import atomic_write_json

RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "mgda-overhead-cpu.json"
TARGET_RATIO = 1.5
#: (label, encoder, keyword arguments, 2θ grid, batch size)
CONFIGS = [
    ("rcnet-small", "rcnet", {"blocks": 8, "kernel_size": 15, "channels": (16, 32)}, AngleGrid(step=0.05), 32),
    ("decoupler-tiny", "xrd-decoupler:decoupler", "tiny", AngleGrid(step=0.05), 32),
    ("decoupler", "xrd-decoupler:decoupler", {}, DEFAULT_GRID, 32),
]


def stick_patterns(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """Sparse profiles like the published input: 30 peaks, zero elsewhere, max 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(batch, length)
    x.scatter_(1, torch.randint(0, length, (batch, 30), generator=g), torch.rand(batch, 30, generator=g))
    return x / x.amax(dim=1, keepdim=True)


def run_config(label: str, encoder_name: str, kwargs, grid: AngleGrid, batch: int, steps: int, warmup: int) -> dict:
    registry = xrdcore.get_registry()
    if kwargs == "tiny":
        kwargs = dict(registry.get("encoder", encoder_name).tiny)
    length = grid.length
    factory_args = {"grid": grid, **kwargs}
    torch.manual_seed(0)
    encoder = xrdcore.create_encoder(encoder_name, **factory_args)
    hierarchy = xrdcore.create_hierarchy("xrd-decoupler:superclass")
    heads = torch.nn.ModuleDict({name: torch.nn.Linear(encoder.embed_dim, n)
                                 for name, n in hierarchy.num_classes.items()})
    optimiser = torch.optim.Adam([*encoder.parameters(), *heads.parameters()], lr=1e-3)
    schedulers = {"sum": xrdcore.create_scheduler("sum"),
                  "mgda": xrdcore.create_scheduler("xrd-decoupler:mgda")}
    x = stick_patterns(batch, length)
    targets = hierarchy.targets(torch.randint(1, 231, (batch,), generator=torch.Generator().manual_seed(1)))
    times: dict[str, list[float]] = {name: [] for name in schedulers}
    combine: dict[str, list[float]] = {name: [] for name in schedulers}
    iterations = []
    for i in range(warmup + steps):
        for name, scheduler in schedulers.items():
            t0 = time.perf_counter()
            shared = encoder(x)
            losses = {level: F.cross_entropy(heads[level](shared), targets[level]) for level in heads}
            t1 = time.perf_counter()
            total, _ = scheduler.combine(losses, shared if scheduler.needs_shared else None, hierarchy)
            t2 = time.perf_counter()
            optimiser.zero_grad(set_to_none=True)
            total.backward()
            optimiser.step()
            t3 = time.perf_counter()
            if i >= warmup:
                times[name].append(t3 - t0)
                combine[name].append(t2 - t1)
                if name == "mgda":
                    iterations.append(scheduler.last_step.iterations)
    median = {name: statistics.median(v) for name, v in times.items()}
    ratio = median["mgda"] / median["sum"]
    return {
        "label": label, "encoder": encoder_name, "encoder_kwargs": {k: list(v) if isinstance(v, tuple) else v
                                                                    for k, v in factory_args.items()},
        "embed_dim": encoder.embed_dim, "encoder_parameters": sum(p.numel() for p in encoder.parameters()),
        "batch": batch, "input_length": length, "levels": list(hierarchy.level_names), "steps": steps,
        "warmup": warmup,
        "step_s_median": median, "step_s_min": {name: min(v) for name, v in times.items()},
        "combine_s_median": {name: statistics.median(v) for name, v in combine.items()},
        "mgda_over_sum": ratio, "target_ratio": TARGET_RATIO, "meets_target": ratio <= TARGET_RATIO,
        "mgda_solver_iterations_mean": statistics.fmean(iterations),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="measured steps per scheduler and config")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--configs", nargs="*", default=[c[0] for c in CONFIGS],
                        choices=[c[0] for c in CONFIGS])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = []
    for config in CONFIGS:
        if config[0] in args.configs:
            results.append(run_config(*config, steps=args.steps, warmup=args.warmup))
            r = results[-1]
            print(f"{r['label']:>15}: sum {r['step_s_median']['sum'] * 1e3:8.1f} ms  mgda "
                  f"{r['step_s_median']['mgda'] * 1e3:8.1f} ms  ratio {r['mgda_over_sum']:.3f}  "
                  f"(combine {r['combine_s_median']['mgda'] * 1e3:.1f} ms)", flush=True)
    report = {
        "benchmark": "mgda-overhead", "device": "cpu", "configs": results,
        "all_meet_target": all(r["meets_target"] for r in results), "wall_s": time.perf_counter() - started,
        "environment": {
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "machine": platform.machine(),
            "xrdcore": xrdcore.__version__, "xrd-decoupler": version("xrd-decoupler"),
            # the machine may be shared: a load above the cpu count means the timings are contended
            "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
        },
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
