"""`xrdcore data build coremof` with the old path (the code at a baseline commit) and the current
one in the same run, on the same first N CoRE MOF 2019-ASR entries: throughput, peak memory of the
whole process tree (workers included), and whether the verdicts are identical — the same
space-group labels, rejections (id, kind and reason), duplicates, split units and split hash, the
same stored structures and the same peak lists. Writes benchmarks/results/data_build.json.

`--full` also builds all 12,020 entries with the current path and compares it with a full build of
the old path: `--reference DIR` (a cache built by the baseline, e.g. an earlier run's) or, without
it, a fresh baseline build (~35 min on 2 cores).

Run: `.venv/bin/python benchmarks/data_build.py [--limit 1500] [--workers 2] [--full [--reference DIR]]`.
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
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: the last commit before the fast build (pymatgen's CIF parser, labelling in the main process,
#: de-duplication in one process)
BASELINE = "2b32726"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1500, help="entries for the side-by-side run (>= 1000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline", default=BASELINE, help="commit whose code is the old path")
    parser.add_argument("--full", action="store_true", help="also build all entries with the current path")
    parser.add_argument("--reference", help="a complete full build by the baseline to compare --full with")
    args = parser.parse_args()
    from xrdcore import __version__
    from xrdcore.storage import atomic_write_json

    results: dict = {"dataset": "coremof (2019-ASR)", "workers": args.workers, "baseline_commit": args.baseline,
                     "environment": {"xrdcore": __version__, "python": platform.python_version(),
                                     "device": "cpu", "cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        baseline = checkout(args.baseline, tmp / "baseline")
        old = build(baseline, tmp / "old", args.limit, args.workers)
        new = build(ROOT, tmp / "new", args.limit, args.workers)
        differences = compare(tmp / "old", tmp / "new")
        results["side_by_side"] = {
            "entries": args.limit, "old": old, "new": new,
            "speedup": round(old["seconds"] / new["seconds"], 2),
            "identical_verdicts": not differences, "differences": differences[:20],
        }
        if args.full:
            reference = Path(args.reference) if args.reference else tmp / "old-full"
            if not args.reference:
                results["full_old"] = build(baseline, reference, None, args.workers)
            full = build(ROOT, tmp / "new-full", None, args.workers)
            differences = compare(reference, tmp / "new-full")
            results["full"] = {**full, "reference": str(reference), "identical_verdicts": not differences,
                               "differences": differences[:20], "within_10_min": full["seconds"] <= 600,
                               "within_2_gb": full["peak_memory_mb"] <= 2048}
    results["identical_verdicts"] = all(results[k]["identical_verdicts"] for k in ("side_by_side", "full")
                                        if k in results)
    atomic_write_json(ROOT / "benchmarks" / "results" / "data_build.json", results)
    print(json.dumps(results, indent=2))


def checkout(commit: str, folder: Path) -> Path:
    """The baseline's code in a detached worktree (removed with the temporary folder)."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), commit],
                   check=True, capture_output=True)
    return folder


def build(code: Path, out: Path, limit: int | None, workers: int) -> dict:
    """Run `xrdcore data build coremof` from the code in ``code``; time and peak memory (RSS of the
    process and its workers summed, sampled every 0.1 s)."""
    command = [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); from xrdcore.cli import main; "
               "sys.argv = ['xrdcore'] + sys.argv[2:]; main()", str(code), "data", "build", "coremof",
               "--out", str(out), "--workers", str(workers), "--quiet", *(["--limit", str(limit)] if limit else [])]
    started = time.perf_counter()
    process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(code)})
    peak = _PeakMemory(process.pid)
    if process.wait() != 0:
        raise SystemExit(f"the build with the code in {code} failed")
    seconds = time.perf_counter() - started
    peak.stop()
    manifest = json.loads((out / "manifest.json").read_text())
    entries = limit or manifest["structures"] + manifest["rejected"] + manifest["duplicates_removed"]
    return {"seconds": round(seconds, 1), "entries_per_s": round(entries / seconds, 2),
            "peak_memory_mb": round(peak.peak / 2**20, 1), "structures_kept": manifest["structures"],
            "rejected": manifest["rejected"], "duplicates_removed": manifest["duplicates_removed"],
            "split_counts": manifest["split_counts"], "split_hash": manifest["split_hash"],
            "stage_seconds": manifest.get("stage_seconds")}


class _PeakMemory:
    """The largest total resident memory of a process and its descendants (Linux /proc)."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._done = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.1):
            self.peak = max(self.peak, sum(_rss(p) for p in _tree(self.pid)))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(status.parent.name))
    found, stack = [], [pid]
    while stack:
        p = stack.pop()
        found.append(p)
        stack += children.get(p, [])
    return found


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def compare(old: Path, new: Path) -> list[str]:
    """Every difference between two cache builds, in words (empty when the verdicts are identical)."""
    problems = []
    load = lambda folder, name: json.loads((folder / name).read_text())  # noqa: E731
    a, b = load(old, "report.json"), load(new, "report.json")
    rejected_a = {r["id"]: (r["kind"], r["reason"]) for r in a["read"]["rejected"]}
    rejected_b = {r["id"]: (r["kind"], r["reason"]) for r in b["read"]["rejected"]}
    for ident in sorted(set(rejected_a) | set(rejected_b)):
        if rejected_a.get(ident) != rejected_b.get(ident):
            problems.append(f"rejection of {ident}: {rejected_a.get(ident)} vs {rejected_b.get(ident)}")
    if [r["id"] for r in a["read"]["rejected"]] != [r["id"] for r in b["read"]["rejected"]]:
        problems.append("rejections are listed in another order")
    for key in ("accepted", "read"):
        if a["read"][key] != b["read"][key]:
            problems.append(f"{key}: {a['read'][key]} vs {b['read'][key]}")
    if a["duplicates"]["duplicate_of"] != b["duplicates"]["duplicate_of"]:
        problems.append("different duplicate groups")
    split_a, split_b = load(old, "split.json"), load(new, "split.json")
    if split_a["hash"] != split_b["hash"]:
        problems.append(f"split hash {split_a['hash']} vs {split_b['hash']}")
    if split_a["units"] != split_b["units"]:
        problems.append(f"split units {split_a['units']} vs {split_b['units']}")
    structures = [gzip.decompress((f / "structures.jsonl.gz").read_bytes()) for f in (old, new)]
    if structures[0] != structures[1]:
        lines = [s.decode().splitlines() for s in structures]
        differing = [json.loads(x)["id"] for x, y in zip(*lines) if x != y]
        problems.append(f"stored structures differ ({len(differing)} of {len(lines[0])}: {differing[:5]}; "
                        f"{len(lines[0])} vs {len(lines[1])} lines)")
    for chunk in sorted((old / "peaks").iterdir()):
        for array in sorted(chunk.glob("*.npy")):
            other = new / "peaks" / chunk.name / array.name
            if not other.exists() or not np.array_equal(np.load(array), np.load(other)):
                problems.append(f"peak lists differ in {chunk.name}/{array.name}")
    return problems


if __name__ == "__main__":
    main()
