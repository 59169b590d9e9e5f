"""Patterns per second, on 2 cores, of each stage of making labelled synthetic training patterns.

The stages, as `xrdcore data build synthetic` and training run them: pyxtal random crystals
(xrdcore.data.random_crystals, requested round-robin over the 230 space groups as the
``synthetic`` data set does), spglib labels (xrdcore.data.labels.label, symprec 0.1), peak lists
(pxrd.peak_lists, a data-build chunk of 256 per call) and measured-like training profiles from
the peak lists (InputSpec(augment="laboratory"), a training batch of 64 per call); and, for
reference, pymatgen's XRDCalculator in place of the peak lists. Each stage runs in two worker
processes (one per core, one thread each) on the previous stage's output; its rate is the
patterns made over the seconds its workers spent in it, halved, as both ran at once (moving
structures between processes is not counted). One core making a pattern runs every stage in
turn, so the pipeline's rate is 2 / Σ(seconds per pattern) and its bottleneck is the stage
with the most seconds per pattern.

The machine (2 cores) is shared with other jobs: absolute rates move with their load (the load
average is recorded); the stages, measured in the same run, compare fairly.

Run: `.venv/bin/python benchmarks/synthetic_rate.py [--crystals 920] [--max-atoms 64] [--repeats 3]`;
writes benchmarks/results/synthetic_rate-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: structures per peak-list call (a data-build chunk) and patterns per rendering call (a training batch)
PEAK_BATCH, PROFILE_BATCH = 256, 64


def stage(job: tuple[str, int, list[Any]]) -> tuple[int, list[Any], float]:
    """One piece of a stage in a worker: its outputs and the seconds spent in the stage alone."""
    warnings.filterwarnings("ignore")
    name, index, items = job
    if name == "crystals":
        from xrdcore.data.compact import CompactStructure
        from xrdcore.data.random_crystals import generate

        start = time.perf_counter()
        made = [generate(request)[1] for request in items]
        seconds = time.perf_counter() - start
        return index, [None if s is None else CompactStructure.from_structure(s) for s in made], seconds
    if name == "profiles":
        import torch

        from xrdcore.diffraction.profile import PeakBatch
        from xrdcore.train.inputs import InputSpec

        spec, generator = InputSpec(augment="laboratory"), torch.Generator().manual_seed(index)
        start = time.perf_counter()
        profiles = spec.make(PeakBatch.from_peak_lists(items), generator)
        return index, [tuple(profiles.shape)], time.perf_counter() - start
    structures = [compact.to_structure() for compact in items]
    start = time.perf_counter()
    if name == "labels":
        from xrdcore.data.labels import label
        from xrdcore.data.validation import InvalidStructure

        outputs = []
        for structure in structures:
            try:
                outputs.append(label(structure))
            except InvalidStructure:
                outputs.append(None)
    elif name == "peaks":
        from xrdcore.diffraction.pxrd import peak_lists

        outputs = peak_lists(structures)
    else:
        from pymatgen.analysis.diffraction.xrd import XRDCalculator

        calculator = XRDCalculator("CuKa1")
        outputs = [len(calculator.get_pattern(s, two_theta_range=(5, 90)).x) for s in structures]
    return index, outputs, time.perf_counter() - start


def run(name: str, items: list[Any], size: int, repeats: int) -> tuple[list[Any], dict[str, float]]:
    """A stage over ``items`` in pieces of ``size`` on two workers, ``repeats`` times: outputs in
    order and the rate."""
    from xrdcore.data.parallel import unordered_map

    pieces = [items[i:i + size] for i in range(0, len(items), size)]
    outputs: list[Any] = [None] * len(pieces)
    seconds, wall = 0.0, time.perf_counter()
    for _ in range(repeats):
        for index, result, spent in unordered_map(stage, [(name, i, p) for i, p in enumerate(pieces)], 2):
            outputs[index], seconds = result, seconds + spent
    patterns = repeats * len(items)
    return [o for piece in outputs for o in piece], {
        "patterns": patterns, "patterns_per_s": patterns / (seconds / 2), "seconds_per_pattern_per_core":
        seconds / patterns, "wall_seconds": time.perf_counter() - wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crystals", type=int, default=920, help="requested, 4 per space group by default")
    parser.add_argument("--max-atoms", type=int, default=None, help="default: the synthetic data set's")
    parser.add_argument("--repeats", type=int, default=3, help="passes of the stages after generation")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    from xrdcore import __version__
    from xrdcore.builtin.datasets import SyntheticDataset
    from xrdcore.data.random_crystals import MAX_ATOMS
    from xrdcore.storage import atomic_write_json

    load = os.getloadavg()
    requests = list(SyntheticDataset(size=args.crystals, max_atoms=args.max_atoms or MAX_ATOMS).requests())
    made, stages = {}, {}
    made["crystals"], stages["pyxtal random crystals"] = run("crystals", requests, 8, 1)
    structures = [s for s in made["crystals"] if s is not None]
    stages["pyxtal random crystals"]["failed"] = len(requests) - len(structures)
    made["labels"], stages["spglib labels"] = run("labels", structures, 32, args.repeats)
    structures = [s for s, number in zip(structures, made["labels"]) if number is not None]
    made["peaks"], stages["peak lists (batched)"] = run("peaks", structures, PEAK_BATCH, args.repeats)
    _, stages["augmented profiles"] = run("profiles", made["peaks"], PROFILE_BATCH, args.repeats)
    _, reference = run("pymatgen", structures, 32, 1)
    pipeline = sum(s["seconds_per_pattern_per_core"] for s in stages.values())
    bottleneck = max(stages, key=lambda name: stages[name]["seconds_per_pattern_per_core"])
    atoms = [len(s) for s in structures]
    results = {
        "stages": stages,
        "pipeline_patterns_per_s": 2 / pipeline,
        "bottleneck": bottleneck,
        "share_of_pipeline": {name: s["seconds_per_pattern_per_core"] / pipeline for name, s in stages.items()},
        "reference_pymatgen_peaks": {
            **reference, "peak_lists_speedup": stages["peak lists (batched)"]["patterns_per_s"] / reference["patterns_per_s"],
            "pipeline_patterns_per_s_with_it": 2 / (pipeline - stages["peak lists (batched)"]["seconds_per_pattern_per_core"]
                                                    + reference["seconds_per_pattern_per_core"])},
        "crystals": {"requested": len(requests), "labelled": len(structures), "atoms_median": statistics.median(atoms),
                     "atoms_max": max(atoms), "fraction_up_to_20_atoms": sum(a <= 20 for a in atoms) / len(atoms),
                     "space_groups_labelled": len({n for n in made["labels"] if n is not None})},
        "settings": {"wavelength": "CuKa1", "two_theta_range": [5, 90], "peak_lists_per_call": PEAK_BATCH,
                     "profiles": {"batch": PROFILE_BATCH, "augment": "laboratory", "grid": "5-90 deg, 850 points"},
                     "max_atoms": args.max_atoms or MAX_ATOMS, "workers": 2, "threads_per_worker": 1},
        "environment": {
            "xrdcore": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "cpus": os.cpu_count(), "load_average_before": list(load), "load_average_after": list(os.getloadavg()),
            "note": "a 2-core machine shared with other jobs: absolute rates vary with their load; the stages are "
                    "measured in the same run and compare fairly",
        },
    }
    atomic_write_json(ROOT / "benchmarks" / "results" / "synthetic_rate-cpu.json", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
