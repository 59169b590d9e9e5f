"""End-to-end time of `xrdcore data build coremof` with 2 workers: read, label, de-duplicate,
split and simulate, on the first N CoRE MOF 2019-ASR entries (the full 12,020 take hours on a
2-core machine, mostly pymatgen's CIF parser). Writes benchmarks/results/data_build.json.

Run: `.venv/bin/python benchmarks/data_build.py [--limit 300] [--workers 2]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from xrdcore import __version__
    from xrdcore.storage import atomic_write_json

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coremof"
        command = [sys.executable, "-m", "xrdcore", "data", "build", "coremof", "--out", str(out),
                   "--limit", str(args.limit), "--workers", str(args.workers), "--quiet"]
        started = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - started
        manifest = json.loads((out / "manifest.json").read_text())
        report = json.loads((out / "report.json").read_text())
    kept = manifest["structures"]
    results = {
        "dataset": "coremof (2019-ASR)", "entries_read": args.limit, "workers": args.workers,
        "structures_kept": kept, "rejected": manifest["rejected"],
        "rejected_by_kind": report["read"]["rejected_by_kind"],
        "duplicates_removed": manifest["duplicates_removed"], "split_counts": manifest["split_counts"],
        "seconds_end_to_end": round(seconds, 1), "patterns_per_s": round(kept / seconds, 2),
        "entries_per_s": round(args.limit / seconds, 2),
        "full_12020_estimate_hours": round(12020 / (args.limit / seconds) / 3600, 2),
        "environment": {"xrdcore": __version__, "python": platform.python_version(), "device": "cpu",
                        "cpus": __import__("os").cpu_count()},
    }
    atomic_write_json(ROOT / "benchmarks" / "results" / "data_build.json", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
