"""Selective-scan speed and peak memory: the chunked scan of xrd_mamba.scan against a plain
sequential loop (autograd over unbind slices, the straightforward implementation), forward plus
backward, side by side in one run; on a GPU (``--device cuda``) also mamba-ssm's fused kernels.

Each measurement runs in a fresh process: peak memory is, on the CPU, the rise of the resident set
(VmHWM after resetting it through /proc/self/clear_refs; ru_maxrss where that is not possible) over
the first forward+backward, on a GPU the peak of allocated device memory above the inputs; then the
time of ``--repeats`` more. Before timing, every method's y and gradients at batch 2 are checked
against a float64 loop on the same device (``agreement``). Results, with the machine and its load,
go atomically to benchmarks/results/mamba-scan-<device>.json.

Run: python plugins/xrd-mamba/benchmarks/scan.py [--device cpu|cuda] [--length 8500] [--batch 1,8,32,64]
     [--threads 1,2]
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

RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"
METHODS = {"cpu": ("loop", "chunked"), "cuda": ("loop", "chunked", "kernel")}
BACKEND = {"chunked": "torch", "kernel": "cuda"}


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


def make_inputs(batch: int, length: int, width: int, state: int, device: str, dtype=None) -> list:
    """Leaves x, Δ, A, B, C: Δ mostly 0.01-0.5 as after training, A Mamba's initial -1 … -state."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, length, width, generator=g)
    delta = F.softplus(torch.randn(batch, length, width, generator=g) - 2)
    A = -torch.arange(1, state + 1, dtype=torch.float32).repeat(width, 1)
    B, C = torch.randn(batch, length, state, generator=g), torch.randn(batch, length, state, generator=g)
    return [t.to(device=device, dtype=dtype).requires_grad_() for t in (x, delta, A, B, C)]


def scan(method: str, inputs: list):
    from xrd_mamba.scan import selective_scan

    return sequential_scan(*inputs) if method == "loop" else selective_scan(*inputs, backend=BACKEND[method])


