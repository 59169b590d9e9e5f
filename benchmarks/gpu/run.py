"""The GPU benchmarks in one command that fits a lent machine (one H100/H200, torch, no pymatgen,
spglib or pyxtal, no network, at most 10 minutes a command): prepared and proven on the CPU first
(``--dry-run``), because GPU time comes rarely and in one short piece.

Stages, each under its own time budget, each result file rewritten the moment a number is measured
(a run stopped at any point still leaves JSON):

* ``import``      the carried compact CoRE MOF export into a peak cache (``xrdcore data import``);
* ``scan``        selective scan, forward + backward: mamba-ssm's fused kernel (when it imports), the
                  pure PyTorch chunked scan and the loop, L = 8,500, batches 1-64, and each one's
                  agreement with a float64 loop (plugins/xrd-mamba/benchmarks/scan.py);
* ``throughput``  training samples/s and peak memory of every encoder's ``full`` variant, one epoch
                  of the training split (fewer structures when an epoch does not fit, said per row);
* ``simulator``   the batched simulator on CUDA vs the CPU (needs pymatgen and structures: skipped
                  with the reason where they are absent, as on the lent machines);
* ``leaderboard`` the reference leaderboard (benchmarks/coremof_reference.py's rows) on the full
                  export with ``full`` variants: every row with seed 0, then more seeds for the best
                  rows by validation and the mixed rows, as many as fit; ``--resume`` continues it.

Files, in ``--out`` (default ``$OUT``, else benchmarks/results), suffix ``gpu`` (``cpu-dryrun``
with ``--dry-run``): stages-S.json (device, versions, stage times and statuses), mamba-scan-S.json,
encoder-throughput-S.json, simulator-S.json, coremof-reference-S.json, and resume-S.json.xz (the
complete stages and finished leaderboard runs: the one small file a second call carries, on a fresh
machine, for ``--resume``; about 6 kB a run).

Run through benchmarks/gpu/run.sh, which installs the tree and the carried wheels first.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import lzma
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: the carried folder (wheels and the export; prepare.sh makes it); GPU_CARRY moves it (tests)
CARRY = Path(os.environ.get("GPU_CARRY") or ROOT / "benchmarks" / "gpu" / "carry")
STAGES = ("import", "scan", "throughput", "simulator", "leaderboard")
#: files of each stage (``{}`` is the suffix); ``resume`` holds what a later call needs, compressed
#: (complete stages and finished leaderboard runs): the one file a second call must carry
FILES = {"stages": "stages-{}.json", "scan": "mamba-scan-{}.json", "throughput": "encoder-throughput-{}.json",
         "simulator": "simulator-{}.json", "leaderboard": "coremof-reference-{}.json",
         "resume": "resume-{}.json.xz"}
#: what a GPU run and a dry run measure; the dry run is the same code on tiny models and sizes
MODES = {
    "gpu": {"device": "cuda", "size": "full", "step": 0.01, "deadline": 525, "scan_length": 8500,
            "scan_batches": "1,8,32,64", "scan_repeats": 3, "scan_threads": "", "probe": 512,
            "run_seconds": 25.0, "more_seeds": "1,2", "best": 3, "simulator_structures": 64, "min_atoms": 200,
            "budgets": {"scan": 110, "throughput": 150, "simulator": 40}},
    "cpu-dryrun": {"device": "cpu", "size": "tiny", "step": 0.1, "deadline": 300, "scan_length": 256,
                   "scan_batches": "1,2", "scan_repeats": 1, "scan_threads": "1", "probe": 32,
                   "run_seconds": None, "more_seeds": "1", "best": 1, "simulator_structures": 8, "min_atoms": 1,
                   "budgets": {"scan": 60, "throughput": 60, "simulator": 30}},
}
#: why the fused kernel is not carried (see benchmarks/gpu/prepare.sh)
KERNEL_NOTE = ("no mamba-ssm wheel is carried: PyPI, the only registry reachable where this was prepared, has "
               "only its source; its prebuilt wheels are GitHub release assets built per torch/CUDA pair (the "
               "release matrix stopped at torch 2.10 into mid-2026, state-spaces/mamba#999), and compiling its "
               "CUDA extension takes 15-35 minutes on 48 cores (same thread), past one 10-minute command")


class StageTimeout(BaseException):
    """The stage's hard time limit passed (a BaseException, so that the harness's per-run
    ``except Exception`` does not record it as a failed run)."""


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    mode = MODES["cpu-dryrun" if args.dry_run else "gpu"]
    suffix = "cpu-dryrun" if args.dry_run else "gpu"
    started = float(os.environ.get("GPU_RUN_STARTED") or time.time())
    deadline = started + (args.deadline or mode["deadline"])
    out = Path(args.out or os.environ.get("OUT") or ROOT / "benchmarks" / "results")
    work = Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    previous = None
    if args.resume is not None:
        candidates = [Path(args.resume)] if args.resume else [out, CARRY]
        previous = next((d / FILES["resume"].format(suffix) for d in candidates
                         if (d / FILES["resume"].format(suffix)).is_file()), None)
        if previous is None:
            sys.exit(f"run.py: --resume: no {FILES['resume'].format(suffix)} in {' or '.join(map(str, candidates))}")
    if mode["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit("run.py: no CUDA device here (torch.cuda.is_available() is False); on a CPU use --dry-run")
    run = Run(args, mode, suffix, out, work, previous, deadline)
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGTERM, _terminated)
    run.go([s for s in args.stages.split(",") if s])
    return 0


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny variants, short scans: the same code, checked before any GPU time is spent")
    parser.add_argument("--export", type=Path,
                        help="the compact export to train on (default: the carried CoRE MOF export; with --dry-run "
                             "an export of 200 AFLOW prototypes, built in --work where pymatgen is installed)")
    parser.add_argument("--out", help="results folder (default: $OUT, else benchmarks/results)")
    parser.add_argument("--work", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "xrdcore-gpu-work"),
                        help="imported cache and training runs (kept between calls on one machine)")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="DIR",
                        help="continue from DIR's resume-*.json.xz (default: --out's, else the carried folder's): "
                             "its complete stages are kept, its finished leaderboard runs restored")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    parser.add_argument("--deadline", type=float,
                        help="seconds from the start of run.sh by which everything has ended (GPU 525, dry run 300)")
    parser.add_argument("--run-seconds", type=float, help="training seconds per leaderboard run (GPU: 25)")
    parser.add_argument("--max-runs", type=int, help="train at most N leaderboard runs in this call")
    parser.add_argument("--encoders", default="*", help="encoder names or globs (throughput and leaderboard)")
    parser.add_argument("--structures-cache", type=Path,
                        help="a cache built with structures, for the simulator stage (needs pymatgen)")
    args = parser.parse_args(argv)
    if args.export is None and not args.dry_run:
        args.export = CARRY / "coremof.xrdexport"
    unknown = sorted({s for s in args.stages.split(",") if s} - set(STAGES))
    if unknown:
        parser.error(f"unknown stages {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    return args


def _alarm(signum, frame):
    raise StageTimeout()


def _terminated(signum, frame):
    """A kill from outside (a timeout around the command) ends the run with its files written."""
    raise SystemExit(f"run.py: terminated by signal {signum}")


def _module(path: Path, name: str):
    """A benchmark script as a module: its helpers are reused, not copied."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, data: Any) -> None:
    from xrdcore.storage import atomic_write_json

    atomic_write_json(path, data)


