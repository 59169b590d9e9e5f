"""The benchmark harness behind ``xrdcore bench``: every valid encoder × label hierarchy × loss
scheduler of the installed plugins, trained and scored on one frozen split, for each seed.

An output directory holds one benchmark::

    runs/<encoder>__<hierarchy>__<scheduler>/seed<k>/   one training run each (xrdcore.train)
    runs/.../seed<k>/failed.json                         the error of a run that failed
    results.json, results.md, plots/                     rewritten (atomically) after every run

Finished runs are never redone: ``--resume`` continues an interrupted benchmark (kill -9
included), retrying failed runs and resuming the unfinished one from its last checkpoint.
``--shard k/n`` runs every n-th run of the sorted grid, so a cluster can split it; any shard (or
a final ``--resume``) writes results from all runs found in the directory.
"""

from __future__ import annotations

import fnmatch
import json
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xrdcore.data.parallel import parse_shard
from xrdcore.storage import LOCK_NAME, LockError, atomic_write_json, directory_lock, holds_other_files

BENCH_FORMAT = "xrdcore-bench/1"

#: training settings of ``--quick``: the whole grid of tiny variants on a 2-core CPU in minutes
QUICK_TRAINING = {"epochs": 3, "batch_size": 32, "warmup_epochs": 1.0, "patience": None}


class BenchError(ValueError):
    """A benchmark that cannot run as asked (unknown names, an occupied directory, ...)."""


@dataclass(frozen=True)
class Combination:
    """One cell of the grid; ``encoder`` may be a variant label (see :class:`BenchSettings`)."""

    encoder: str
    hierarchy: str
    scheduler: str

    @property
    def id(self) -> str:
        return "__".join(part.replace(":", "-") for part in (self.encoder, self.hierarchy, self.scheduler))


@dataclass
class BenchSettings:
    """What a benchmark runs. Patterns (``*``, ``rcnet,mlp``) select components; ``plugins``
    limits them to those plugins (built-ins always take part: they are the baselines);
    ``variants`` adds encoders under new labels with other options, e.g.
    ``{"mamba-no-ssm": ("mamba", {"ssm": False})}`` for an ablation; options named ``input.X`` set
    the input instead (an :class:`InputSpec` field, or for images an option of the simulator:
    ``{"msdn-spots": ("msdn", {"input.representation": "spots"})}``) and ``train.X`` a training
    setting (``{"msdn-paper": ("msdn", {"train.heads": "per-view"})}``). ``images`` chooses the
    images simulator (``simulator``, default: the one installed) and its options for encoders
    that take images."""

    plugins: str = "all"
    encoders: str = "*"
    hierarchies: str = "*"
    schedulers: str = "*"
    variants: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    quick: bool = False
    #: the registered size of every encoder (``tiny``, ``small``, ``full``); ``quick`` means tiny
    size: str = "full"
    training: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    images: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        from xrdcore import validate

        self.seeds = validate.seeds(self.seeds)

    @property
    def encoder_size(self) -> str:
        return "tiny" if self.quick else self.size

    def to_dict(self) -> dict[str, Any]:
        return {"plugins": self.plugins, "encoders": self.encoders, "hierarchies": self.hierarchies,
                "schedulers": self.schedulers, "variants": {k: [n, o] for k, (n, o) in self.variants.items()},
                "seeds": list(self.seeds), "quick": self.quick, "size": self.encoder_size, "training": self.training,
                "input": self.input,
                "images": self.images}


def select_names(registry: Any, kind: str, pattern: str, plugins: set[str] | None) -> list[str]:
    """Names matching any comma-separated glob (or exact name, qualified or not) of ``pattern``."""
    names = registry.names(kind)
    chosen: list[str] = []
    for part in (p.strip() for p in pattern.split(",") if p.strip()):
        if any(ch in part for ch in "*?["):
            matches = [n for n in names if fnmatch.fnmatchcase(n, part)]
        else:
            component = registry.get(kind, part)  # unknown → did-you-mean error
            matches = [registry.public_name(component)]
        chosen += [m for m in matches if m not in chosen]
    if plugins is not None:
        chosen = [n for n in chosen if registry.get(kind, n).builtin or registry.get(kind, n).plugin in plugins]
    return chosen


