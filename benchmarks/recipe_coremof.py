"""How to train on the CoRE MOF set: one factor at a time around the default recipe, on the full
de-duplicated CoRE MOF 2019-ASR split, every row selected on validation and scored once on test.

Factors: 2θ grid (0.1° / 0.05° / 0.02° / 0.01°), profile axis (2θ / ln 1/d), intensity scale
(linear / sqrt / log), learning rate, epochs, class-balanced loss, label smoothing,
augmentation (none / lattice / laboratory), model size, and a learning curve (500 / 2,000 / all
training structures). Each row is one `xrdcore train` run; its command is in the results.
Writes benchmarks/results/recipe_coremof-cpu.json (and prints the docs/training.md table).

Run: `.venv/bin/python benchmarks/recipe_coremof.py [--data DIR] [--rows name,name]` (resumable:
finished rows are read back, an interrupted one resumes from its checkpoint).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the encoder the study trains (its registered small variant) and the rows: name → (what, changes)
ENCODER = "mlp"
ROWS: dict[str, tuple[str, dict]] = {
    "recipe": ("the default recipe", {}),
    "grid-0.05": ("2θ grid 0.05° (1,700 points)", {"input.grid": {"step": 0.05}}),
    "grid-0.02": ("2θ grid 0.02° (4,250 points)", {"input.grid": {"step": 0.02}}),
    "grid-0.01": ("2θ grid 0.01° (8,500 points)", {"input.grid": {"step": 0.01}}),
    "axis-2theta": ("points uniform in 2θ instead of ln 1/d", {"input.grid": {"axis": "two_theta"}}),
    "intensity-sqrt": ("square-root intensities", {"input.intensity": "sqrt"}),
    "intensity-log": ("logarithmic intensities (3 decades)", {"input.intensity": "log"}),
    "lr-1e-3": ("learning rate 1e-3", {"lr": 1e-3}),
    "lr-1e-2": ("learning rate 1e-2", {"lr": 1e-2}),
    "epochs-30": ("30 epochs", {"epochs": 30}),
    "epochs-200": ("200 epochs", {"epochs": 200}),
    "balance-0.5": ("class-balanced loss, weights count^-0.5", {"balance": 0.5}),
    "balance-1": ("class-balanced loss, equal classes", {"balance": 1.0}),
    "smoothing-0.1": ("label smoothing 0.1", {"label_smoothing": 0.1}),
    "augment-none": ("no augmentation", {"input.augment": "none"}),
    "augment-laboratory": ("laboratory augmentation (measured-like, rendered per batch)",
                           {"input.augment": "laboratory"}),
    "size-tiny": ("the tiny variant", {"size": "tiny"}),
    "curve-500": ("500 training structures", {"train_limit": 500}),
    "curve-2000": ("2,000 training structures", {"train_limit": 2000}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a built CoRE MOF cache (default: build it under --data-dir)")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "recipe_coremof-cpu"))
    args = parser.parse_args()
    import xrdcore
    from xrdcore.bench.significance import bootstrap_interval
    from xrdcore.data.cache import open_dataset
    from xrdcore.storage import atomic_write_json
    from xrdcore.train import InputSpec, TrainConfig, train

    registry = xrdcore.get_registry()
    cache = open_dataset(args.data or "coremof", args.data_dir, workers=args.workers)
    results = {"encoder": ENCODER, "data": cache.describe(), "rows": {}}
    out = Path(args.out)
    summary_file = ROOT / "benchmarks" / "results" / "recipe_coremof-cpu.json"
    for name in args.rows.split(","):
        what, changes = ROWS[name]
        size = changes.get("size", "small")
        training = {k: v for k, v in changes.items() if not k.startswith("input.") and k != "size"}
        spec = replace(InputSpec(), **{k[6:]: v for k, v in changes.items() if k.startswith("input.")})
        config = TrainConfig(ENCODER, encoder_options=registry.get("encoder", ENCODER).size_options(size), input=spec,
                             **training)
        started = time.perf_counter()
        result = train(config, cache, out / name, device="cpu", progress=False)
        test = result["test"]
        correct = [t == p for t, p in zip(test["predictions"]["true"], test["predictions"]["top1"])]
        results["rows"][name] = {
            "what": what, "changes": {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()},
            "command": _command(name, size, changes), "val_top1": result["val"]["top1"], "top1": test["top1"],
            "top1_ci95": list(bootstrap_interval(correct)), "top5": test["top5"], "macro_f1": test["macro_f1"],
            "crystal_system": test["level_accuracy"]["crystal_system"], "best_epoch": result["best_epoch"],
            "epochs_run": result["epochs_run"], "train_seconds": result["train_seconds"],
            "samples_per_s": result["samples_per_s"], "parameters": result["parameters"],
            "wall_seconds": round(time.perf_counter() - started, 1)}
        atomic_write_json(summary_file, results)
        print(f"{name:>20}: val {result['val']['top1']:.3f} test {test['top1']:.3f} ({what})", flush=True)
    print("| row | what changes | val top-1 | test top-1 (95% CI) | top-5 | macro-F1 | epochs | min |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in results["rows"].items():
        lo, hi = row["top1_ci95"]
        print(f"| {name} | {row['what']} | {100 * row['val_top1']:.1f} | {100 * row['top1']:.1f} ({100 * lo:.1f}–"
              f"{100 * hi:.1f}) | {100 * row['top5']:.1f} | {100 * row['macro_f1']:.1f} | {row['best_epoch']}/"
              f"{row['epochs_run']} | {row['train_seconds'] / 60:.1f} |")


def _command(name: str, size: str, changes: dict) -> str:
    """The `xrdcore train` command of a row."""
    flags = {"lr": "--lr", "epochs": "--epochs", "balance": "--balance", "label_smoothing": "--label-smoothing",
             "train_limit": "--train-limit", "input.intensity": "--intensity", "input.augment": "--augment",
             "step": "--step", "axis": "--axis"}
    parts = ["xrdcore train --dataset coremof", f"--encoder {ENCODER}", f"--size {size}", f"--out runs/{name}"]
    for key, value in changes.items():
        if key == "input.grid":
            parts += [f"{flags[field]} {v}" for field, v in value.items()]
        elif key in flags:
            parts.append(f"{flags[key]} {value}")
    return " ".join(parts)


if __name__ == "__main__":
    main()