def _finite(value: Any) -> Any:
    """NaN and infinities as None: strict JSON readers refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class Run:
    """One call: the stages in order, each under its budget, every file rewritten as numbers come."""

    def __init__(self, args, mode, suffix, out: Path, work: Path, previous: Path | None, deadline: float):
        self.args, self.mode, self.suffix, self.out, self.work = args, mode, suffix, out, work
        self.previous, self.deadline = previous, deadline
        #: what --resume brought (stages, runs) and what this call will leave for the next one
        self.earlier = json.loads(lzma.decompress(previous.read_bytes())) if previous else {"stages": {}, "runs": {}}
        self.resume = {"stages": dict(self.earlier["stages"]), "runs": dict(self.earlier["runs"]),
                       "data_key": self.earlier.get("data_key")}
        self.device = mode["device"]
        self.cache = None
        self.throughput: dict[str, Any] = {}
        self.summary: dict[str, Any] = {
            "what": "benchmarks/gpu/run.py" + (" --dry-run (CPU, tiny variants)" if args.dry_run else ""),
            "command": sys.argv, "mode": suffix,
            "install": json.loads(os.environ.get("GPU_INSTALL_REPORT") or "null"),
            "carry": _carry_listing(), "stages": {}, "resumed_from": str(previous) if previous else None}

    def path(self, key: str) -> Path:
        return self.out / FILES[key].format(self.suffix)

    def left(self) -> float:
        return self.deadline - time.time()

    def save(self) -> None:
        self.summary["seconds_left_at_last_write"] = round(self.left(), 1)
        _write(self.path("stages"), _finite(self.summary))

    def go(self, stages: list[str]) -> None:
        try:
            self.summary["environment"] = self.environment()
        except Exception as exc:  # an environment that cannot even import xrdcore is the result
            self.summary["environment"] = {"error": f"{type(exc).__name__}: {exc}"}
            self.save()
            raise
        self.save()
        for stage in STAGES:
            if stage not in stages:
                continue
            if stage != "import" and self.cache is None and stage in ("throughput", "leaderboard"):
                self.record(stage, "skipped", 0, "the export was not imported")
                continue
            budget = self.budget(stage)
            if budget <= 0:
                self.record(stage, "skipped", 0, f"no time left ({self.left():.0f} s before the deadline)")
                continue
            begun = time.time()
            # a hard stop a little past the soft budget, never past the deadline
            signal.setitimer(signal.ITIMER_REAL, max(min(budget + 15, self.left() - 3), 1))
            try:
                status, note = getattr(self, f"stage_{stage}")(begun + budget)
            except StageTimeout:
                status, note = "timed out", f"stopped after its {budget:.0f} s budget; its file holds what ended"
            except SystemExit as exc:
                self.record(stage, "terminated", time.time() - begun, str(exc), budget)
                raise
            except Exception as exc:  # noqa: BLE001 - one stage failing must not cost the others
                status, note = "failed", f"{type(exc).__name__}: {exc}"
                self.summary.setdefault("tracebacks", {})[stage] = traceback.format_exc()[-4000:]
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            self.record(stage, status, time.time() - begun, note, budget)
        print(json.dumps({k: v["status"] for k, v in self.summary["stages"].items()}), flush=True)

    def budget(self, stage: str) -> float:
        """Seconds the stage may take: its own share, never past the deadline less what later
        stages are promised; the leaderboard takes what is left."""
        margin = 10.0
        if stage == "import":
            return self.left() - margin
        if stage == "leaderboard":
            return self.left() - margin
        later = [s for s in STAGES[STAGES.index(stage) + 1:-1] if s in self.args.stages.split(",")]
        promised = sum(self.mode["budgets"][s] for s in later) * 0.5  # later stages often end early
        return min(self.mode["budgets"][stage], self.left() - margin - promised)

    def record(self, stage, status, seconds, note=None, budget=None) -> None:
        self.summary["stages"][stage] = {"status": status, "seconds": round(seconds, 1),
                                         **({"budget_s": round(budget, 1)} if budget is not None else {}),
                                         **({"note": note} if note else {})}
        print(f"[{stage}] {status} in {seconds:.1f} s{': ' + note if note else ''}", flush=True)
        self.save()

    def environment(self) -> dict[str, Any]:
        import torch

        from xrdcore.environment import environment

        env = environment(self.device)
        if self.device == "cuda":
            env.update({"gpu_count": torch.cuda.device_count(),
                        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                        "cudnn": torch.backends.cudnn.version()})
        return env

    def stamp(self, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "environment": self.summary["environment"], "mode": self.suffix,
                "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def kept(self, key: str) -> bool:
        """With --resume: a stage complete in an earlier call is written out again, not redone."""
        data = self.earlier["stages"].get(key)
        if not data or data.get("status") != "complete":
            return False
        _write(self.path(key), data)
        return True

    def finished(self, key: str, data: dict[str, Any]) -> None:
        """Write a stage's result; a complete one also goes into the resume file."""
        _write(self.path(key), data)
        if data.get("status") == "complete":
            self.resume["stages"][key] = data
            self.save_resume()

    def save_resume(self) -> None:
        from xrdcore.storage import atomic_write_bytes

        atomic_write_bytes(self.path("resume"), lzma.compress(json.dumps(self.resume).encode(), preset=9))

    # --- stages -------------------------------------------------------------------------------

    def stage_import(self, until: float):
        """The export into work/cache, reused while the same file is imported again."""
        from xrdcore.data.cache import PeakCache
        from xrdcore.data.export import import_cache

        export = self.args.export or _dry_run_export(self.work)
        if not export.is_file():
            raise FileNotFoundError(f"{export}: no export; build the carried folder with `make gpu-carry`")
        target, marker = self.work / "cache", self.work / "cache.source.json"
        source = {"file": str(export.resolve()), "bytes": export.stat().st_size, "mtime_ns": export.stat().st_mtime_ns}
        reused = marker.is_file() and json.loads(marker.read_text()) == source and (target / "manifest.json").is_file()
        if not reused:
            shutil.rmtree(target, ignore_errors=True)
            marker.unlink(missing_ok=True)
            import_cache(export, target)
            _write(marker, source)
        self.cache = PeakCache(target)
        self.summary["export"] = str(export)
        counts = self.cache.describe()["split_counts"]
        self.summary["data"] = {"structures": len(self.cache), "split_counts": counts,
                                "split_hash": self.cache.manifest["split_hash"],
                                "dataset": self.cache.manifest["spec"]["dataset"],
                                "export_mib": round(source["bytes"] / 2**20, 2), "reused_import": reused}
        return "complete", f"{len(self.cache)} structures ({'reused' if reused else 'imported'})"

    def stage_scan(self, until: float):
        if self.kept("scan"):
            return "kept", f"complete in an earlier call ({self.previous.name})"
        import torch

        bench = _module(ROOT / "plugins" / "xrd-mamba" / "benchmarks" / "scan.py", "xrd_mamba_scan_benchmark")
        device, length, d_inner, state = self.device, self.mode["scan_length"], 16, 16
        methods = list(bench.METHODS[device])
        skipped = {}
        if "kernel" in methods:
            reason = _kernel_unavailable()
            if reason:
                methods.remove("kernel")
                skipped["kernel"] = f"kernel unavailable: {reason}; {KERNEL_NOTE}"
        elif device == "cpu":
            skipped["kernel"] = "mamba-ssm's kernel is CUDA-only; the dry run measures loop and chunked"
        result: dict[str, Any] = {
            "benchmark": f"selective scan, forward + backward, float32 on {device}: {', '.join(methods)}",
            "settings": {"length": length, "d_inner": d_inner, "d_state": state,
                         "batches": [int(b) for b in self.mode["scan_batches"].split(",")],
                         "repeats": self.mode["scan_repeats"], "timing": "median of repeats after one warm-up "
                         "pass (the one whose peak memory is read); CUDA synchronised; each size in a fresh process"},
            "skipped": skipped, "status": "running", "runs": [], "comparison": {}}
        path = self.path("scan")
        _write(path, self.stamp(result))
        result["agreement"] = {
            "what": "largest |difference| / largest |value| of y and of every gradient, batch 2, against a float64 "
                    "loop on the same device",
            **bench.agreement(tuple(methods), length, d_inner, state, device)}
        _write(path, self.stamp(_finite(result)))
        # the fast methods at every size first, the loop last: a budget cut loses loop rows only
        measured: dict[tuple[str, int], dict] = {}
        order = [m for m in ("kernel", "chunked", "loop") if m in methods]
        for method in order:
            for batch in result["settings"]["batches"]:
                left = until - time.time()
                if left < 5:
                    result["status"] = "partial"
                    result["stopped"] = f"budget spent before {method} at batch {batch}"
                    _write(path, self.stamp(_finite(result)))
                    return "partial", result["stopped"]
                command = [sys.executable, str(Path(bench.__file__)), "--worker", method, "--device", device,
                           "--batch", str(batch), "--length", str(length), "--d-inner", str(d_inner),
                           "--state", str(state), "--repeats", str(self.mode["scan_repeats"]),
                           "--threads", self.mode["scan_threads"]]
                try:
                    done = subprocess.run(command, capture_output=True, text=True, timeout=left, check=False)
                except subprocess.TimeoutExpired:
                    result["runs"].append({"method": method, "batch": batch, "error": f"timed out after {left:.0f} s"})
                    continue
                if done.returncode:
                    tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
                    result["runs"].append({"method": method, "batch": batch, "error": tail[0][:300]})
                else:
                    measured[method, batch] = json.loads(done.stdout.strip().splitlines()[-1])
                    result["runs"].append(measured[method, batch])
                result["comparison"] = _scan_comparison(measured, result["settings"]["batches"], length, d_inner,
                                                        state)
                _write(path, self.stamp(_finite(result)))
        result["status"] = "complete"
        result["torch_threads"] = torch.get_num_threads()
        self.finished("scan", self.stamp(_finite(result)))
        return "complete", None

    def stage_throughput(self, until: float):
        """One epoch of every encoder through ``xrdcore.train.train`` (what the leaderboard runs),
        after a short probe run that warms kernels up and predicts whether the epoch fits."""
        if self.kept("throughput"):
            self.throughput = json.loads(self.path("throughput").read_text())
            return "kept", f"complete in an earlier call ({self.previous.name})"
        import torch

        import xrdcore
        from xrdcore.bench.harness import select_names
        from xrdcore.train.config import encoder_input_kind, run_config
        from xrdcore.train.inputs import PEAK_CACHE_KINDS, split_inputs
        from xrdcore.train.trainer import resolve_device, train

        registry = xrdcore.get_registry()
        device = resolve_device(self.device)
        scan = _module(ROOT / "plugins" / "xrd-mamba" / "benchmarks" / "scan.py", "xrd_mamba_scan_benchmark")
        names = select_names(registry, "encoder", self.args.encoders, None)  # as the leaderboard stage selects
        n_train = len(self.cache.indices("train"))
        result: dict[str, Any] = {
            "benchmark": f"training throughput of every encoder's {self.mode['size']} variant: one epoch of the "
                         f"{n_train} training structures (batch 64, the recipe), grid step {self.mode['step']}°",
            "samples_per_s": "training samples / training seconds of the epoch (xrdcore.train's own count; "
                             "validation and test scoring excluded), after a probe run of a few batches",
            "peak_memory": "cuda: torch.cuda.max_memory_allocated over the epoch; cpu: rise of the resident set",
            "status": "running", "encoders": []}
        path, root = self.path("throughput"), self.work / "throughput"
        shutil.rmtree(root, ignore_errors=True)
        configs, inputs = {}, {}
        for name in names:
            kind = encoder_input_kind(registry, name)
            if kind not in PEAK_CACHE_KINDS:
                result["encoders"].append({"encoder": name, "skipped": f"takes {kind}: simulated from structures "
                                           "(pymatgen), which an imported export does not carry"})
                continue
            configs[name] = run_config(name, hierarchy="flat", scheduler="sum", size=self.mode["size"],
                                       input={"step": self.mode["step"]},
                                       training={"epochs": 1, "patience": None, "warmup_epochs": 0.0},
                                       registry=registry)
        result["inputs_seconds"] = {}
        for config in configs.values():  # every split's inputs once, before the encoders share the time
            if config.input not in inputs:
                begun = time.time()
                inputs[config.input] = split_inputs(self.cache, config.input, device, (), registry)
                result["inputs_seconds"][config.input.kind] = round(time.time() - begun, 2)
                _write(path, self.stamp(_finite(result)))
        for k, (name, config) in enumerate(configs.items()):
            share = (until - time.time()) / (len(configs) - k)
            if share < 3:
                result["encoders"].append({"encoder": name, "skipped": "no time left in the stage's budget"})
                continue
            row: dict[str, Any] = {"encoder": name, "input": config.input.kind}
            try:
                begun = time.time()
                probe = train(replace(config, train_limit=min(self.mode["probe"], n_train)), self.cache,
                              root / name / "probe", device=str(device), progress=False, registry=registry,
                              inputs=inputs[config.input])
                probe_s = time.time() - begun
                fits = int(probe["samples_per_s"] * max(share - probe_s, 1) * 0.9)  # the probe includes warm-up: slow
                n = n_train if fits >= n_train else max(2, fits)
                row.update({"parameters": probe["parameters"], "probe_samples_per_s": probe["samples_per_s"],
                            "train_structures": n, "full_epoch": n == n_train})
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                else:
                    exact = scan._reset_peak()
                    base = scan._status_kb("VmRSS") if exact else None
                begun = time.time()
                metrics = train(replace(config, train_limit=n if n < n_train else None), self.cache,
                                root / name / "epoch", device=str(device), progress=False, registry=registry,
                                inputs=inputs[config.input])
                row.update({"samples_per_s": metrics["samples_per_s"], "train_seconds": metrics["train_seconds"],
                            "wall_seconds": round(time.time() - begun, 2),
                            "epoch_seconds_full_split": n_train / metrics["samples_per_s"]})
                if device.type == "cuda":
                    row["peak_memory_mb"] = {"allocated": torch.cuda.max_memory_allocated() / 2**20,
                                             "reserved": torch.cuda.max_memory_reserved() / 2**20,
                                             "rise_over_start": (torch.cuda.max_memory_allocated() - base) / 2**20}
                elif base is not None:
                    row["peak_memory_mb"] = {"rss_rise": (scan._status_kb("VmHWM") - base) / 1024}
            except StageTimeout:
                row["error"] = "stopped by the stage's time limit"
                result["encoders"].append(row)
                _write(path, self.stamp(_finite(result)))
                raise
            except Exception as exc:  # noqa: BLE001 - one encoder failing is its row's result
                row["error"] = f"{type(exc).__name__}: {exc}"
            result["encoders"].append(row)
            print(f"[throughput] {name}: {row.get('samples_per_s') or row.get('error')}", flush=True)
            _write(path, self.stamp(_finite(result)))
        complete = all("samples_per_s" in r or "takes" in r.get("skipped", "") for r in result["encoders"])
        result["status"] = "complete" if complete else "partial"
        self.finished("throughput", self.stamp(_finite(result)))
        self.throughput = result
        return result["status"], None

    def stage_simulator(self, until: float):
        """peak_lists on CUDA vs the CPU, where it can run: it needs pymatgen (scattering table,
        elements, Structure objects) and structures, which a compact export does not hold."""
        if self.kept("simulator"):
            return "kept", f"complete in an earlier call ({self.previous.name})"
        path = self.path("simulator")
        missing = _pymatgen_missing()
        if missing or self.args.structures_cache is None:
            reason = missing or ("no structures: the carried export holds peak lists only (pass --structures-cache "
                                 "with a cache built from CIFs)")
            self.finished("simulator", self.stamp({"status": "skipped", "reason": reason}))
            return "skipped", reason
        import numpy as np
        import torch

        from xrdcore.data.cache import PeakCache
        from xrdcore.diffraction.pxrd import peak_lists

        cache = PeakCache(self.args.structures_cache)
        structures = []
        for i in range(len(cache)):
            structure = cache.structure(i)
            if len(structure) >= self.mode["min_atoms"]:
                structures.append(structure)
            if len(structures) == self.mode["simulator_structures"] or time.time() > until - 20:
                break
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        result: dict[str, Any] = {"benchmark": "xrdcore.diffraction.pxrd.peak_lists, all structures in one call",
                                  "structures": len(structures), "atoms": [len(s) for s in structures],
                                  "status": "running", "devices": {}}
        if not torch.cuda.is_available():
            result["cuda"] = "no CUDA device here: CPU only"
        lists = {}
        for device in devices:
            peak_lists(structures[:1], device=device)  # warm-up: tables, kernels
            if device == "cuda":
                torch.cuda.synchronize()
            begun = time.perf_counter()
            lists[device] = peak_lists(structures, device=device)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - begun
            result["devices"][device] = {"seconds": seconds, "patterns_per_s": len(structures) / seconds}
            _write(path, self.stamp(_finite(result)))
        if "cuda" in lists:
            same = [len(a) == len(b) for a, b in zip(lists["cpu"], lists["cuda"])]
            result["agreement"] = {"same_peak_count": sum(same), "of": len(same), "max_intensity_difference": max(
                (float(np.abs(a.intensity - b.intensity).max(initial=0)) for a, b, s in
                 zip(lists["cpu"], lists["cuda"], same) if s), default=None)}
            result["speedup_cuda_over_cpu"] = result["devices"]["cpu"]["seconds"] / result["devices"]["cuda"]["seconds"]
        result["status"] = "complete"
        self.finished("simulator", self.stamp(_finite(result)))
        return "complete", None

    def stage_leaderboard(self, until: float):
        return Leaderboard(self, until).run()