def find_combinations(settings: BenchSettings, registry: Any,
                      input_kinds: Sequence[str] | None = None) -> tuple[list[Combination], list[dict]]:
    """The valid cells of the grid, sorted, and the skipped ones with the reason; ``input_kinds``
    are those the data can feed (default: what a peak cache feeds, and images when an images
    simulator is installed)."""
    if input_kinds is None:
        from xrdcore.train.inputs import PEAK_CACHE_KINDS, images_simulators

        input_kinds = PEAK_CACHE_KINDS + (("images",) if images_simulators(registry) else ())
    plugins = None
    if settings.plugins.strip() != "all":
        plugins = {p.strip() for p in settings.plugins.split(",") if p.strip()}
        unknown = sorted(plugins - set(registry.plugins))
        if unknown:
            raise BenchError(f"unknown plugins: {', '.join(unknown)}; installed: {', '.join(registry.plugins)}")
    encoders = select_names(registry, "encoder", settings.encoders, plugins)
    for label, (name, _) in settings.variants.items():
        registry.get("encoder", name)
        encoders.append(label)
    hierarchies = select_names(registry, "label_hierarchy", settings.hierarchies, plugins)
    schedulers = select_names(registry, "loss_scheduler", settings.schedulers, plugins)
    valid, skipped = [], []
    default_scheduler = registry.default("loss_scheduler")

    def skip(combo: Combination, reason: str) -> None:
        skipped.append({"encoder": combo.encoder, "hierarchy": combo.hierarchy, "scheduler": combo.scheduler,
                        "reason": reason})

    kinds = {e: _encoder_kind(registry, settings.variants.get(e, (e, {}))[0]) for e in encoders}
    built = {h: _build(registry, "label_hierarchy", h) for h in hierarchies}
    built.update({s: _build(registry, "loss_scheduler", s) for s in schedulers})
    for encoder in encoders:
        for hierarchy_name in hierarchies:
            for scheduler_name in schedulers:
                combo = Combination(encoder, hierarchy_name, scheduler_name)
                kind, hierarchy, scheduler = kinds[encoder], built[hierarchy_name], built[scheduler_name]
                is_sum = registry.public_name(registry.get("loss_scheduler", scheduler_name)) == default_scheduler
                if kind not in input_kinds:
                    skip(combo, f"encoder takes {kind!r} inputs; the data provide {', '.join(input_kinds)}")
                elif isinstance(hierarchy, str) or isinstance(scheduler, str):
                    skip(combo, hierarchy if isinstance(hierarchy, str) else scheduler)
                elif "space_group" not in hierarchy:
                    skip(combo, "hierarchy has no space_group level, which every run is scored on")
                elif len(hierarchy.levels) == 1 and not is_sum:
                    skip(combo, f"a one-level hierarchy has nothing to balance; only {default_scheduler!r} runs with it")
                elif not is_sum and scheduler.same_as_sum(hierarchy):
                    skip(combo, f"the same training as {default_scheduler!r} for this hierarchy (e.g. all weights 1)")
                else:
                    valid.append(combo)
    return sorted(valid, key=lambda c: c.id), skipped


def _build(registry: Any, kind: str, name: str) -> Any:
    """A component with its default arguments, or the reason it cannot be built (a string)."""
    try:
        return registry.create(kind, name)
    except Exception as exc:  # noqa: BLE001 - a plugin component that cannot be built is skipped
        return f"{kind.replace('_', ' ')} {name!r} cannot be built: {type(exc).__name__}: {exc}"


def _encoder_kind(registry: Any, name: str) -> str:
    """The encoder's input kind, or why it cannot be known (a plugin failing to import is reported,
    not fatal)."""
    from xrdcore.train.config import encoder_input_kind

    try:
        return encoder_input_kind(registry, name)
    except Exception as exc:  # noqa: BLE001
        return f"unknown (cannot import: {exc})"


def run_config(combo: Combination, seed: int, settings: BenchSettings, registry: Any):
    """The TrainConfig of one run of the grid: the benchmark's settings, with a variant's own
    options (``input.X``, ``train.X``, else the encoder's) on top."""
    from xrdcore.train.config import run_config as configure

    name, variant = settings.variants.get(combo.encoder, (combo.encoder, {}))
    own = {prefix: {k[len(prefix):]: v for k, v in variant.items() if k.startswith(prefix)}
           for prefix in ("input.", "train.")}
    return configure(name, hierarchy=combo.hierarchy, scheduler=combo.scheduler, size=settings.encoder_size,
                     encoder_options={k: v for k, v in variant.items() if not k.startswith(("input.", "train."))},
                     input={**settings.input, **own["input."]}, images={**settings.images, **own["input."]},
                     training={**(QUICK_TRAINING if settings.quick else {}), **settings.training, **own["train."]},
                     seed=seed, registry=registry)