def agreement(methods: tuple[str, ...], length: int, width: int, state: int, device: str) -> dict:
    """Largest relative error of y and of each gradient against a float64 loop, batch 2, same device."""
    import torch

    reference = make_inputs(2, length, width, state, device, torch.float64)
    grad_y = torch.randn(2, length, width, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y_ref = scan("loop", reference)
    expected = [y_ref, *torch.autograd.grad(y_ref, reference, grad_y.to(device))]
    errors = {}
    for method in methods:
        inputs = [t.detach().float().requires_grad_() for t in reference]
        y = scan(method, inputs)
        got = [y, *torch.autograd.grad(y, inputs, grad_y.to(device, torch.float32))]
        errors[method] = {name: ((g.double() - e).abs().max() / e.abs().max()).item()
                          for name, g, e in zip(("y", "x", "delta", "A", "B", "C"), got, expected)}
    return errors


def worker(method: str, batch: int, length: int, width: int, state: int, repeats: int, threads: int | None,
           device: str) -> dict:
    """One method at one size, in this (fresh) process."""
    import torch
    from xrd_mamba.scan import auto_chunk_size

    if threads:
        torch.set_num_threads(threads)
    cuda = device == "cuda"
    inputs = make_inputs(batch, length, width, state, device)

    def run():
        scan(method, inputs).sum().backward()
        for t in inputs:
            t.grad = None
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        peak_mb, measured_by = (torch.cuda.max_memory_allocated() - before) / 2**20, "cuda max_memory_allocated"
    else:
        exact = _reset_peak()
        before_kb = _status_kb("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run()
        after_kb = _status_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_mb, measured_by = (after_kb - before_kb) / 1024, "VmHWM" if exact else "ru_maxrss"
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return {"method": method, "batch": batch, "seconds": seconds, "median_s": statistics.median(seconds),
            "positions_per_s": batch * length / statistics.median(seconds),
            "peak_memory_rise_mb": peak_mb, "peak_measured_by": measured_by,
            "chunk_size": auto_chunk_size(batch, length, width, state, device) if method == "chunked" else None,
            "torch_threads": torch.get_num_threads()}


def environment(device: str) -> dict:
    import torch

    import xrdcore

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"torch": torch.__version__, "python": platform.python_version(), "xrdcore": xrdcore.__version__,
            "xrd_mamba": version("xrd-mamba"), "machine": platform.machine(), "cpu": model,
            "cpu_count": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "torch_default_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "cuda": torch.version.cuda if device == "cuda" else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=tuple(METHODS), default="cpu")
    parser.add_argument("--length", type=int, default=8500)
    parser.add_argument("--batch", default="1,8,32,64", help="comma-separated batch sizes")
    parser.add_argument("--d-inner", type=int, default=16)
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (empty: torch's default)")
    parser.add_argument("--out", type=Path, help="results file (default benchmarks/results/mamba-scan-<device>.json)")
    parser.add_argument("--worker", choices=METHODS["cuda"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU, and torch.cuda.is_available() is False here")
    batches = [int(b) for b in args.batch.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",") if t] or [None]
    if args.worker:
        print(json.dumps(worker(args.worker, batches[0], args.length, args.d_inner, args.state, args.repeats,
                                thread_counts[0], args.device)))
        return

    from xrd_mamba.scan import kernels_available

    from xrdcore.storage import atomic_write_json

    methods = METHODS[args.device]
    skipped = {}
    if args.device == "cuda" and not kernels_available():
        methods = methods[:-1]
        skipped["kernel"] = "mamba-ssm's compiled kernels do not import (pip install xrd-mamba[cuda])"
    errors = agreement(methods, args.length, args.d_inner, args.state, args.device)
    print(json.dumps({"agreement (max relative error vs a float64 loop)": errors}, indent=2), flush=True)
    load_before = os.getloadavg()
    runs, comparison = [], {}
    for threads in thread_counts:
        for batch in batches:
            measured = {}
            for method in methods:
                command = [sys.executable, __file__, "--worker", method, "--device", args.device, "--batch", str(batch),
                           "--length", str(args.length), "--d-inner", str(args.d_inner), "--state", str(args.state),
                           "--repeats", str(args.repeats), "--threads", str(threads or "")]
                run = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
                measured[method] = run
                print(f"threads {run['torch_threads']}  batch {batch:3d}  {method:8s} {run['median_s']:8.4f} s  "
                      f"peak +{run['peak_memory_rise_mb']:8.1f} MB", flush=True)
            runs += measured.values()
            ratios = {"loop_over_chunked": ("loop", "chunked"), "chunked_over_kernel": ("chunked", "kernel")}
            comparison[f"batch {batch}, {measured['loop']['torch_threads']} threads"] = {
                **{f"speedup_{key}": measured[a]["median_s"] / measured[b]["median_s"]
                   for key, (a, b) in ratios.items() if a in measured and b in measured},
                "memory_ratio_loop_over_chunked": measured["loop"]["peak_memory_rise_mb"]
                / max(measured["chunked"]["peak_memory_rise_mb"], 1e-9),
                **{f"{m}_s": r["median_s"] for m, r in measured.items()},
                **{f"{m}_peak_mb": r["peak_memory_rise_mb"] for m, r in measured.items()},
                "all_states_mb": batch * args.length * args.d_inner * args.state * 4 / 2**20}
    results = {"benchmark": f"selective scan, forward + backward, float32 on {args.device}: "
                            f"{', '.join(methods)}",
               "settings": {"length": args.length, "d_inner": args.d_inner, "d_state": args.state,
                            "batches": batches, "repeats": args.repeats},
               "agreement": errors, "skipped": skipped, "runs": runs, "comparison": comparison,
               "environment": {**environment(args.device), "load_average_before": load_before,
                               "load_average_after": os.getloadavg()}}
    out = args.out or RESULTS / f"mamba-scan-{args.device}.json"
    atomic_write_json(out, results)
    print(json.dumps(comparison, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