class Leaderboard:
    """coremof_reference.py's rows and seed plan on the imported export, run one at a time while
    the next one is predicted to fit; finished runs are archived for ``--resume`` elsewhere."""

    def __init__(self, run: Run, until: float):
        self.run_, self.until = run, until
        self.ref = _module(ROOT / "benchmarks" / "coremof_reference.py", "coremof_reference")
        self.dir = run.work / "leaderboard"
        self.trained: list[str] = []
        self.restored: list[str] = []
        self.deferred: dict[str, str] = {}

    def run(self):
        import xrdcore
        from xrdcore.bench.harness import (
            Bench,
            BenchSettings,
            Combination,
            claim_bench_dir,
            find_combinations,
        )
        from xrdcore.train.inputs import PEAK_CACHE_KINDS

        run, mode = self.run_, self.run_.mode
        registry = xrdcore.get_registry()
        more = tuple(int(s) for s in mode["more_seeds"].split(",") if s)
        seconds = run.args.run_seconds or mode["run_seconds"]
        training = {"time_budget": seconds} if seconds else {"epochs": 1, "patience": None, "warmup_epochs": 0.0}
        self.settings = BenchSettings(encoders=run.args.encoders, hierarchies="flat", schedulers="sum",
                                      size=mode["size"], seeds=(0, *more), training=training,
                                      input={"step": mode["step"]})
        combos, skipped = find_combinations(self.settings, registry, input_kinds=PEAK_CACHE_KINDS)
        mixed = [Combination(*row) for row in self.ref.MIXED if self.ref._installed(registry, row)]
        self.combos, self.mixed = combos, mixed
        self.everything = sorted(combos + mixed, key=lambda c: c.id)
        if run.previous is None:
            shutil.rmtree(self.dir, ignore_errors=True)
        claim_bench_dir(self.dir, "xrdcore-gpu-reference/1", {**self.settings.to_dict(), "best": mode["best"],
                        "mixed": [list(m) for m in self.ref.MIXED]}, run.cache, resume=True)
        self.restore()
        self.bench = Bench(run.cache, self.dir, self.settings, registry, skipped, run.device, sys.argv, progress=False)
        self.seeds = {c.id: [0] for c in self.everything}
        self.write("running")
        for combo in self.everything:
            if not self.train(combo, 0):
                return self.stop()
        if any(not self.done(c, 0) for c in self.everything):
            return self.stop()
        best = self.ref._best_by_validation(self.dir, combos, mode["best"])
        for combo in {c.id: c for c in best + mixed}.values():
            self.seeds[combo.id] = [0, *more]
        self.best = best
        for combo in self.everything:
            for seed in self.seeds[combo.id][1:]:
                if not self.train(combo, seed):
                    return self.stop()
        status = "complete" if all(self.done(c, s) for c in self.everything for s in self.seeds[c.id]) else "partial"
        self.write(status)
        return status, f"{len(self.trained)} runs trained, {len(self.restored)} restored"

    def stop(self):
        self.write("partial")
        pending = sum(not self.done(c, s) for c in self.everything for s in self.seeds[c.id])
        return "partial", (f"{len(self.trained)} runs trained, {len(self.restored)} restored, {pending} pending: "
                           "continue with --resume")

    def done(self, combo, seed) -> bool:
        return (self.dir / "runs" / combo.id / f"seed{seed}" / "metrics.json").is_file()

    def estimate(self, combo) -> float:
        """Seconds a run should take: its time budget, or one epoch where that is longer (the
        budget is only applied after the first epoch), plus scoring and start-up."""
        seconds = self.settings.training.get("time_budget") or 0.0
        epoch = 0.0
        for row in self.run_.throughput.get("encoders", []):
            if row.get("encoder") == combo.encoder and row.get("epoch_seconds_full_split"):
                epoch = row["epoch_seconds_full_split"]
        finished = [json.loads((self.dir / "runs" / c.id / "seed0" / "metrics.json").read_text())["wall_seconds"]
                    for c in self.everything if self.done(c, 0)]
        overhead = max([w - seconds for w in finished] + [5.0])
        return max(seconds, epoch) + overhead + 5.0

    def train(self, combo, seed) -> bool:
        """Train one run if it fits; False when this call must stop (time or --max-runs)."""
        key = f"{combo.id}/seed{seed}"
        if self.done(combo, seed):
            return True
        if self.run_.args.max_runs is not None and len(self.trained) >= self.run_.args.max_runs:
            return False
        need, left = self.estimate(combo), self.until - time.time()
        if need > left:
            self.deferred[key] = f"needs about {need:.0f} s, {left:.0f} s left"
            return True  # a later, shorter run may still fit
        self.bench.train(combo, seed)
        if self.done(combo, seed):
            self.trained.append(key)
        self.write("running")
        return True

    def restore(self) -> None:
        """Finished runs of an earlier call (another machine) back into the bench directory: the
        harness then counts them as done and never trains them again."""
        earlier = self.run_.earlier
        if not earlier["runs"]:
            return
        if earlier.get("data_key") != self.run_.cache.manifest["key"]:
            raise ValueError(f"{self.run_.previous}: runs of other data (key {earlier.get('data_key')}); "
                             "not resumable with this export")
        from xrdcore.storage import atomic_write_json

        for key, files in earlier["runs"].items():
            folder = self.dir / "runs" / key
            if (folder / "metrics.json").is_file():
                continue
            atomic_write_json(folder / "config.json", files["config"])
            atomic_write_json(folder / "metrics.json", files["metrics"])
            self.restored.append(key)

    def write(self, status: str) -> None:
        from xrdcore.bench.harness import write_results

        run = self.run_
        results = write_results(self.dir, self.bench.header, self.everything, self.seeds,
                                time.perf_counter() - self.bench.started, plots=False)
        summary = self.ref._summary(results, self.dir, run.cache, getattr(self, "best", []), self.mixed, None,
                                    time.perf_counter() - self.bench.started)
        summary.update({"status": status, "size": run.mode["size"], "grid_step_deg": run.mode["step"],
                        "training_per_run": self.settings.training, "trained_this_call": self.trained,
                        "restored_from_earlier_calls": self.restored, "deferred": self.deferred,
                        "planned": {c.id: self.seeds[c.id] for c in self.everything},
                        "skipped": results.get("skipped")})
        _write(run.path("leaderboard"), run.stamp(_finite(summary)))
        runs = {}
        for metrics in sorted(self.dir.glob("runs/*/seed*/metrics.json")):
            key = str(metrics.parent.relative_to(self.dir / "runs"))
            runs[key] = {"metrics": json.loads(metrics.read_text()),
                         "config": json.loads((metrics.parent / "config.json").read_text())}
        run.resume.update({"data_key": run.cache.manifest["key"], "runs": runs})
        run.save_resume()


