"""Selective-scan speed and peak memory on the CPU: the chunked scan of xrd_mamba.scan against a
plain sequential loop (autograd over unbind slices, the straightforward implementation), forward
plus backward, side by side in one run.

Each measurement runs in a fresh process: peak memory is the rise of the resident set (VmHWM after
resetting it through /proc/self/clear_refs; ru_maxrss where that is not possible) over the first
forward+backward, then the time of ``--repeats`` more. Results, with the machine and its load, go
atomically to benchmarks/results/mamba-scan-cpu.json.

Run: .venv/bin/python plugins/xrd-mamba/benchmarks/scan.py [--length 8500] [--batch 8,32] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "mamba-scan-cpu.json"
METHODS = ("loop", "chunked")


def sequential_scan(x, delta, A, B, C):
    """y_t = C_t · h_t with h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_t, one autograd step per position."""
    import torch

    h = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])
    ys = []
    for x_t, d_t, B_t, C_t in zip(x.unbind(1), delta.unbind(1), B.unbind(1), C.unbind(1)):
        h = torch.exp(d_t[:, :, None] * A) * h + (d_t * x_t)[:, :, None] * B_t[:, None, :]
        ys.append((h @ C_t[:, :, None]).squeeze(-1))
    return torch.stack(ys, 1)


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current resident set (Linux ≥ 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def worker(method: str, batch: int, length: int, width: int, state: int, repeats: int, threads: int | None) -> dict:
    """One method at one size, in this (fresh) process."""
    import torch
    import torch.nn.functional as F
    from xrd_mamba.scan import auto_chunk_size, selective_scan

    if threads:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, length, width, generator=g)
    delta = F.softplus(torch.randn(batch, length, width, generator=g) - 2)  # mostly 0.01-0.5, as after training
    A = -torch.arange(1, state + 1, dtype=torch.float32).repeat(width, 1)  # Mamba's initial A
    B, C = torch.randn(batch, length, state, generator=g), torch.randn(batch, length, state, generator=g)
    inputs = [t.requires_grad_() for t in (x, delta, A, B, C)]

    def run():
        y = sequential_scan(*inputs) if method == "loop" else selective_scan(*inputs, backend="torch")
        y.sum().backward()
        for t in inputs:
            t.grad = None

    exact = _reset_peak()
    before_kb = _status_kb("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run()
    after_kb = _status_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return {"method": method, "batch": batch, "seconds": seconds, "median_s": statistics.median(seconds),
            "positions_per_s": batch * length / statistics.median(seconds),
            "peak_rss_rise_mb": (after_kb - before_kb) / 1024, "peak_measured_by": "VmHWM" if exact else "ru_maxrss",
            "chunk_size": auto_chunk_size(batch, length, width, state, "cpu") if method == "chunked" else None,
            "torch_threads": torch.get_num_threads()}


def environment() -> dict:
    import torch

    import xrdcore

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"torch": torch.__version__, "python": platform.python_version(), "xrdcore": xrdcore.__version__,
            "xrd_mamba": version("xrd-mamba"), "machine": platform.machine(), "cpu": model,
            "cpu_count": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "torch_default_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "device": "cpu"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=8500)
    parser.add_argument("--batch", default="8,32", help="comma-separated batch sizes")
    parser.add_argument("--d-inner", type=int, default=16)
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="", help="comma-separated torch thread counts (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",") if t] or [None]
    if args.worker:
        print(json.dumps(worker(args.worker, batches[0], args.length, args.d_inner, args.state, args.repeats,
                                thread_counts[0])))
        return

    from xrdcore.storage import atomic_write_json

    load_before = os.getloadavg()
    runs, comparison = [], {}
    for threads in thread_counts:
        for batch in batches:
            pair = {}
            for method in METHODS:
                command = [sys.executable, __file__, "--worker", method, "--batch", str(batch), "--length",
                           str(args.length), "--d-inner", str(args.d_inner), "--state", str(args.state),
                           "--repeats", str(args.repeats), "--threads", str(threads or "")]
                pair[method] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
                print(f"threads {pair[method]['torch_threads']}  batch {batch:3d}  {method:8s} "
                      f"{pair[method]['median_s']:8.3f} s  peak +{pair[method]['peak_rss_rise_mb']:8.1f} MB", flush=True)
            runs += pair.values()
            loop, chunked = pair["loop"], pair["chunked"]
            comparison[f"batch {batch}, {loop['torch_threads']} threads"] = {
                "speedup": loop["median_s"] / chunked["median_s"],
                "memory_ratio": loop["peak_rss_rise_mb"] / max(chunked["peak_rss_rise_mb"], 1e-9),
                "loop_s": loop["median_s"], "chunked_s": chunked["median_s"],
                "loop_peak_mb": loop["peak_rss_rise_mb"], "chunked_peak_mb": chunked["peak_rss_rise_mb"],
                "all_states_mb": batch * args.length * args.d_inner * args.state * 4 / 2**20}
    results = {"benchmark": "selective scan, forward + backward, float32 on the CPU: chunked scan vs sequential loop",
               "settings": {"length": args.length, "d_inner": args.d_inner, "d_state": args.state,
                            "batches": batches, "repeats": args.repeats},
               "runs": runs, "comparison": comparison,
               "environment": {**environment(), "load_average_before": load_before,
                               "load_average_after": os.getloadavg()}}
    atomic_write_json(args.out, results)
    print(json.dumps(comparison, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
