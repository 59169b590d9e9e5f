"""Patterns per second of ``xrdcore predict --model NAME`` on a batch of files, on this machine's CPU.

The files are laboratory-like: AFLOW prototypes (pymatgen's table) simulated at Cu Kα1 on 5–90° 2θ
at 0.02° (4,251 rows, as a lab scan), with a Kα2 doublet, an amorphous hump, a sloping background
and Poisson counting noise, written as two-column .xy text. Timed per model, after start-up (model
loaded, first batch done), through :func:`xrdcore.predict.predict_many` exactly as the CLI uses it:
reading and parsing each file, background subtraction, resampling, the model on batches, the
answer with every superclass level and the absences-equivalent groups. The whole CLI command
(start-up included) is timed once as well.

Run: ``.venv/bin/python benchmarks/predict_throughput.py [--files 1000]``; writes
benchmarks/results/predict_throughput-cpu.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def lab_files(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` laboratory-like .xy files of AFLOW prototypes (cycled), each with its own noise."""
    import pymatgen.analysis.prototypes as prototypes
    from pymatgen.core import Structure

    from xrdcore.diffraction.grid import AngleGrid
    from xrdcore.diffraction.profile import PeakBatch, render
    from xrdcore.diffraction.pxrd import peak_list

    entries = json.loads(gzip.decompress(Path(prototypes.__file__).with_name("aflow_prototypes.json.gz").read_bytes()))
    structures = [Structure.from_dict(e["snl"]) for e in entries[:64]]
    grid = AngleGrid(step=0.02)
    peaks = [peak_list(s, wavelength=w) for s in structures for w in (1.54056, 1.54439)]
    profiles = render(PeakBatch.from_peak_lists(peaks), grid, caglioti=(0.01, -0.002, 0.01)).numpy()
    rng = np.random.default_rng(seed)
    x = grid.values
    files = []
    for i in range(n):
        k = i % len(structures)
        signal = profiles[2 * k] + 0.5 * profiles[2 * k + 1]  # Kα1 + Kα2
        background = 0.15 * np.exp(-0.5 * ((x - 22) / 5) ** 2) + 0.05 + 0.0005 * x
        counts = rng.poisson(2000 * (signal / signal.max() + background))
        path = folder / f"scan_{i:05d}.xy"
        np.savetxt(path, np.column_stack([x, counts]), fmt="%.3f %d", header="2theta counts (Cu)")
        files.append(path)
    return files


def throughput(model: str, files: list[Path]) -> dict:
    from xrdcore.predict import predict_many
    from xrdcore.zoo import load_model

    loaded = load_model(model)
    list(predict_many(loaded.path, files[:64], wavelength="CuKa1", model_name=model))  # start-up
    started = time.perf_counter()
    answers = list(predict_many(loaded.path, files, wavelength="CuKa1", model_name=model))
    seconds = time.perf_counter() - started
    failed = sum(isinstance(a, Exception) for a in answers)
    return {"files": len(files), "failed": failed, "seconds": seconds, "patterns_per_s": len(files) / seconds}


def cli_seconds(model: str, folder: Path) -> float:
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("xrdcore")), "predict", "--model", model, str(folder),
                    "--wavelength", "CuKa1", "--out", str(folder.parent / f"{model}.csv")],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--models", nargs="*", help="default: every installed model")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "predict_throughput-cpu.json")
    args = parser.parse_args()
    from xrdcore import list_models
    from xrdcore.storage import atomic_write_json

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "scans"
        folder.mkdir()
        files = lab_files(folder, args.files)
        results = {}
        for model in args.models or list_models():
            results[model] = throughput(model, files)
            results[model]["cli_seconds_with_start_up"] = cli_seconds(model, folder)
            print(model, f"{results[model]['patterns_per_s']:.0f} patterns/s", flush=True)
    atomic_write_json(args.out, {
        "what": "xrdcore predict --model NAME on a batch of lab-like .xy files (0.02° steps, 4,251 rows), "
                "after start-up: read, SNIP background, resample, model, full answer",
        "models": results,
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                        "machine": platform.machine(),
                        "note": "other jobs may have shared the machine; rerun on an idle one for absolute figures"}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