def claim_bench_dir(out: Path, format: str, settings: Mapping[str, Any], cache: Any, resume: bool) -> None:
    """Write ``bench.json`` in ``out`` after checking the directory is new, empty, or (with
    ``resume``) a benchmark of the same settings and data."""
    settings = json.loads(json.dumps(settings))
    if (out / "bench.json").exists():
        stored = json.loads((out / "bench.json").read_text())
        if not resume:
            raise BenchError(f"{out}: holds a benchmark already; add --resume to continue it, or choose another --out")
        if stored.get("settings") != settings or stored.get("data_key") != cache.manifest["key"]:
            raise BenchError(f"{out}: holds a benchmark of other settings or data; choose another --out")
    elif holds_other_files(out):
        raise BenchError(f"{out}: exists and is not a benchmark directory; choose an empty or new --out")
    atomic_write_json(out / "bench.json", {"format": format, "settings": settings,
                                           "data_key": cache.manifest["key"], "data": str(cache.path)})


def run_bench(data: Any, out: str | Path, settings: BenchSettings, *, device: str = "auto", resume: bool = False,
              shard: str | None = None, progress: bool = True, registry: Any | None = None,
              command: Sequence[str] | None = None) -> dict[str, Any]:
    """Run (or continue) a benchmark on a peak cache and return the results written to ``out``."""
    from xrdcore import get_registry
    from xrdcore.data.cache import PeakCache

    registry = registry or get_registry()
    cache = data if isinstance(data, PeakCache) else PeakCache(data)
    out = Path(out)
    k, n = parse_shard(shard)
    # one process per benchmark directory, or per shard of it (shards share the directory on
    # purpose; each run directory is locked by the training itself)
    with directory_lock(out, LOCK_NAME if n == 1 else f"{LOCK_NAME}-shard-{k}-of-{n}"):
        claim_bench_dir(out, BENCH_FORMAT, settings.to_dict(), cache, resume)
        combos, skipped = find_combinations(settings, registry)
        runs = [(c, s) for c in combos for s in settings.seeds][k::n]
        bench = Bench(cache, out, settings, registry, skipped, device, command, progress)
        return bench.run(runs, combos, settings.seeds)


