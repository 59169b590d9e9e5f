"""The harness's generation task (``xrdcore bench --task generation``): every installed generator
(and seed) is fitted on the train split (selecting on val), then scored once on the test split:
retrieval of the true structure among all test structures (contrastive generators) and the top-k
match rate and RMSE of ranked candidates at both StructureMatcher tolerance settings.

The output directory::

    bench.json                          the settings and data key
    runs/<generator>/seed<k>/           a generator run (see xrdcore.generation) and its metrics.json
    runs/<generator>/seed<k>/failed.json  the error of a run that failed
    results.json, results.md            every generator: retrieval and generation tables, mean ± std
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xrdcore.bench.harness import BenchError, _summary, claim_bench_dir, seed_outcomes, select_names
from xrdcore.storage import atomic_write_json, atomic_write_text

GENERATION_FORMAT = "xrdcore-bench-generation/1"


@dataclass
class GenerationSettings:
    """Which generators (names or globs; ``plugins`` limits them), seeds, how many candidates per
    pattern and which top-k, the largest structures scored (``max_atoms``, atoms per cell), how many
    test patterns (``limit``), ``quick`` (each generator's tiny variant) and per-generator options."""

    generators: str = "*"
    plugins: str = "all"
    seeds: tuple[int, ...] = (0,)
    quick: bool = False
    candidates: int = 10
    ks: tuple[int, ...] = (1, 5, 10)
    retrieval_ks: tuple[int, ...] = (1, 3, 5, 10)
    max_atoms: int | None = 20
    limit: int | None = None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self):
        """Checked before any generator is fitted: a bad count would otherwise surface after training."""
        from xrdcore import validate

        self.candidates = validate.positive_int("candidates", self.candidates)
        self.max_atoms = validate.optional_positive_int("max_atoms", self.max_atoms)
        self.limit = validate.optional_positive_int("limit", self.limit)
        self.seeds = validate.seeds(self.seeds)
        self.ks = validate.int_tuple("ks", self.ks)
        self.retrieval_ks = validate.int_tuple("retrieval_ks", self.retrieval_ks)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


def run_generation_bench(data: Any, out: str | Path, settings: GenerationSettings, *, device: str = "auto",
                         resume: bool = False, progress: bool = True, registry: Any | None = None,
                         command: Sequence[str] | None = None) -> dict[str, Any]:
    """Fit and score every selected generator for every seed; write and return the results. The
    directory is locked while it runs: a second process on the same ``out`` is refused."""
    from xrdcore.storage import directory_lock

    with directory_lock(Path(out)):
        return _run_generation_bench(data, Path(out), settings, device=device, resume=resume, progress=progress,
                                     registry=registry, command=command)


def _run_generation_bench(data: Any, out: Path, settings: GenerationSettings, *, device: str, resume: bool,
                          progress: bool, registry: Any | None, command: Sequence[str] | None) -> dict[str, Any]:
    from tqdm import tqdm

    from xrdcore import get_registry
    from xrdcore.data.cache import PeakCache
    from xrdcore.environment import environment
    from xrdcore.generation import fit_generator, score_generation, score_retrieval
    from xrdcore.train.trainer import resolve_device

    registry = registry or get_registry()
    cache = data if isinstance(data, PeakCache) else PeakCache(data)
    out = Path(out)
    claim_bench_dir(out, GENERATION_FORMAT, settings.to_dict(), cache, resume)
    plugins = None if settings.plugins.strip() == "all" else {p.strip() for p in settings.plugins.split(",")}
    names = select_names(registry, "generator", settings.generators, plugins)
    if not names:
        raise BenchError(f"no generators match {settings.generators!r}; installed: "
                         f"{', '.join(registry.names('generator')) or 'none'}")
    device = resolve_device(device)
    started = time.perf_counter()
    header = {"format": GENERATION_FORMAT, "command": list(command) if command else None,
              "settings": settings.to_dict(), "environment": environment(device, registry),
              "data": {**cache.describe(), "provenance": cache.manifest.get("provenance"),
                       "licence": cache.manifest.get("licence")}}
    for name in tqdm(names, desc="generators", disable=not progress):
        options = merge_options(registry.get("generator", name).tiny if settings.quick else {},
                                settings.options.get(name, {}))
        for seed in settings.seeds:
            run_dir = out / "runs" / name.replace(":", "-") / f"seed{seed}"
            if (run_dir / "metrics.json").exists():
                continue
            try:
                generator = fit_generator(name, cache, run_dir, options=options, seed=seed, device=str(device),
                                          progress=progress, registry=registry)
                metrics = {"retrieval": score_retrieval(generator, cache, "test", settings.retrieval_ks,
                                                        settings.max_atoms),
                           "generation": score_generation(generator, cache, "test", settings.candidates, settings.ks,
                                                          max_atoms=settings.max_atoms, limit=settings.limit,
                                                          progress=progress)}
                atomic_write_json(run_dir / "metrics.json", metrics)
                (run_dir / "failed.json").unlink(missing_ok=True)
            except Exception as exc:  # noqa: BLE001 - one failing generator must not stop the others
                atomic_write_json(run_dir / "failed.json", {"error": f"{type(exc).__name__}: {exc}",
                                                            "traceback": traceback.format_exc()})
                tqdm.write(f"{name} seed {seed}: FAILED: {type(exc).__name__}: {exc}")
    results = {**header, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "runs": [_collect(out, name, settings.seeds) for name in names],
               "wall_seconds": round(time.perf_counter() - started, 2)}
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", generation_markdown(results))
    return results


