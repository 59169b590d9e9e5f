"""What a benchmark shows people: results.md (a leaderboard with the extinction-class ceiling)
and plots (accuracy per level, a space-group confusion matrix grouped by crystal system, and
training curves)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xrdcore.bench.harness import head_suffix, row_label
from xrdcore.storage import atomic_write_text

#: columns of the leaderboard: (header, metric path)
COLUMNS = (("top-1", "top1"), ("top-2", "top2"), ("top-5", "top5"), ("macro-F1", "macro_f1"),
           ("balanced", "balanced.score"), ("ext. class", "extinction_accuracy.extinction_class_any_setting"),
           ("wrong: same system", "sub_property_confusion.crystal_system"),
           ("wrong: same centring", "sub_property_confusion.centring"),
           ("wrong: same point group", "sub_property_confusion.point_group"))
CEILING_LEVEL = "extinction_class_any_setting"


def _cell(summary: Mapping[str, Any] | None, percent: bool = True) -> str:
    if not summary:
        return "–"
    scale = 100 if percent else 1
    text = f"{summary['mean'] * scale:.1f}"
    return text + (f" ± {summary['std'] * scale:.1f}" if summary.get("std") is not None else "")


def leaderboard(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Runs with metrics, best test top-1 (mean over seeds) first."""
    rows = [r for r in [*results["runs"], *results.get("neighbour_head", [])] if r.get("metrics")]
    return sorted(rows, key=lambda r: (-r["metrics"]["top1"]["mean"], r["id"]))


def _training_line(training: Mapping[str, Any] | None) -> str:
    if not training:
        return ""
    budget = training.get("time_budget")
    epochs = (f"at most {training['epochs']} epochs fitted to {budget:g} s of training per run"
              if budget else f"{training['epochs']} epochs")
    return (f"Training: {training['optimizer']} lr {training['lr']:g}, weight decay {training['weight_decay']:g}, "
            f"{epochs} ({training['warmup_epochs']:g} warm-up, cosine), batch "
            f"{training['batch_size']}, patience {training['patience']}; input "
            + "; ".join(_input_text(spec) for spec in training["inputs"]) + ".")


def _input_text(spec: Mapping[str, Any]) -> str:
    if spec["kind"] == "images":
        options = ", ".join(f"{k} {v}" for k, v in spec["simulator_options"].items())
        return f"images from {spec['simulator']}" + (f" ({options})" if options else "")
    grid = spec["two_theta"]
    axis = " (points uniform in ln 1/d)" if spec.get("axis") == "log_d" else ""
    text = f"{spec['kind']} on {grid[0]:g}-{grid[1]:g}° at {grid[2]:g}°{axis}"
    if spec["kind"] != "profile":
        return text
    return text + f", {spec.get('intensity', 'linear')} intensities, {spec['shape']} peaks, augmentation {spec['augment']}"


