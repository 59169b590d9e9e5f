"""Train every built-in baseline (mlp, cnn, nopoolcnn, rcnet) on the CoRE MOF split and report test
accuracy, throughput (samples/s) and peak memory, through the same harness as `xrdcore bench`
(`--dataset` runs the same on another data set, e.g. the shared MP-20 table).

On a GPU this is the full benchmark: all 12,020 CoRE MOF 2019-ASR entries, full-size models, the
training recipe of docs/training.md, three seeds (`--device cuda`). On a CPU the same script runs a
reduced version that fits a small machine (`--limit`, `--size small|tiny`, `--epochs`), and says so
in its output. Results go to
benchmarks/results/<name>/ (results.json, results.md, plots/; name coremof-<device> by default) and
a summary with the peak memory to benchmarks/results/train_<name>.json. With --encoders,
--hierarchies, --schedulers and --variant it also runs the plugins' CoRE MOF tables (see the
plugins' READMEs); --holdout-space-groups and --simulator-option (images encoders) as in xrdcore bench.

Run on a GPU:  python benchmarks/train_coremof.py --device cuda
Run on a CPU:  python benchmarks/train_coremof.py --device cpu --size small --seeds 0
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from xrdcore.bench.harness import BenchSettings, run_bench
from xrdcore.bench.report import leaderboard
from xrdcore.cli import parse_option, parse_variant
from xrdcore.data.cache import open_dataset
from xrdcore.storage import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dataset", default="coremof", help="a registered data set, a CSV of CIFs or a cache")
    parser.add_argument("--holdout-space-groups", type=int, default=0,
                        help="space groups kept out of training and ranked against reference embeddings")
    parser.add_argument("--simulator-option", action="append", default=[], metavar="KEY=VALUE",
                        help="images simulator argument for images encoders, e.g. size=64")
    parser.add_argument("--limit", type=int, help="read only the first N CoRE MOF entries")
    parser.add_argument("--workers", type=int, default=2, help="processes for building the data")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--encoders", default="mlp,cnn,nopoolcnn,rcnet")
    parser.add_argument("--hierarchies", default="flat")
    parser.add_argument("--schedulers", default="sum")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, help="at most this many epochs (default: the recipe's)")
    parser.add_argument("--size", choices=["tiny", "small", "full"], default="full",
                        help="every encoder's registered size (small: CPU)")
    parser.add_argument("--step", type=float, help="grid step, degrees (default: the recipe's 0.1)")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=ENCODER[,KEY=VALUE...]",
                        help="an extra encoder with other options (ablations), as in xrdcore bench")
    parser.add_argument("--name", help="results name (default <dataset>-<device>): benchmarks/results/NAME/ "
                        "and benchmarks/results/train_NAME.json")
    args = parser.parse_args()

    from xrdcore.train.trainer import resolve_device

    device = resolve_device(args.device)
    started = time.perf_counter()
    cache = open_dataset(args.dataset, args.data_dir, limit=args.limit, workers=args.workers)
    build_seconds = time.perf_counter() - started
    name = args.name or f"{Path(args.dataset).stem}-{device.type}"
    out = ROOT / "benchmarks" / "results" / name
    settings = BenchSettings(encoders=args.encoders, hierarchies=args.hierarchies, schedulers=args.schedulers,
                             variants=dict(parse_variant(v) for v in args.variant),
                             seeds=tuple(int(s) for s in args.seeds.split(",")), size=args.size,
                             training={**({"epochs": args.epochs} if args.epochs else {}),
                                       **({"holdout_space_groups": args.holdout_space_groups}
                                          if args.holdout_space_groups else {})},
                             input={"grid": {"step": args.step}} if args.step else {},
                             images=dict(parse_option(o) for o in args.simulator_option))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    results = run_bench(cache, out, settings, device=str(device), resume=True,
                        command=["benchmarks/train_coremof.py", *__import__("sys").argv[1:]])
    summary = {
        "device": results["environment"]["device_name"],
        "reduced": {"limit": args.limit, "size": args.size, "epochs": args.epochs, "step_deg": args.step,
                    "images": dict(parse_option(o) for o in args.simulator_option)}
        if (args.limit or args.size != "full" or device.type == "cpu") else None,
        "data": results["data"], "data_seconds": round(build_seconds, 1),
        "peak_memory_mb": {"cuda_allocated": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                           if device.type == "cuda" else None,
                           "process_rss": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)},
        "ceiling": results["ceiling"],
        "leaderboard": [{"encoder": r["encoder"], "hierarchy": r["hierarchy"], "scheduler": r["scheduler"],
                         "top1": r["metrics"]["top1"], "top5": r["metrics"]["top5"],
                         "macro_f1": r["metrics"]["macro_f1"], "samples_per_s": r["samples_per_s"],
                         "parameters": r["parameters"], "unseen": r.get("unseen")} for r in leaderboard(results)],
        "results_dir": str(out.relative_to(ROOT)),
    }
    atomic_write_json(ROOT / "benchmarks" / "results" / f"train_{name}.json", summary)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
