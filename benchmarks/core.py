"""Core start-up and label throughput, written to benchmarks/results/core.json.

What it guards: every `xrdcore` command loads the registry, so plugin loading must not import
torch (design target: CLI start-up well under a second); the space-group tables are built once
per process from spglib; label lookup is a vectorised gather that must keep up with any data
loader. Run: `.venv/bin/python benchmarks/core.py`.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results") / "core.json"


def wall(command: list[str], repeats: int = 5) -> float:
    """Median wall time of a fresh process, in seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XRDCORE_")}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import numpy as np
    import torch

    from xrdcore import __version__
    from xrdcore.crystal import LabelHierarchy, level_names

    python = sys.executable
    results = {
        "cli_plugins_s": wall([python, "-m", "xrdcore", "plugins"]),
        "cli_labels_s": wall([python, "-m", "xrdcore", "labels", "225"]),
        "table_build_cold_s": wall([python, "-c", "from xrdcore.crystal import space_groups; space_groups()"]),
        "python_startup_s": wall([python, "-c", "pass"]),
    }
    hierarchy = LabelHierarchy(level_names())
    numbers = np.random.default_rng(0).integers(1, 231, 1_000_000)
    tensor = torch.from_numpy(numbers)
    for name, data in (("numpy", numbers), ("torch", tensor)):
        hierarchy.targets(data[:10])
        start = time.perf_counter()
        hierarchy.targets(data)
        seconds = time.perf_counter() - start
        results[f"targets_{name}_labels_per_s_all_9_levels"] = len(numbers) / seconds
    results["environment"] = {
        "xrdcore": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "machine": platform.machine(), "cpus": os.cpu_count(), "device": "cpu",
    }
    RESULTS.parent.mkdir(exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(RESULTS)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