def merge_options(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied, nested dictionaries merged key by key (so an option such
    as ``training={"epochs": 100}`` changes one setting of a tiny variant, not all of them)."""
    merged = dict(base)
    for key, value in changes.items():
        both = isinstance(value, Mapping) and isinstance(merged.get(key), Mapping)
        merged[key] = merge_options(merged[key], value) if both else value
    return merged


def _collect(out: Path, name: str, seeds: Sequence[int]) -> dict[str, Any]:
    """One generator: every seed's status and the scores as mean ± std over finished seeds."""
    finished, status = seed_outcomes(out / "runs" / name.replace(":", "-"), seeds)
    row: dict[str, Any] = {"generator": name, "seeds": status}
    if not finished:
        return row
    retrieval = [m["retrieval"] for m in finished if m["retrieval"]]
    if retrieval:
        row["retrieval"] = {"n": retrieval[0]["n"], "chance_top1": retrieval[0]["chance_top1"],
                            **{k: _summary([r[k] for r in retrieval]) for k in _top_keys(retrieval[0])}}
    generation = [m["generation"] for m in finished]
    first = generation[0]
    row["generation"] = {"n": first["n"], "candidates": first["candidates"],
                         "validity": _summary([g["validity"] for g in generation])}
    for setting in ("paper", "code"):
        row["generation"][setting] = {"tolerance": first[setting]["tolerance"]}
        for key in _top_keys(first[setting]):
            rates = [g[setting][key]["match_rate"] for g in generation]
            rmse = [g[setting][key]["mean_rmse"] for g in generation if g[setting][key]["mean_rmse"] is not None]
            row["generation"][setting][key] = {"match_rate": _summary(rates),
                                               "mean_rmse": _summary(rmse) if rmse else None}
    return row


def _top_keys(scores: Mapping[str, Any]) -> list[str]:
    """``top1``, ``top3``, ``top10``, ... in the order of k (JSON files sort them as text)."""
    return sorted((k for k in scores if k.startswith("top") and k[3:].isdigit()), key=lambda k: int(k[3:]))


def _percent(summary: Mapping[str, Any] | None) -> str:
    if not summary:
        return "–"
    text = f"{100 * summary['mean']:.1f}"
    return text + (f" ± {100 * summary['std']:.1f}" if summary.get("std") is not None else "")


def generation_markdown(results: Mapping[str, Any]) -> str:
    data, settings = results["data"], results["settings"]
    env = results["environment"]
    lines = [f"# Generation benchmark: {data['dataset']}", "",
             (f"Generators fitted on the train split (selected on val), scored once on test structures with at most "
              f"{settings['max_atoms']} atoms{' (the first ' + str(settings['limit']) + ')' if settings['limit'] else ''}"
              f"; split `{data['split_hash'][:19]}…`; seeds {', '.join(map(str, settings['seeds']))}. "
              f"Values are % as mean ± std over seeds."),
             f"Device: {env['device_name']} · torch {env['torch']} · xrdcore {env['xrdcore']}"
             + "".join(f" · {n} {v}" for n, v in env["plugins"].items())
             + (" · tiny variants (quick mode)" if settings["quick"] else ""), ""]
    rows = [r for r in results["runs"] if r.get("retrieval")]
    if rows:
        ks = _top_keys(rows[0]["retrieval"])
        lines += ["## Retrieval: the true structure among all test structures", "",
                  (f"{rows[0]['retrieval']['n']} test patterns; chance top-1 "
                   f"{100 * rows[0]['retrieval']['chance_top1']:.1f}%."), "",
                  "| generator | " + " | ".join(ks) + " |", "|---|" + "---|" * len(ks)]
        lines += [f"| {r['generator']} | " + " | ".join(_percent(r["retrieval"][k]) for k in ks) + " |" for r in rows]
        lines.append("")
    rows = [r for r in results["runs"] if r.get("generation")]
    if rows:
        first = rows[0]["generation"]
        ks = _top_keys(first["paper"])
        lines += ["## Generation: match rate of ranked candidates", "",
                  (f"{first['n']} test patterns, {first['candidates']} candidates each (the true cell content "
                   f"given). StructureMatcher tolerances: **paper** stol 0.7, angle_tol 5°, ltol 0.2; **code** "
                   f"stol 0.9, angle_tol 10°, ltol 0.3. RMSE: normalised RMS distance of the best match."), "",
                  "| generator | tolerance | " + " | ".join(f"{k} match" for k in ks) + f" | RMSE ({ks[-1]}) | valid |",
                  "|---|---|" + "---|" * len(ks) + "---|---|"]
        for r in rows:
            g = r["generation"]
            for setting in ("paper", "code"):
                rmse = g[setting][ks[-1]]["mean_rmse"]
                cells = " | ".join(_percent(g[setting][k]["match_rate"]) for k in ks)
                rmse_text = f"{rmse['mean']:.3f}" if rmse else "–"
                lines.append(f"| {r['generator']} | {setting} | {cells} | {rmse_text} | {_percent(g['validity'])} |")
    failed = [(r["generator"], s, st["error"]) for r in results["runs"] for s, st in r["seeds"].items()
              if st["status"] == "failed"]
    if failed:
        lines += ["", "## Failed runs", ""] + [f"- {g} seed {s}: {e}" for g, s, e in failed]
    return "\n".join(lines) + "\n"