def _unseen_table(results: Mapping[str, Any]) -> list[str]:
    rows = [r for r in results["runs"] if r.get("unseen")]
    if not rows:
        return []
    first = rows[0]["unseen"]
    lines = ["", f"## Unseen space groups ({len(first['space_groups'])} held out of training)", "",
             (f"Held out: {', '.join(map(str, first['space_groups']))}. Each of {first['queries']} test structures "
              f"of these groups is ranked among them by cosine similarity to the mean embedding of "
              f"{first['references']} reference structures (the held-out groups' train and validation "
              f"structures), summed over the encoder's views. Chance top-1: {100 * first['chance_top1']:.1f}%."), "",
             "| encoder | hierarchy | scheduler | unseen top-1 | unseen top-5 |", "|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (-r["unseen"]["top1"]["mean"], r["id"])):
        lines.append(f"| {row['encoder']} | {row['hierarchy']} | {row['scheduler']} | {_cell(row['unseen']['top1'])} "
                     f"| {_cell(row['unseen']['top5'])} |")
    return lines


def write_markdown(path: Path, results: Mapping[str, Any]) -> Path:
    data, env = results["data"], results["environment"]
    git = env.get("git") or {}
    seeds = ", ".join(str(s) for s in results["seeds"])
    lines = [
        f"# Benchmark: {data['dataset']}",
        "",
        (f"Test split of {data['split_counts']['test']} structures (train {data['split_counts']['train']}, "
        f"val {data['split_counts']['val']}; split `{data['split_hash'][:19]}…`), seeds {seeds}; "
        f"models selected on validation, scored once on test. Values are % as mean ± std over seeds."),
        f"Device: {env['device_name']} · torch {env['torch']} (CUDA {env['cuda']}) · xrdcore {env['xrdcore']} "
        f"(git {str(git.get('commit', 'unknown'))[:10]}{' dirty' if git.get('dirty') else ''})"
        + "".join(f" · {name} {version}" for name, version in env["plugins"].items())
        + (" · tiny variants (quick mode)" if results["settings"]["quick"] else ""),
        _training_line(results.get("training")),
        "",
        "| # | encoder | hierarchy | scheduler | " + " | ".join(h for h, _ in COLUMNS)
        + " | top-1 95% CI | p vs best | parameters | samples/s |",
        "|---|---|---|---|" + "---|" * len(COLUMNS) + "---|---|---|---|",
    ]
    p_values = {entry["b"]: entry["p"] for entry in results.get("significance", [])}
    rows = [(row["metrics"]["top1"]["mean"], _model_line(rank, row, p_values))
            for rank, row in enumerate(leaderboard(results), 1)]
    baselines = results.get("baselines", {})
    for name, label in (("nearest_neighbour", "nearest-neighbour lookup (no learning)"),
                        ("majority", "majority class (no learning)")):
        if name in baselines:
            rows.append((baselines[name]["top1"], _baseline_line(label, baselines[name], p_values.get(name))))
    ceiling = results["ceiling"][CEILING_LEVEL]
    rows.append((ceiling, f"| | **extinction-class ceiling** | | | **{100 * ceiling:.1f}** |"
                 + " |" * (len(COLUMNS) - 1) + " | | | |"))
    lines += [line for _, line in sorted(rows, key=lambda r: -r[0])]
    best = next((e["a"] for e in results.get("significance", [])), None)
    lines += ["", (f"The **extinction-class ceiling** is the test accuracy of always answering the most frequent "
              f"training space group of the true extinction class ({CEILING_LEVEL}): how far peak positions "
              f"alone can go. *wrong: same …* columns are sub-property confusion: among wrong space-group "
              f"predictions, the share that still agree with the truth on that superclass. "
              f"The 95% intervals are percentile bootstraps over test structures (a row with several seeds "
              f"scores each structure by the share of seeds that got it right); *p vs best* is a paired "
              f"bootstrap test against the best row" + (f" ({best})" if best else "") + ". A row marked "
              "*learned nothing* does not beat the majority class (paired p < 0.05)."
              + (" Rows with a *neighbour head* are the same runs answering with the space groups of the "
                 "training structures nearest in the model's own embedding, mixed with the classifier "
                 "(neighbours and mix chosen on validation; xrdcore.train.retrieval)."
                 if results.get("neighbour_head") else ""))]
    lines += _unseen_table(results)
    failed = [r for r in results["runs"] if any(s["status"] == "failed" for s in r["seeds"].values())]
    if failed:
        lines += ["", "## Failed runs", ""]
        for row in failed:
            for seed, status in row["seeds"].items():
                if status["status"] == "failed":
                    lines.append(f"- {row['id']} seed {seed}: {status['error']}")
    pending = [r["id"] for r in results["runs"] if r["status"] in ("pending", "partial")]
    if pending:
        lines += ["", f"## Not finished ({len(pending)})", "", ", ".join(pending)]
    if results["skipped"]:
        lines += ["", "## Skipped combinations", ""]
        lines += [f"- {s['encoder']} × {s['hierarchy']} × {s['scheduler']}: {s['reason']}" for s in results["skipped"]]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def _model_line(rank: int, row: Mapping[str, Any], p_values: Mapping[str, float]) -> str:
    cells = [_cell(row["metrics"].get(key)) for _, key in COLUMNS]
    speed = f"{row['samples_per_s']['mean']:.0f}" if row.get("samples_per_s") else "–"
    label = row_label(row)
    name = (row["encoder"] + head_suffix(row)
            + ("" if row.get("learned", True) else " ⚠ *learned nothing*"))
    return (f"| {rank} | {name} | {row['hierarchy']} | {row['scheduler']} | " + " | ".join(cells)
            + f" | {_interval(row.get('top1_ci95'))} | {_p(p_values.get(label))} | {row['parameters']:,} | {speed} |")


def _baseline_line(label: str, baseline: Mapping[str, Any], p: float | None) -> str:
    def value(path: str) -> Any:
        node: Any = baseline
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        return node

    cells = [f"{100 * value(key):.1f}" if isinstance(value(key), (int, float)) else "–" for _, key in COLUMNS]
    return (f"| | *{label}* | | | " + " | ".join(cells) + f" | {_interval(baseline['top1_ci95'])} | {_p(p)} | – | – |")


def _interval(bounds: Any) -> str:
    return f"{100 * bounds[0]:.1f}–{100 * bounds[1]:.1f}" if bounds else "–"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2g}" + (" *" if value < 0.05 else "")


