"""Start-up of ``xrdcore list encoders``: the code at a baseline commit and the working tree, side
by side in one run, with ``python -c pass`` as the floor and ``python -c "import pluggy"`` as the
floor of any registry built on pluggy (its import alone). The same listing through the Python API
(``REGISTRY``, no argument parser) tells the registry's share from the command line's.

The working tree is timed twice: ``after`` answers from the listing remembered in its environment
(:mod:`xrdcore.discovery`; every call but the first after an install or an edit of a plugin), and
``after_cold`` has that listing deleted before each run, so it loads every plugin and writes the
listing again (the first call).

Both run through the same console script with the same installed plugins (the same entry points);
only ``PYTHONPATH`` differs: a detached worktree of the baseline, or this repository. The runs
alternate (the four commands, rotated each round) so that other load on the machine falls on
all alike. Bytecode is cached in a temporary ``PYTHONPYCACHEPREFIX`` and warmed first, as for
an installed package, even where ``PYTHONDONTWRITEBYTECODE`` is set. Both outputs must be the
same (components, plugins, their versions and statuses). Writes
benchmarks/results/cli_startup-cpu.json.

Run: ``.venv/bin/python benchmarks/cli_startup.py [--runs 40] [--baseline 83564f1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: main before the registry read entry points itself (importlib.metadata's full scan)
BASELINE = "83564f1"
COMMAND = ["list", "encoders"]
REGISTRY = "import xrdcore; r = xrdcore.get_registry(); [r.get('encoder', n) for n in r.names('encoder')]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="timed runs of each command")
    parser.add_argument("--baseline", default=BASELINE, help="commit whose code is 'before'")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cli_startup-cpu.json")
    args = parser.parse_args()
    from xrdcore.storage import atomic_write_json

    script = str(Path(sys.executable).with_name("xrdcore"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        baseline = checkout(args.baseline, tmp / "baseline")
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("XRDCORE_")
                   and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
            before, after = {**env, "PYTHONPATH": str(baseline)}, {**env, "PYTHONPATH": str(ROOT)}
            after_cold = {**after, "XRDCORE_CACHE_DIR": str(tmp / "cold")}
            after["XRDCORE_CACHE_DIR"] = str(tmp / "warm")
            commands = {"floor": ([sys.executable, "-c", "pass"], env),
                        "pluggy": ([sys.executable, "-c", "import pluggy"], env),
                        "before": ([script, *COMMAND], before), "after": ([script, *COMMAND], after),
                        "after_cold": ([script, *COMMAND], after_cold),
                        "registry_before": ([sys.executable, "-c", REGISTRY], before),
                        "registry_after": ([sys.executable, "-c", REGISTRY], after)}
            same_output = compare(script, before, after) and compare(script, before, after)  # cold, warm
            for _ in range(3):  # compile and cache the bytecode
                for command, command_env in commands.values():
                    subprocess.run(command, env=command_env, check=True, stdout=subprocess.DEVNULL)
            seconds = alternate(commands, args.runs, forget=tmp / "cold")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
                           check=True, capture_output=True)

    summary = {name: {"min": round(min(s), 4), "median": round(statistics.median(s), 4),
                      "max": round(max(s), 4)} for name, s in seconds.items()}
    median = {name: s["median"] for name, s in summary.items()}
    results = {
        "what": f"wall seconds of `xrdcore {' '.join(COMMAND)}` (console script, bytecode cached): the code at "
                "the baseline commit vs the working tree, same installed plugins; after: from the remembered "
                "listing; after_cold: with it deleted before each run; floor: `python -c pass`; "
                f"pluggy: `python -c 'import pluggy'`; registry_*: `python -c \"{REGISTRY}\"`",
        "runs": args.runs, "baseline_commit": args.baseline, "commit": commit(), "seconds": summary,
        "speedup_median": round(median["before"] / median["after"], 2),
        "speedup_median_above_floor": round((median["before"] - median["floor"])
                                            / (median["after"] - median["floor"]), 2),
        "speedup_median_cold": round(median["before"] / median["after_cold"], 2),
        "registry_speedup_median": round(median["registry_before"] / median["registry_after"], 2),
        "same_output": same_output,
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "processor": platform.processor() or None, "cpus": os.cpu_count(), "device": "cpu",
                        "note": "other jobs may have shared the machine; the runs alternate so that they "
                                "share it alike"}}
    atomic_write_json(args.out, results)
    print(json.dumps(results, indent=2))
    if not same_output:
        raise SystemExit("before and after list different components or plugins")


def checkout(commit: str, folder: Path) -> Path:
    """The baseline's code in a detached worktree."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), commit],
                   check=True, capture_output=True)
    return folder


def commit() -> str:
    """HEAD, marked ``-dirty`` when the working tree's xrdcore/ differs from it."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "xrdcore"], check=True,
                           capture_output=True, text=True).stdout.strip()
    return head + ("-dirty" if dirty else "")


def compare(script: str, before_env: dict, after_env: dict) -> bool:
    """Whether both list the same components from the same plugins, and report the same plugins,
    versions, statuses and errors (descriptions may have been reworded since the baseline)."""
    def outputs(env: dict) -> tuple:
        def run(*arguments: str):
            return json.loads(subprocess.run([script, *arguments, "--json"], env=env, check=True,
                                             capture_output=True, text=True).stdout)

        rows = [(r["name"], r["qualified_name"], r["plugin"], r["builtin"]) for r in run(*COMMAND)]
        plugins = [(p["name"], p["version"], p["status"], p["components"], p["errors"])
                   for p in run("plugins")["plugins"]]
        return rows, plugins

    return outputs(before_env) == outputs(after_env)


def alternate(commands: dict[str, tuple[list[str], dict]], runs: int, forget: Path) -> dict[str, list[float]]:
    """Wall seconds of each command, ``runs`` times, in an order rotated every round; the folder
    ``forget`` is emptied before each run (outside the timing)."""
    names = list(commands)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        for name in names[i % len(names):] + names[:i % len(names)]:
            command, env = commands[name]
            shutil.rmtree(forget, ignore_errors=True)
            started = time.perf_counter()
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
            seconds[name].append(time.perf_counter() - started)
    return seconds


if __name__ == "__main__":
    main()
