"""Retrieval and structure generation through the harness (`xrdcore bench --task generation`):
XtalNet (CPCP + diffusion) against the pyxtal random baseline ranked by the same CPCP model.

On a CPU this runs CPU-sized models (``--size cpu``: d 64 transformers, a small e3nn encoder, a
64-wide denoiser, 100 sampling steps) on a data set of small cells, such as the shared MP-20 table;
on a GPU ``--size paper`` uses the plugins' defaults (the published sizes, 1000 steps). Results go
to benchmarks/results/NAME/ (results.json, results.md, runs/) and a summary to
benchmarks/results/generation_NAME.json.

Run on a CPU:  python benchmarks/generation.py --dataset ../shared/data/mp20_test_1130.csv --device cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from xrdcore.bench.generation import GenerationSettings, run_generation_bench
from xrdcore.data.cache import open_dataset
from xrdcore.storage import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]

#: models a 2-core CPU trains in minutes on ~1,000 structures of at most 20 atoms
CPCP_CPU = {"pxrd": {"d_model": 64, "layers": 2, "heads": 4, "feedforward": 128, "max_peaks": 128},
            "crystal": {"embed_dim": 64, "cutoff": 5.0, "lmax": 1, "hidden": "32x0e + 8x1o", "layers": 2,
                        "n_basis": 8, "radial_hidden": 32},
            "shared_dim": 64}
CPCP_TRAINING_CPU = {"epochs": 12, "batch_size": 64, "lr": 2e-3}
SIZES = {
    "cpu": {"xtalnet": {"cpcp": CPCP_CPU, "cpcp_training": CPCP_TRAINING_CPU,
                        "diffusion": {"denoiser": {"hidden": 64, "layers": 2, "frequencies": 8, "time_dim": 32},
                                      "timesteps": 1000},
                        "training": {"epochs": 60, "batch_size": 64, "lr": 1e-3, "val_draws": 2}, "steps": 100},
            "pyxtal-random": {"cpcp": CPCP_CPU, "cpcp_training": CPCP_TRAINING_CPU, "top_k": 5}},
    "paper": {},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=str(ROOT.parent / "shared" / "data" / "mp20_test_1130.csv"))
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--max-atoms", type=int, default=20)
    parser.add_argument("--limit-patterns", type=int, default=50, help="score the first N test patterns")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpcp-epochs", type=int, help="CPCP training epochs (default: the size's)")
    parser.add_argument("--epochs", type=int, help="diffusion training epochs (default: the size's)")
    parser.add_argument("--name", help="results name (default <dataset>-generation-<device>)")
    args = parser.parse_args()

    from xrdcore.train.trainer import resolve_device

    device = resolve_device(args.device)
    started = time.perf_counter()
    cache = open_dataset(args.dataset, args.data_dir, workers=args.workers)
    name = args.name or f"{Path(args.dataset).stem.split('_')[0]}-generation-{device.type}"
    out = ROOT / "benchmarks" / "results" / name
    options = json.loads(json.dumps(SIZES[args.size]))
    for generator in options.values():
        if args.cpcp_epochs:
            generator.setdefault("cpcp_training", {})["epochs"] = args.cpcp_epochs
        if args.epochs and "training" in generator:
            generator["training"]["epochs"] = args.epochs
    settings = GenerationSettings(generators="xtalnet,pyxtal-random", seeds=tuple(int(s) for s in args.seeds.split(",")),
                                  candidates=args.candidates, max_atoms=args.max_atoms, limit=args.limit_patterns,
                                  options=options)
    results = run_generation_bench(cache, out, settings, device=str(device), resume=True,
                                   command=["benchmarks/generation.py", *sys.argv[1:]])
    summary = {"device": results["environment"]["device_name"], "size": args.size, "data": results["data"],
               "settings": results["settings"], "seconds": round(time.perf_counter() - started, 1),
               "runs": [{k: r.get(k) for k in ("generator", "seeds", "retrieval", "generation")} for r in results["runs"]],
               "results_dir": str(out.relative_to(ROOT))}
    atomic_write_json(ROOT / "benchmarks" / "results" / f"generation_{name}.json", summary)
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