def write_plots(folder: Path, out: Path, results: Mapping[str, Any]) -> list[Path]:
    """Per-level accuracy bars, the best run's confusion matrix, and training curves, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xrdcore.diffraction.plot import save_figure

    board = [row for row in leaderboard(results) if not row.get("head")]  # each run once, as trained
    if not board:
        return []
    written = []
    shown = board[:8]
    levels = [k.split(".", 1)[1] for k in shown[0]["metrics"] if k.startswith("level_accuracy.")]
    fig, ax = plt.subplots(figsize=(max(8, len(levels) * 1.2), 4.5), dpi=120)
    width = 0.8 / len(shown)
    for i, row in enumerate(shown):
        means = [row["metrics"][f"level_accuracy.{name}"]["mean"] for name in levels]
        ax.bar(np.arange(len(levels)) + i * width, means, width, label=f"{row['encoder']} × {row['hierarchy']} × "
                                                                      f"{row['scheduler']}")
    ax.set_xticks(np.arange(len(levels)) + 0.4 - width / 2, levels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_xlabel("hierarchy level (the space-group prediction mapped to it)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, loc="upper left")
    ax.set_title("Accuracy per hierarchy level")
    fig.tight_layout()
    written.append(save_figure(fig, folder / "level_accuracy.png"))
    plt.close(fig)

    best = board[0]
    seed = next(s for s, v in best["seeds"].items() if v["status"] == "complete")
    run = json.loads((out / "runs" / best["id"] / f"seed{seed}" / "metrics.json").read_text())
    written.append(_confusion_plot(plt, save_figure, run["test"]["predictions"], folder / "confusion.png",
                                   f"{best['encoder']} × {best['hierarchy']} × {best['scheduler']}, seed {seed}"))

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=120)
    for row in board:
        for seed, status in row["seeds"].items():
            if status["status"] != "complete":
                continue
            history = json.loads((out / "runs" / row["id"] / f"seed{seed}" / "metrics.json").read_text())["history"]
            epochs = [h["epoch"] for h in history]
            left.plot(epochs, [h["train_loss"] for h in history], lw=0.8, label=f"{row['id']} s{seed}")
            right.plot(epochs, [h["val_top1"] for h in history], lw=0.8)
    left.set(xlabel="epoch", ylabel="training loss (combined)", yscale="log", title="Training loss")
    right.set(xlabel="epoch", ylabel="validation top-1", title="Validation accuracy")
    if len(board) <= 12:
        left.legend(fontsize=6)
    fig.tight_layout()
    written.append(save_figure(fig, folder / "training_curves.png"))
    plt.close(fig)
    return written


def _confusion_plot(plt, save_figure, predictions: Mapping[str, list[int]], path: Path, title: str) -> Path:
    """Space-group confusion (rows truth, columns prediction) over the groups present, ordered by
    number, with the crystal-system blocks outlined."""
    from xrdcore.crystal import level

    true, pred = np.asarray(predictions["true"]), np.asarray(predictions["top1"])
    groups = np.unique(np.concatenate([true, pred]))
    position = {g: i for i, g in enumerate(groups)}
    matrix = np.zeros((len(groups), len(groups)))
    for t, p in zip(true, pred):
        matrix[position[t], position[p]] += 1
    size = min(12, 4 + 0.08 * len(groups))
    fig, ax = plt.subplots(figsize=(size, size), dpi=120)
    ax.imshow(np.log1p(matrix), cmap="Blues", interpolation="nearest")
    systems = level("crystal_system")
    system_of = systems.index(groups)
    for boundary in np.flatnonzero(np.diff(system_of)) + 0.5:
        ax.axhline(boundary, color="#c0392b", lw=0.6)
        ax.axvline(boundary, color="#c0392b", lw=0.6)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(system_of)) + 1])
    ax.set_xticks(starts, [systems.classes[system_of[s]] for s in starts], rotation=90, fontsize=7)
    ax.set_yticks(starts, [systems.classes[system_of[s]] for s in starts], fontsize=7)
    ax.set_xlabel("predicted space group (by number, grouped by crystal system)")
    ax.set_ylabel("true space group")
    ax.set_title(f"Test confusion, log(1 + count): {title}", fontsize=9)
    fig.tight_layout()
    written = save_figure(fig, path)
    plt.close(fig)
    return written
