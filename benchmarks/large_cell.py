"""A 20,000-atom P1 cell of 80 Å (a large MOF's or a protein's size) through ``xrdcore simulate``
and ``peak_list``: wall and CPU time, where the time goes, and the refusals of cells above the
limits (how soon they come, what they say); against the code before bounded cost (a baseline
commit: spglib's symmetry search and the direct structure-factor sum), run on the same cell in a
child process, with the agreement of the two peak lists.

The cell: 20,000 atoms at random positions at least 1.2 Å apart (random sequential addition,
seeded), composition C 50%, H 30%, O 12%, N 5%, Zn 3%, cubic 80 Å, so no symmetry beyond
Friedel's law: the worst case for its size (829,000 reflections between 5 and 90° 2θ with Cu Kα1,
1.7e10 structure-factor terms).

Run: `.venv/bin/python benchmarks/large_cell.py [--atoms 20000] [--edge 80] [--repeats 2]
[--baseline COMMIT | --no-baseline]`; writes benchmarks/results/large_cell-cpu.json. Torch uses
all cores (2 here); the machine is shared, so the load average is recorded beside every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: the last commit before bounded cost: spglib for large cells, the direct sum
BASELINE = "955d416"


def random_cell(atoms: int, edge: float, distance: float = 1.2, seed: int = 0):
    """``atoms`` atoms at random positions at least ``distance`` Å apart in a cube of ``edge`` Å."""
    from pymatgen.core import Lattice, Structure
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    points = np.empty((0, 3))
    while len(points) < atoms:
        candidates = rng.random((2 * (atoms - len(points)) + 100, 3)) * edge
        if len(points):
            near, _ = cKDTree(points, boxsize=edge).query(candidates, distance_upper_bound=distance)
            candidates = candidates[~np.isfinite(near)]
        pairs = cKDTree(candidates, boxsize=edge).query_pairs(distance, output_type="ndarray")
        clash = np.zeros(len(candidates), dtype=bool)
        clash[pairs[:, 1]] = True  # the later of each close pair goes
        points = np.vstack([points, candidates[~clash][:atoms - len(points)]])
    elements = rng.choice(["C", "H", "O", "N", "Zn"], size=atoms, p=[0.5, 0.3, 0.12, 0.05, 0.03])
    return Structure(Lattice.cubic(edge), elements.tolist(), points / edge)


def timed(function, repeats: int = 1) -> tuple[list[float], list[float], object]:
    """Wall and CPU seconds of each call, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(round(time.perf_counter() - wall, 3))
        cpus.append(round(time.process_time() - cpu, 3))
    return walls, cpus, result


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def stages(structure) -> dict:
    """Where peak_list's time goes, step by step (the same calls it makes)."""
    import torch

    from xrdcore.diffraction import pxrd

    cell = pxrd._Cell.of(structure, {})
    out = {}
    walls, _, (laue, _inversions) = timed(lambda: pxrd._symmetry([cell], 1e-3))
    out["symmetry_s"] = walls[0]
    out["laue_group_order"] = len(laue[0])
    lam = 1.5406
    g_min, g_max = (2 * np.sin(np.radians(t / 2)) / lam for t in (5, 90))
    lattices = torch.as_tensor(cell.lattice[None])
    reciprocal = torch.linalg.inv(lattices).transpose(1, 2)
    walls, _, (hkl, segment) = timed(lambda: pxrd._reflections(lattices, reciprocal, g_min, g_max))
    out["reflections_s"], out["reflections"] = walls[0], len(hkl)
    walls, _, (reps, segment, _) = timed(lambda: pxrd._orbit_representatives(hkl, segment, laue))
    out["orbits_s"], out["distinct_reflections"] = walls[0], len(reps)
    g = torch.linalg.vector_norm(pxrd._times(reps.double(), reciprocal, segment), dim=1)
    s2 = (g / 2) ** 2
    out["separable_chosen"] = pxrd._separable_is_faster(cell, reps)
    out["separable_box_terms"] = pxrd._separable_cost(reps, len(cell.coords))
    walls, cpus, separable = timed(lambda: pxrd._separable_structure_factor_squared(cell, reps, s2,
                                                                                     torch.device("cpu")))
    out["structure_factors_separable_s"], out["structure_factors_separable_cpu_s"] = walls[0], cpus[0]
    part = max(1, len(reps) // 40)  # the direct sum on 2.5% of the reflections, scaled up
    walls, _, direct = timed(lambda: pxrd._structure_factor_squared(cell, reps[:part], s2[:part],
                                                                    torch.device("cpu")))
    out["structure_factors_direct_extrapolated_s"] = round(walls[0] * len(reps) / part, 1)
    out["direct_vs_separable_max_relative_difference"] = float(
        (direct - separable[:part]).abs().max() / separable.max())
    return out


BASELINE_SCRIPT = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from pymatgen.core import Structure
from xrdcore.diffraction.pxrd import peak_list
structure = Structure.from_file(sys.argv[2])
started = time.perf_counter()
peaks = peak_list(structure)
seconds = time.perf_counter() - started
np.savez(sys.argv[3], two_theta=peaks.two_theta, intensity=peaks.intensity)
print(json.dumps({"seconds": seconds}))
"""


def baseline(commit: str, cif: Path, folder: Path, timeout: float) -> dict:
    """peak_list of the code at ``commit`` on the same CIF, in a child process."""
    tree = folder / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "xrdcore"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    started = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "-c", BASELINE_SCRIPT, str(tree), str(cif), str(folder / "old.npz")],
                                capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"commit": commit, "finished": False, "timeout_s": timeout}
    if result.returncode:
        return {"commit": commit, "finished": False, "error": result.stderr.strip().splitlines()[-1]}
    return {"commit": commit, "finished": True, "peak_list_s": round(json.loads(result.stdout)["seconds"], 2),
            "process_s": round(time.perf_counter() - started, 2)}


def agreement(new, old_file: Path) -> dict:
    """Largest differences over peaks paired within 1e-3°, intensities on the max-100 scale."""
    old = np.load(old_file)
    nearest = np.searchsorted(old["two_theta"], new.two_theta).clip(1, len(old["two_theta"]) - 1)
    left = np.abs(old["two_theta"][nearest - 1] - new.two_theta) < np.abs(old["two_theta"][nearest] - new.two_theta)
    nearest = nearest - left
    paired = np.abs(old["two_theta"][nearest] - new.two_theta) <= 1e-3
    return {"peaks_new": len(new), "peaks_old": len(old["two_theta"]), "paired": int(paired.sum()),
            "max_two_theta_deviation_deg": float(np.abs(old["two_theta"][nearest] - new.two_theta)[paired].max()),
            "max_intensity_deviation": float(np.abs(old["intensity"][nearest] - new.intensity)[paired].max()),
            "max_unpaired_intensity": float(new.intensity[~paired].max()) if (~paired).any() else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=20000)
    parser.add_argument("--edge", type=float, default=80.0, help="cube edge, Å")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline", default=BASELINE, help="commit whose code is the old path")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--baseline-timeout", type=float, default=900)
    args = parser.parse_args()

    import xrdcore  # first, as the command line does: it sets OMP_WAIT_POLICY=PASSIVE before torch starts
    # its threads (imported after torch, the in-process figures here were 3-5 times slower on 2 cores)
    import torch
    from pymatgen.io.cif import CifWriter

    from xrdcore.diffraction.pxrd import (DEFAULT_MAX_COST, DEFAULT_MAX_REFLECTIONS, CostLimitError, estimate_cost,
                                          peak_list)

    results: dict = {"environment": {
        "xrdcore": xrdcore.__version__, "torch": torch.__version__, "python": platform.python_version(),
        "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "device_name": platform.processor() or platform.machine(), "load_average_at_start": load(),
        "note": "a 2-core machine shared with other jobs: wall times move with their load (recorded beside each "
                "figure); CPU seconds move less"}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        walls, _, structure = timed(lambda: random_cell(args.atoms, args.edge))
        cif = folder / "large.cif"
        CifWriter(structure).write_file(cif)
        cost = estimate_cost(structure)
        results["cell"] = {"atoms": len(structure), "edge_A": args.edge, "volume_A3": round(structure.volume),
                           "generated_s": walls[0], "cif_bytes": cif.stat().st_size,
                           "estimated_reflections": cost.reflections, "estimated_terms": cost.terms,
                           "estimated_seconds": round(cost.seconds, 1),
                           "limits": {"max_reflections": DEFAULT_MAX_REFLECTIONS, "max_cost": DEFAULT_MAX_COST}}

        command = [sys.executable, "-m", "xrdcore", "simulate", str(cif), "--out", str(folder / "large.xy")]
        runs = []
        for _ in range(args.repeats):
            before = load()
            walls, _, result = timed(lambda: subprocess.run(command, capture_output=True, text=True, check=False))
            assert result.returncode == 0, result.stderr
            runs.append({"wall_s": walls[0], "load_average": before})
        results["xrdcore_simulate"] = {"command": "xrdcore simulate large.cif --out large.xy", "runs": runs,
                                       "best_wall_s": min(r["wall_s"] for r in runs),
                                       "target_s": 30}

        before = load()
        walls, cpus, peaks = timed(lambda: peak_list(structure), args.repeats)
        results["peak_list"] = {"wall_s": walls, "cpu_s": cpus, "load_average": before, "peaks": len(peaks)}
        results["stages"] = {**stages(structure), "load_average": load()}

        refusals = {}
        refused = [sys.executable, "-m", "xrdcore", "simulate", str(cif), "--max-cost", "1e9"]
        walls, _, result = timed(lambda: subprocess.run(refused, capture_output=True, text=True, check=False))
        refusals["max_cost_1e9_cli"] = {"wall_s": walls[0], "exit": result.returncode,
                                        "message": result.stderr.strip()}
        huge = random_cell(args.atoms, 2.5 * args.edge)
        walls, _, message = timed(lambda: _refusal(lambda: peak_list(huge), CostLimitError))
        refusals["edge_x2.5_default_limits_api"] = {"wall_s": walls[0], "message": message,
                                                    "estimated_reflections": estimate_cost(huge).reflections}
        results["refusals"] = refusals

        if not args.no_baseline:
            results["baseline"] = baseline(args.baseline, cif, folder, args.baseline_timeout)
            if results["baseline"]["finished"]:
                results["baseline"]["agreement"] = agreement(peaks, folder / "old.npz")
                results["baseline"]["speedup_peak_list"] = round(
                    results["baseline"]["peak_list_s"] / min(results["peak_list"]["wall_s"]), 1)
    results["environment"]["load_average_at_end"] = load()
    out = ROOT / "benchmarks" / "results" / "large_cell-cpu.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def _refusal(call, error) -> str:
    try:
        call()
    except error as exc:
        return str(exc)
    return "not refused"


if __name__ == "__main__":
    main()