def _dry_run_export(work: Path) -> Path:
    """200 real structures (pymatgen's AFLOW prototypes) built and exported once: the dry run's
    data, small enough for a CPU and imported the way the CoRE MOF export is on the GPU."""
    export = work / "dry-run.xrdexport"
    if not export.is_file():
        if importlib.util.find_spec("pymatgen") is None:
            raise RuntimeError("the dry run builds its data with pymatgen, which is missing here; pass --export FILE")
        from xrdcore.data.cache import BuildSpec, build_cache, resolve_dataset
        from xrdcore.data.export import export_cache

        name, options = resolve_dataset("prototypes", {})
        cache = build_cache(work / "dry-run-cache", BuildSpec(name, options, limit=200), progress=False)
        export_cache(cache.path, export)
    return export


def _scan_comparison(measured: dict, batches: list[int], length: int, d_inner: int, state: int) -> dict:
    """Per batch: each method's median seconds and peak memory, and the speed-ups between them."""
    ratios = {"loop_over_chunked": ("loop", "chunked"), "chunked_over_kernel": ("chunked", "kernel"),
              "loop_over_kernel": ("loop", "kernel")}
    table = {}
    for batch in batches:
        got = {m: r for (m, b), r in measured.items() if b == batch}
        if got:
            table[f"batch {batch}"] = {
                **{f"speedup_{k}": got[a]["median_s"] / got[b]["median_s"]
                   for k, (a, b) in ratios.items() if a in got and b in got},
                **{f"{m}_s": r["median_s"] for m, r in got.items()},
                **{f"{m}_peak_mb": r["peak_memory_rise_mb"] for m, r in got.items()},
                "all_states_mb": batch * length * d_inner * state * 4 / 2**20}
    return table