class Bench:
    """Runs of one benchmark directory: trains the runs asked for (skipping finished ones, sharing
    rendered inputs between runs of the same input) and rewrites the results after each run, so an
    interruption loses at most the run in progress. ``seeds`` of :meth:`run` may differ per
    combination (a mapping from combination id), as in a leaderboard that adds seeds to its best rows."""

    def __init__(self, cache: Any, out: Path, settings: BenchSettings, registry: Any, skipped: Sequence[dict],
                 device: str, command: Sequence[str] | None, progress: bool):
        from xrdcore.train.trainer import resolve_device

        self.cache, self.out, self.settings, self.registry = cache, out, settings, registry
        self.device = resolve_device(device)
        self.progress = progress
        self.header = results_header(cache, settings, skipped, self.device, command, registry)
        self.started = time.perf_counter()
        self._inputs: dict[Any, Any] = {}

    def run(self, runs: Sequence[tuple[Combination, int]], combos: Sequence[Combination],
            seeds: Sequence[int] | Mapping[str, Sequence[int]]) -> dict[str, Any]:
        from tqdm import tqdm

        bar = tqdm(runs, desc="bench", unit="run", disable=not self.progress)
        for combo, seed in bar:
            bar.set_postfix_str(f"{combo.id} seed {seed}")
            self.train(combo, seed)
            write_results(self.out, self.header, combos, seeds, time.perf_counter() - self.started, plots=False)
        return write_results(self.out, self.header, combos, seeds, time.perf_counter() - self.started)

    def train(self, combo: Combination, seed: int) -> dict[str, Any] | None:
        """One run (or its stored result); a run that raises is recorded in failed.json."""
        from tqdm import tqdm

        from xrdcore.train.inputs import split_inputs
        from xrdcore.train.trainer import train
        from xrdcore.train.unseen import choose_holdout

        run_dir = self.out / "runs" / combo.id / f"seed{seed}"
        failed = run_dir / "failed.json"
        if (run_dir / "metrics.json").exists():
            return json.loads((run_dir / "metrics.json").read_text())
        try:
            config = run_config(combo, seed, self.settings, self.registry)
            holdout = tuple(choose_holdout(self.cache, config.holdout_space_groups))
            if (config.input, holdout) not in self._inputs:
                self._inputs[config.input, holdout] = split_inputs(self.cache, config.input, self.device, holdout,
                                                                   self.registry)
            result = train(config, self.cache, run_dir, device=str(self.device), resume=True, progress=False,
                           registry=self.registry, inputs=self._inputs[config.input, holdout])
            failed.unlink(missing_ok=True)
            tqdm.write(f"{combo.id} seed {seed}: test top-1 {result['test']['top1']:.3f} "
                       f"({result['wall_seconds']:.1f} s)")
            return result
        except LockError:  # another process is training this run: not a failure of the run
            raise
        except Exception as exc:  # noqa: BLE001 - one failing run must not stop the grid
            atomic_write_json(failed, {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
            tqdm.write(f"{combo.id} seed {seed}: FAILED: {type(exc).__name__}: {exc}")
            return None


# --- results ------------------------------------------------------------------------------------

#: metrics summarised over seeds (paths into a run's test metrics)
SUMMARY_METRICS = ("top1", "top2", "top5", "macro_f1", "balanced.score", "level_accuracy.*", "head_accuracy.*",
                   "extinction_accuracy.*", "sub_property_confusion.crystal_system",
                   "sub_property_confusion.centring", "sub_property_confusion.point_group")


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def _summary(values: Sequence[float]) -> dict[str, Any]:
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else None,
            "n": len(array), "values": array.tolist()}


def seed_outcomes(folder: Path, seeds: Sequence[int]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The metrics.json of every finished ``folder/seed<k>`` run, and each seed's status
    (complete, failed with its error, or pending)."""
    finished, status = [], {}
    for seed in seeds:
        run_dir = folder / f"seed{seed}"
        if (run_dir / "metrics.json").exists():
            finished.append(json.loads((run_dir / "metrics.json").read_text()))
            status[str(seed)] = {"status": "complete"}
        elif (run_dir / "failed.json").exists():
            status[str(seed)] = {"status": "failed", "error": json.loads((run_dir / "failed.json").read_text())["error"]}
        else:
            status[str(seed)] = {"status": "pending"}
    return finished, status


def collect_runs(out: Path, combos: Sequence[Combination],
                 seeds: Sequence[int] | Mapping[str, Sequence[int]]) -> list[dict[str, Any]]:
    """Per combination: status, every seed's outcome, and metrics as mean ± std over finished seeds
    (``seeds`` for all combinations, or per combination id)."""
    rows = []
    for combo in combos:
        finished, seed_status = seed_outcomes(out / "runs" / combo.id,
                                              seeds[combo.id] if isinstance(seeds, Mapping) else seeds)
        statuses = {s["status"] for s in seed_status.values()}
        row: dict[str, Any] = {"id": combo.id, "encoder": combo.encoder, "hierarchy": combo.hierarchy,
                               "scheduler": combo.scheduler, "seeds": seed_status,
                               "status": "complete" if statuses == {"complete"} else
                               "failed" if "failed" in statuses and not finished else "partial"
                               if finished else "pending"}
        if finished:
            row["metrics"] = _test_summary([r["test"] for r in finished])
            row["val_top1"] = _summary([r["val"]["top1"] for r in finished])
            unseen = [r["unseen"] for r in finished if r.get("unseen")]
            if unseen:
                row["unseen"] = {"space_groups": unseen[0]["space_groups"], "queries": unseen[0]["queries"],
                                 "references": unseen[0]["references"], "chance_top1": unseen[0]["chance_top1"],
                                 **{k: _summary([u[k] for u in unseen]) for k in ("top1", "top5")}}
            for key in ("samples_per_s", "wall_seconds", "train_seconds", "best_epoch", "epochs_run"):
                values = [r[key] for r in finished if r.get(key) is not None]
                row[key] = _summary(values) if values else None
            row["parameters"] = finished[0]["parameters"]
        rows.append(row)
    return rows


def _test_summary(tests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The summary metrics (``SUMMARY_METRICS``) of finished seeds' test scores, as mean ± std."""
    flats = [_flatten({k: v for k, v in t.items() if k not in ("confusion", "predictions")}) for t in tests]
    keys = [k for k in flats[0] if any(fnmatch.fnmatchcase(k, p) for p in SUMMARY_METRICS)]
    return {k: _summary([f[k] for f in flats if k in f]) for k in keys}


#: the head of a row: the classifier's, or with the nearest-neighbour head (xrdcore.train.retrieval)
NEIGHBOUR_HEAD = "neighbours"


def head_suffix(row: Mapping[str, Any]) -> str:
    """What follows a row's model in tables: nothing, or " + neighbour head"."""
    return " + neighbour head" if row.get("head") == NEIGHBOUR_HEAD else ""


def row_label(row: Mapping[str, Any]) -> str:
    """How a row is named in tables and significance tests."""
    return f"{row['encoder']} × {row['hierarchy']} × {row['scheduler']}" + head_suffix(row)


def run_scores(metrics: Mapping[str, Any], row: Mapping[str, Any]) -> Mapping[str, Any]:
    """The part of a run's metrics.json that scores this row: the classifier's, or the neighbour head's."""
    return metrics["retrieval"] if row.get("head") == NEIGHBOUR_HEAD else metrics


def neighbour_rows(out: Path, runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every finished row again, scored with the nearest-neighbour head on its embedding (chosen
    on validation; :mod:`xrdcore.train.retrieval`), where every finished seed has it."""
    rows = []
    for row in runs:
        finished, _ = seed_outcomes(out / "runs" / row["id"], [int(s) for s in row["seeds"]])
        if not finished or not all(r.get("retrieval") for r in finished):
            continue
        rows.append({**{k: v for k, v in row.items() if k not in ("top1_ci95", "p_vs_majority", "learned")},
                     "id": f"{row['id']}+{NEIGHBOUR_HEAD}", "folder": row["id"], "head": NEIGHBOUR_HEAD,
                     "metrics": _test_summary([r["retrieval"]["test"] for r in finished]),
                     "val_top1": _summary([r["retrieval"]["val"]["top1"] for r in finished]),
                     "neighbours": [r["retrieval"]["neighbours"] for r in finished],
                     "weight": [r["retrieval"]["weight"] for r in finished]})
    return rows


def _training_settings(out: Path) -> dict[str, Any] | None:
    """The optimiser, schedule and input settings the runs used: those of the first run, with the
    distinct inputs of all of them (profiles and images differ by encoder; variants may change one)."""
    configs = [json.loads(c.read_text())["config"] for c in sorted(out.glob("runs/*/seed*/config.json"))]
    if not configs:
        return None
    inputs = []
    for config in configs:
        if config["input"] not in inputs:
            inputs.append(config["input"])
    settings = {k: v for k, v in configs[0].items()
                if k not in ("encoder", "hierarchy", "scheduler", "encoder_options", "seed", "input")}
    return {**settings, "inputs": inputs}


def results_header(cache: Any, settings: BenchSettings, skipped: Sequence[dict], device: Any,
                   command: Sequence[str] | None, registry: Any | None = None) -> dict[str, Any]:
    """The parts of results.json that do not change while the grid runs: settings, environment,
    data, seeds, the extinction-class ceiling and the skipped combinations."""
    from xrdcore.environment import environment
    from xrdcore.metrics import EXTINCTION_LEVELS, extinction_ceiling
    from xrdcore.train.unseen import choose_holdout, holdout_indices

    seen = holdout_indices(cache, choose_holdout(cache, settings.training.get("holdout_space_groups", 0)))
    train_sg, test_sg = cache.space_groups[seen["train"]], cache.space_groups[seen["test"]]
    return {
        "baselines": baselines(cache, seen["train"], seen["test"]),
        "format": BENCH_FORMAT,
        "command": list(command) if command else None,
        "settings": settings.to_dict(),
        "environment": environment(device, registry),
        "data": {**cache.describe(), "provenance": cache.manifest.get("provenance"),
                 "licence": cache.manifest.get("licence")},
        "seeds": list(settings.seeds),
        "ceiling": {name: extinction_ceiling(train_sg, test_sg, name) for name in EXTINCTION_LEVELS},
        "skipped": list(skipped),
    }


def baselines(cache: Any, train: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """The majority class and the nearest-neighbour lookup on the test structures: the metrics of
    :func:`xrdcore.metrics.evaluate` that a leaderboard shows, a bootstrap interval of top-1 and
    their top-1 predictions (for paired tests against the models)."""
    from xrdcore.bench.baselines import NEAREST_NEIGHBOUR_INPUT, baseline_predictions
    from xrdcore.bench.significance import bootstrap_interval
    from xrdcore.metrics import evaluate

    true = cache.space_groups[test]
    out: dict[str, Any] = {}
    for name, scores in baseline_predictions(cache, train, test).items():
        metrics = evaluate(scores, true, train_sg=cache.space_groups[train])
        top1 = (scores.argmax(1) + 1).tolist()
        out[name] = {**{k: metrics[k] for k in ("top1", "top2", "top5", "macro_f1", "balanced", "level_accuracy",
                                                 "extinction_accuracy", "sub_property_confusion")},
                     "top1_ci95": list(bootstrap_interval(np.asarray(top1) == true)), "predictions": top1}
    out["nearest_neighbour"]["input"] = NEAREST_NEIGHBOUR_INPUT.to_dict()
    out["true"] = true.tolist()
    return out


def compare_rows(out: Path, runs: list[dict[str, Any]], reference: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-structure correctness of every row (mean over its finished seeds), each row's bootstrap
    interval of top-1 and whether it beats the majority class; then a paired bootstrap test of
    every row and baseline against the best row (and McNemar's where both are single runs). Adds
    ``top1_ci95``, ``p_vs_majority`` and ``learned`` to the rows; returns the ``significance`` list."""
    from xrdcore.bench.significance import bootstrap_interval, correctness, mcnemar, paired_bootstrap

    true = reference["true"]
    correct: dict[str, np.ndarray] = {}
    for row in runs:
        folder = out / "runs" / row.get("folder", row["id"])
        predictions = [run_scores(json.loads((folder / f"seed{seed}" / "metrics.json").read_text()), row)["test"]
                       ["predictions"] for seed, state in row["seeds"].items() if state["status"] == "complete"]
        if not predictions or any(p["true"] != true for p in predictions):
            continue
        correct[row["id"]] = correctness(true, [p["top1"] for p in predictions])
    majority = correctness(true, [reference["majority"]["predictions"]])
    for row in runs:
        if row["id"] in correct:
            c = correct[row["id"]]
            row["top1_ci95"] = list(bootstrap_interval(c))
            row["p_vs_majority"] = paired_bootstrap(c, majority)
            row["learned"] = bool(c.mean() > majority.mean() and row["p_vs_majority"] < 0.05)
    labelled = {row_label(r): correct[r["id"]] for r in runs if r["id"] in correct}
    if not labelled:
        return []
    best = max(labelled, key=lambda k: labelled[k].mean())
    others = {**{k: v for k, v in labelled.items() if k != best},
              **{name: correctness(true, [reference[name]["predictions"]]) for name in ("nearest_neighbour", "majority")}}
    single = {name for name, c in {**labelled, **others}.items() if np.isin(c, (0.0, 1.0)).all()}
    return [{"a": best, "b": name, "top1_a": float(labelled[best].mean()), "top1_b": float(c.mean()),
             "p": paired_bootstrap(labelled[best], c), "test": "paired bootstrap over test structures",
             # exact McNemar as a cross-check where both sides are single runs (0/1 per structure)
             **({"p_mcnemar": mcnemar(labelled[best], c)} if {best, name} <= single else {})}
            for name, c in others.items()]


def write_results(out: Path, header: Mapping[str, Any], combos: Sequence[Combination],
                  seeds: Sequence[int] | Mapping[str, Sequence[int]], wall_seconds: float,
                  plots: bool = True) -> dict[str, Any]:
    """results.json, results.md (and plots) from every run found in ``out``, written atomically."""
    from xrdcore.bench.report import write_markdown, write_plots

    runs = collect_runs(out, combos, seeds)
    heads = neighbour_rows(out, runs)
    results = {**header, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "runs": runs, "neighbour_head": heads, "training": _training_settings(out),
               "wall_seconds": round(wall_seconds, 2),
               "significance": compare_rows(out, runs + heads, header["baselines"])}
    atomic_write_json(out / "results.json", results)
    write_markdown(out / "results.md", results)
    if plots:
        write_plots(out / "plots", out, results)
    return results
