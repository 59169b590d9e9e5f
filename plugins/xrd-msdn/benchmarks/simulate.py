"""Zone-axis simulation speed on the CPU: structures → three shaped (or spot) images each, for real
structures (the 46 MP-20 structures of tests/data and, when the core-mof package is installed, the
first CoRE MOF entries), at 224 and 64 pixels.

Two stages are timed apart, over batches of ``--batch`` structures, as a data pipeline would run
them: the physics (spglib's conventional cell, zero-layer reflections, structure factors:
``ZoneAxisSimulator.spots``) and the drawing (shaping over spot pairs and rasterising:
``ZoneAxisSimulator.render``). The physics does not depend on the image size or the representation,
so it is timed once per data set. Each figure is the median of ``--repeats`` runs after a warm-up.
Results, with the machine and its load, go atomically to benchmarks/results/msdn-simulate-cpu.json.

Run: .venv/bin/python plugins/xrd-msdn/benchmarks/simulate.py [--sizes 224,64] [--mof 46] [--batch 16]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import time
import warnings
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads distort small ops on a busy CPU

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "benchmarks" / "results" / "msdn-simulate-cpu.json"
MP20 = ROOT / "tests" / "data" / "mp20_sample.csv"
REPRESENTATIONS = ("shaped", "spots")


def mp20() -> list:
    from pymatgen.core import Structure

    with MP20.open(newline="") as handle, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [Structure.from_str(row["cif"], fmt="cif") for row in csv.DictReader(handle)]


def coremof(limit: int) -> list:
    import xrdcore

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = xrdcore.create_dataset("coremof")
        except (ImportError, FileNotFoundError, ValueError, xrdcore.ComponentError) as exc:  # core-mof is optional
            print(f"CoRE MOF skipped: {exc}")
            return []
        return [record.structure for record in dataset.records(limit=limit)]


def batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def timed(function, repeats: int) -> tuple[float, list[float], object]:
    function()  # warm-up
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), seconds, result


def measure(name: str, structures: list, sizes: list[int], batch: int, repeats: int) -> list[dict]:
    import torch

    from xrd_msdn.shaping import shape_segments
    from xrd_msdn.simulator import ZoneAxisSimulator

    groups = batches(structures, batch)
    physics = ZoneAxisSimulator()
    physics_s, physics_runs, patterns = timed(lambda: [physics.spots(group) for group in groups], repeats)
    views = [view for group in patterns for pattern in group for view in pattern]
    spots = torch.tensor([len(view) for view in views], dtype=torch.float64)
    segments = torch.tensor([len(shape_segments(view.position, 1.7)) for view in views], dtype=torch.float64)
    n = len(structures)
    print(f"{name}: {n} structures, physics {physics_s:.3f} s ({n / physics_s:.1f} structures/s); "
          f"spots per view {spots.mean():.0f} (max {spots.max():.0f}), segments {segments.mean():.0f} "
          f"(max {segments.max():.0f})", flush=True)
    rows = []
    for size in sizes:
        for representation in REPRESENTATIONS:
            simulator = ZoneAxisSimulator(size=size, representation=representation)
            render_s, render_runs, _ = timed(lambda s=simulator: [s.render(group) for group in patterns], repeats)
            total = physics_s + render_s
            rows.append({
                "data": name, "structures": n, "size": size, "representation": representation, "batch": batch,
                "physics_s": physics_s, "render_s": render_s, "total_s": total,
                "structures_per_s": n / total, "images_per_s": 3 * n / total,
                "render_structures_per_s": n / render_s, "physics_structures_per_s": n / physics_s,
                "physics_runs_s": physics_runs, "render_runs_s": render_runs,
                "spots_per_view_mean": float(spots.mean()), "spots_per_view_max": int(spots.max()),
                "segments_per_view_mean": float(segments.mean()), "segments_per_view_max": int(segments.max()),
                "settings": simulator.settings})
            print(f"  {size:4d} px {representation:7s} render {render_s:.3f} s; total {n / total:7.1f} structures/s "
                  f"= {3 * n / total:7.1f} images/s (render alone {n / render_s:7.1f} structures/s)", flush=True)
    return rows


def environment() -> dict:
    import torch
    import xrdcore

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"torch": torch.__version__, "python": platform.python_version(), "xrdcore": xrdcore.__version__,
            "xrd_msdn": version("xrd-msdn"), "spglib": version("spglib"), "pymatgen": version("pymatgen"),
            "machine": platform.machine(), "cpu": model, "cpu_count": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "device": "cpu"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224,64", help="comma-separated image sizes (pixels)")
    parser.add_argument("--mof", type=int, default=46, help="CoRE MOF entries to read (0: none)")
    parser.add_argument("--batch", type=int, default=16, help="structures per simulate call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import torch
    from xrdcore.storage import atomic_write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    load_before = os.getloadavg()
    data = {"mp20-sample": mp20()}
    if args.mof:
        mofs = coremof(args.mof)
        if mofs:
            data["coremof-2019-asr"] = mofs
    runs = []
    for name, structures in data.items():
        runs += measure(name, structures, sizes, args.batch, args.repeats)
    summary = {f"{r['data']} {r['size']} px {r['representation']}": round(r["images_per_s"], 1) for r in runs}
    results = {"benchmark": "zone-axis simulation (physics + shaping + drawing) on the CPU, images per second "
                            "(3 images, the x, y and z views, per structure)",
               "settings": {"sizes": sizes, "batch": args.batch, "repeats": args.repeats,
                            "structures": {k: len(v) for k, v in data.items()}},
               "runs": runs, "images_per_s": summary,
               "environment": {**environment(), "load_average_before": load_before,
                               "load_average_after": os.getloadavg()}}
    atomic_write_json(args.out, results)
    print(json.dumps(summary, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