def _kernel_unavailable() -> str | None:
    """Why mamba-ssm's fused selective scan does not import here, or None when it does."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure (missing, built for another torch) is the reason
        return f"{type(exc).__name__}: {exc}"
    return None


def _pymatgen_missing() -> str | None:
    try:
        from xrdcore.diffraction.scattering import atomic_number, scattering_parameters

        scattering_parameters(), atomic_number("C")
    except Exception as exc:  # noqa: BLE001
        return (f"the simulator needs pymatgen ({type(exc).__name__}: {exc}): xrdcore.diffraction.scattering "
                "reads pymatgen's atomic_scattering_params.json and pymatgen's Element for Z, and peak_lists reads "
                "pymatgen Structures; pymatgen and its dependencies do not fit the carried 64 MiB beside the export")
    return None


def _carry_listing() -> dict[str, Any]:
    """What the carried folder held for this call, with sizes."""
    if not CARRY.is_dir():
        return {"folder": str(CARRY), "files": {}}
    files = {str(p.relative_to(CARRY)): p.stat().st_size for p in sorted(CARRY.rglob("*")) if p.is_file()}
    return {"folder": str(CARRY), "files": files, "mib": round(sum(files.values()) / 2**20, 2)}


if __name__ == "__main__":
    sys.exit(main())
