"""The training loop: one encoder × label hierarchy × loss scheduler on a cached data set.

Plain PyTorch: AdamW or Adam, linear warm-up then cosine decay per step, bf16 autocast on CUDA,
gradient clipping, model selection and early stopping on the validation split, and one final
score on the test split. A run lives in one directory::

    config.json                 what was trained, on which data, with which software
    checkpoints/last.safetensors  weights, optimiser moments and history after the last epoch
    checkpoints/best.safetensors  weights of the epoch with the best validation score
    metrics.json                written once, at the end: validation and test metrics

Every epoch draws its shuffling, dropout and augmentation from ``(seed, epoch)``, so a run
resumed from ``last`` continues exactly as if never stopped (bit for bit on the CPU with the same
number of threads; CUDA kernels may reorder sums). Under
``torchrun`` each process takes its share of every batch (DistributedDataParallel, gloo on CPU,
NCCL on CUDA); rank 0 writes the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xrdcore.data.cache import PeakCache
from xrdcore.metrics import evaluate
from xrdcore.storage import atomic_write_json, directory_lock, holds_other_files
from xrdcore.train.config import TrainConfig
from xrdcore.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from xrdcore.train.inputs import SplitInputs, split_inputs
from xrdcore.train.model import (HierarchicalClassifier, class_logits, class_weights, count_parameters,
                                 level_loss)
from xrdcore.train.retrieval import retrieval_scores
from xrdcore.train.unseen import choose_holdout, score_unseen
from xrdcore.validate import is_real

RUN_FORMAT = "xrdcore-run/1"


class RunError(ValueError):
    """A run that cannot start or continue as asked; the message names the run directory."""


class TrainingError(RuntimeError):
    """Training itself failed (a non-finite loss, a component raising during a step)."""


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` is the GPU when there is one; asking for CUDA without one is a clear error."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError("device 'cuda' was asked for, but torch sees no GPU (use --device cpu)")
    return device


def build_model(config: TrainConfig, registry: Any | None = None) -> tuple[HierarchicalClassifier, dict[str, Any]]:
    """The model of a configuration (fresh weights) and a JSON description of its components."""
    if registry is None:
        from xrdcore import get_registry

        registry = get_registry()
    encoder_component = registry.get("encoder", config.encoder)
    kwargs = {**config.input.encoder_kwargs(encoder_component.load(), registry), **config.encoder_options}
    encoder = registry.create("encoder", config.encoder, **kwargs)
    if encoder.input_kind != config.input.kind:
        raise RunError(f"encoder {encoder_component.qualified_name!r} takes {encoder.input_kind!r} inputs, "
                       f"but the run feeds {config.input.kind!r}")
    hierarchy = registry.create("label_hierarchy", config.hierarchy, **config.hierarchy_options)
    if "space_group" not in hierarchy:
        raise RunError(f"hierarchy {config.hierarchy!r} has no space_group level, which every run is scored on")
    plugin = registry.plugins[encoder_component.plugin]
    description = {
        "encoder": {"name": config.encoder, "qualified_name": encoder_component.qualified_name,
                    "plugin": plugin.name, "version": plugin.version, "kwargs": kwargs,
                    "embed_dim": encoder.embed_dim, "input_kind": encoder.input_kind},
        "hierarchy": hierarchy.to_dict(),
        "scheduler": {"name": config.scheduler,
                      "qualified_name": registry.get("loss_scheduler", config.scheduler).qualified_name},
    }
    return HierarchicalClassifier(encoder, hierarchy, heads=config.heads), description


@dataclass
class _Distributed:
    rank: int = 0
    world: int = 1
    started_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _distributed(device: torch.device) -> _Distributed:
    """Join the process group ``torchrun`` set up (WORLD_SIZE > 1), else run alone."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Distributed()
    started = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        started = True
    return _Distributed(dist.get_rank(), dist.get_world_size(), started)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 17) % (2 ** 63)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch in batches; a final batch of one joins the previous (batch norm needs 2)."""
    order = torch.randperm(n, generator=generator)
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def _learning_rate(config: TrainConfig, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Linear warm-up over ``warmup_epochs`` (at most all epochs), then cosine decay to 1% of ``lr``
    at the last step of ``epochs``."""
    total = epochs * steps_per_epoch
    warmup = round(min(config.warmup_epochs, epochs) * steps_per_epoch)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def predict_scores(model: HierarchicalClassifier, data: SplitInputs, batch_size: int = 256,
                   autocast: Any = contextlib.nullcontext) -> dict[str, torch.Tensor]:
    """Softmax probabilities of every level for a whole split, in split order, on the CPU."""
    was_training = model.training
    model.eval()
    out: dict[str, list[torch.Tensor]] = {name: [] for name in model.heads}
    for rows in torch.split(torch.arange(len(data)), batch_size):
        inputs, _ = data.batch(rows)
        with autocast():
            _, logits = model(inputs)
        for name, value in logits.items():
            out[name].append(torch.softmax(class_logits(value).float(), dim=1).cpu())
    model.train(was_training)
    return {name: torch.cat(parts) if parts else torch.zeros(0, len(model.hierarchy[name]))
            for name, parts in out.items()}


def score_split(model: HierarchicalClassifier, data: SplitInputs, train_space_groups: np.ndarray, seed: int,
                autocast: Any = contextlib.nullcontext) -> dict[str, Any]:
    """Every metric of :func:`xrdcore.metrics.evaluate` on one split, each head's own predictions
    included, plus the mean space-group cross-entropy."""
    scores = predict_scores(model, data, autocast=autocast)
    true = data.space_groups.cpu().numpy()
    metrics = evaluate(scores["space_group"].numpy(), true, train_sg=train_space_groups, seed=seed,
                       level_predictions={k: v.numpy() for k, v in scores.items() if k != "space_group"})
    probability = scores["space_group"][torch.arange(len(true)), torch.as_tensor(true - 1)]
    metrics["loss"] = float(-torch.log(probability.clamp(min=1e-12)).mean()) if len(true) else None
    metrics["predictions"] = {"true": true.tolist(), "top1": (scores["space_group"].argmax(1) + 1).tolist()}
    return metrics


def _selection_key(metrics: Mapping[str, Any]) -> tuple[float, float]:
    """Validation top-1 first; lower validation loss breaks ties (small validation sets tie often)."""
    return (metrics["top1"], -(metrics["loss"] if metrics["loss"] is not None else math.inf))


def _parameter_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def train(config: TrainConfig, data: str | Path | PeakCache, out: str | Path, *, device: str = "auto",
          resume: bool = True, progress: bool = True, registry: Any | None = None,
          inputs: Mapping[str, SplitInputs] | None = None) -> dict[str, Any]:
    """Train and score one run in ``out`` and return its ``metrics.json`` content.

    A finished run (``metrics.json`` present) is returned as is; an interrupted one continues from
    its last checkpoint when ``resume``; a directory holding a run of other settings or data is
    refused. ``inputs`` may pass the splits already rendered, as :func:`split_inputs` makes them
    (the benchmark harness shares them between runs with the same input settings and holdout).
    """
    out = Path(out)
    cache = data if isinstance(data, PeakCache) else PeakCache(data)
    config.input.check_cache(cache)
    device = resolve_device(device)
    if config.precision == "bf16" and device.type != "cuda":
        raise RunError("precision bf16 is for CUDA devices; use fp32 or auto on the CPU")
    dist = _distributed(device)
    try:
        if not dist.main:  # the main process holds the run directory's lock for all ranks
            return _train(config, cache, out, device, dist, resume, progress and dist.main, registry, inputs)
        with directory_lock(out):  # a second process pointed at ``out`` is refused while this one runs
            return _train(config, cache, out, device, dist, resume, progress and dist.main, registry, inputs)
    finally:
        if dist.started_here:
            import torch.distributed

            torch.distributed.destroy_process_group()


def _train(config, cache, out, device, dist, resume, progress, registry, inputs) -> dict[str, Any]:
    from xrdcore import get_registry
    from xrdcore.environment import environment

    registry = registry or get_registry()
    metrics_file = out / "metrics.json"
    torch.manual_seed(config.seed)  # the initial weights
    model, description = build_model(config, registry)
    record = {"format": RUN_FORMAT, "config": config.to_dict(), **description, "data": cache.describe(),
              "wavelength": data_wavelength(cache)}
    config_file = out / "config.json"
    if config_file.exists():
        stored = _read_json(config_file)
        for key in ("config", "data"):
            if _comparable(stored.get(key), key) != _comparable(record[key], key):
                raise RunError(f"{out}: holds a run with other {'settings' if key == 'config' else 'data'}; "
                               f"choose another directory or delete it")
        if metrics_file.exists():
            return _read_json(metrics_file)
        if not resume:
            raise RunError(f"{out}: holds an unfinished run; resume it or delete the directory")
    elif holds_other_files(out):
        raise RunError(f"{out}: exists and is not an xrdcore run directory")
    if dist.main:
        atomic_write_json(config_file, {**record, "environment": environment(device, registry)})

    started = time.perf_counter()
    splits, holdout = run_splits(config, cache, out, device=device, registry=registry, inputs=inputs)
    fit = _Fit(config, cache, out, model=model, device=device, dist=dist, progress=progress, registry=registry,
               splits=splits, holdout=holdout)
    state = fit.restore()
    while state["epoch"] < _planned(config, state) and not _stopped_early(config, state):
        fit.epoch(state)
    return fit.finish(state, started)


def run_splits(config: TrainConfig, cache: PeakCache, out: Path, *, device: torch.device, registry: Any,
            inputs: Mapping[str, SplitInputs] | None) -> tuple[dict[str, SplitInputs], list[int]]:
    """The rendered splits of the run (given, or rendered here), ``train`` cut to ``train_limit``,
    and the space groups held out of training (empty unless ``holdout_space_groups``)."""
    holdout = choose_holdout(cache, config.holdout_space_groups)
    splits = dict(inputs) if inputs is not None else split_inputs(cache, config.input, device, holdout, registry)
    if bool(holdout) != ("unseen" in splits):
        raise RunError(f"{out}: the inputs given do not match holdout_space_groups={config.holdout_space_groups!r}")
    if config.train_limit is not None and config.train_limit < len(splits["train"]):
        splits["train"] = splits["train"].subset(config.train_limit, seed=config.seed)
    if len(splits["train"]) < 2 or len(splits["val"]) < 1:
        raise RunError(f"{cache.path}: needs at least 2 training and 1 validation structure, has "
                       f"{len(splits['train'])} and {len(splits['val'])}")
    return splits, holdout


def _optimizer(model: HierarchicalClassifier, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or Adam; an encoder may name parameters that must not decay (``no_weight_decay``,
    e.g. Mamba's A_log and D, as in timm)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    exempt = {f"encoder.{name}" for name in getattr(model.encoder, "no_weight_decay", lambda: ())()}
    groups = [{"params": [p for n, p in named if n not in exempt]},
              {"params": [p for n, p in named if n in exempt], "weight_decay": 0.0}]
    return (torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam)(
        [g for g in groups if g["params"]], lr=config.lr, weight_decay=config.weight_decay)


def _planned(config: TrainConfig, state: Mapping[str, Any]) -> int:
    """Epochs the run will train: ``epochs``, or what fits the time budget."""
    return state.get("epochs_planned", config.epochs)


class _Fit:
    """One run's training, once its model and inputs exist: :meth:`restore` the state of the last
    checkpoint, :meth:`epoch` until done, :meth:`finish` with the scores of the best weights."""

    def __init__(self, config: TrainConfig, cache: PeakCache, out: Path, *, model: HierarchicalClassifier,
                 device: torch.device, dist: _Distributed, progress: bool, registry: Any,
                 splits: dict[str, SplitInputs], holdout: list[int]):
        self.config, self.cache, self.out, self.device, self.dist, self.progress = (
            config, cache, out, device, dist, progress)
        self.model = model.to(device)
        self.splits, self.holdout = splits, holdout
        self.train_data = splits["train"]
        self.train_sg = self.train_data.space_groups.cpu().numpy()
        self.scheduler = registry.create("loss_scheduler", config.scheduler, **config.scheduler_options)
        self.optimizer = _optimizer(self.model, config)
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.balanced = None
        if config.balance:
            hierarchy, counts = model.hierarchy, model.hierarchy.targets(self.train_data.space_groups)
            self.balanced = {name: class_weights(torch.bincount(counts[name], minlength=n), config.balance).to(device)
                             for name, n in hierarchy.num_classes.items()}
        use_bf16 = device.type == "cuda" and config.precision in ("auto", "bf16")
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
        self.network = model
        if dist.world > 1:
            self.network = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device] if device.type == "cuda" else None)
        self.last, self.best = out / "checkpoints" / "last.safetensors", out / "checkpoints" / "best.safetensors"
        self.steps_per_epoch = len(_batches(len(self.train_data), config.batch_size, torch.Generator().manual_seed(0)))

    def restore(self) -> dict[str, Any]:
        """The state after the last finished epoch (a fresh one for a new run)."""
        state: dict[str, Any] = {"epoch": 0, "step": 0, "history": [], "best": None, "best_epoch": None,
                                 "train_seconds": 0.0, "train_samples": 0}
        if self.last.exists():
            state = {**state, **load_checkpoint(self.last, self.model, self.optimizer)}
            state.pop("optimizer_groups", None)
        elif self.best.exists():  # stopped between the two checkpoint writes of the first epoch
            self.best.unlink()
        return state

    def epoch(self, state: dict[str, Any]) -> None:
        """Train one epoch, score validation, keep the best weights, write the last checkpoint."""
        from tqdm import tqdm

        config, epoch = self.config, state["epoch"]
        seed = _epoch_seed(config.seed, epoch)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        augment = torch.Generator(device=self.device).manual_seed(seed) if not config.input.static else None
        self.network.train()
        losses, level_weights, seen, tic = [], {}, 0, time.perf_counter()
        bar = tqdm(_batches(len(self.train_data), config.batch_size, generator), unit="batch", leave=False,
                   desc=f"{config.encoder} epoch {epoch + 1}/{config.epochs}", disable=not self.progress)
        for rows in bar:
            lr = _learning_rate(config, state["step"], self.steps_per_epoch, _planned(config, state))
            loss, weights = self.step(rows, lr=lr, generator=augment, where=(epoch, state["step"]))
            state["step"] += 1
            losses.append(loss)
            for name, w in weights.items():
                level_weights.setdefault(name, []).append(float(w))
            seen += len(rows)
            bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{seen / (time.perf_counter() - tic):.0f}")
        seconds = time.perf_counter() - tic
        state["train_seconds"] += seconds
        state["train_samples"] += seen
        val = score_split(self.model, self.splits["val"], self.train_sg, config.seed, self.autocast)
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val["loss"],
               "val_top1": val["top1"], "lr": lr, "seconds": round(seconds, 3),
               "samples_per_s": seen / seconds if seconds > 0 else None,
               "loss_weights": {k: float(np.mean(v)) for k, v in level_weights.items()}}
        if any(len(set(v)) > 1 for v in level_weights.values()):  # a scheduler that adapts (MGDA): every step
            row["loss_weights_per_step"] = {k: [round(w, 6) for w in v] for k, v in level_weights.items()}
        state["history"].append(row)
        state["epoch"] = epoch + 1
        if config.time_budget is not None and epoch == 0:
            self.plan_epochs(state, seconds_per_epoch=time.perf_counter() - tic)
        self.checkpoint(state, val)
        if self.progress:
            tqdm.write(f"{config.encoder} × {config.hierarchy} × {config.scheduler} seed {config.seed}: "
                       f"epoch {epoch + 1} loss {row['train_loss']:.4f} val top-1 {val['top1']:.3f} "
                       f"({row['samples_per_s'] or 0:.0f} samples/s)")
        if self.dist.world > 1:
            torch.distributed.barrier()

    def step(self, rows: torch.Tensor, *, lr: float, generator: torch.Generator | None,
             where: tuple[int, int]) -> tuple[float, dict[str, Any]]:
        """One optimiser step on the training rows (this process's share of them); the loss and
        the scheduler's level weights."""
        dist, hierarchy = self.dist, self.model.hierarchy
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, labels = self.train_data.batch(rows[dist.rank::dist.world] if dist.world > 1 else rows, generator)
        targets = hierarchy.targets(labels)
        with self.autocast():
            shared, logits = self.network(x)
        level_losses = {name: level_loss(logits[name], targets[name],
                                         None if self.balanced is None else self.balanced[name],
                                         self.config.label_smoothing) for name in logits}
        loss, weights = self.scheduler.combine(level_losses, shared if self.scheduler.needs_shared else None, hierarchy)
        if not torch.isfinite(loss):
            raise TrainingError(f"the loss became {float(loss)} at epoch {where[0] + 1}, step {where[1] + 1} "
                                f"(levels: {', '.join(f'{k}={float(v):.3g}' for k, v in level_losses.items())})")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip)
        self.optimizer.step()
        return float(loss.detach()), weights

    def plan_epochs(self, state: dict[str, Any], *, seconds_per_epoch: float) -> None:
        """With a time budget, the epochs that fit after the first (the same on every rank)."""
        config = self.config
        fits = torch.tensor(int(config.time_budget // seconds_per_epoch), device=self.device)
        if self.dist.world > 1:
            torch.distributed.all_reduce(fits, op=torch.distributed.ReduceOp.MIN)
        state["epochs_planned"] = max(min(2, config.epochs), min(config.epochs, int(fits)))

    def checkpoint(self, state: dict[str, Any], val: Mapping[str, Any]) -> None:
        """Keep the weights if validation is the best yet; write the last checkpoint."""
        if state["best"] is None or _selection_key(val) > tuple(state["best"]):
            state["best"], state["best_epoch"] = list(_selection_key(val)), state["epoch"]
            if self.dist.main:
                save_checkpoint(self.best, self.model, {"epoch": state["epoch"], "val_top1": val["top1"]})
        if self.dist.main:
            save_checkpoint(self.last, self.model, state, self.optimizer)

    def finish(self, state: dict[str, Any], started: float) -> dict[str, Any]:
        """Score the best weights once on validation and test (and unseen groups); write metrics.json."""
        config, dist, model = self.config, self.dist, self.model
        if dist.world > 1:
            torch.distributed.barrier()
        load_checkpoint(self.best, model)
        val = score_split(model, self.splits["val"], self.train_sg, config.seed, self.autocast)
        test = score_split(model, self.splits["test"], self.train_sg, config.seed, self.autocast)
        result = {
            "status": "complete", "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
            "stopped_early": _stopped_early(config, state), "epochs_planned": _planned(config, state),
            "val": val, "test": test,
            "history": state["history"], "parameters": count_parameters(model),
            "samples_per_s": state["train_samples"] / state["train_seconds"] if state["train_seconds"] else None,
            "train_seconds": round(state["train_seconds"], 3),
            "wall_seconds": round(time.perf_counter() - started, 3),
            "parameter_digest": _parameter_digest(model), "world_size": dist.world,
        }
        result["retrieval"] = retrieval_scores(model, self.splits, config.seed, self.autocast)
        if self.holdout:
            result["unseen"] = score_unseen(model, self.splits["reference"], self.splits["unseen"], self.holdout,
                                            self.autocast)
        if dist.world > 1:
            atomic_write_json(self.out / "ranks" / f"rank{dist.rank}.json",
                              {"rank": dist.rank, "parameter_digest": result["parameter_digest"],
                               "val_top1": val["top1"], "test_top1": test["top1"]})
            torch.distributed.barrier()
        if dist.main:
            atomic_write_json(self.out / "metrics.json", result)
        return result


def _stopped_early(config: TrainConfig, state: Mapping[str, Any]) -> bool:
    return (config.patience is not None and state["best_epoch"] is not None
            and state["epoch"] - state["best_epoch"] >= config.patience
            and state["epoch"] < _planned(config, state))


def data_wavelength(cache: Any) -> float | None:
    """The wavelength (Å) the cache's patterns were simulated at, which `predict` moves patterns to."""
    from xrdcore.diffraction.radiation import wavelength

    stated = cache.manifest.get("spec", {}).get("wavelength")
    return None if stated is None else wavelength(stated)


def _comparable(value: Any, key: str) -> Any:
    """Settings as stored (JSON), without the data path, which may move with the cache."""
    value = json.loads(json.dumps(value))
    if key == "data" and isinstance(value, dict):
        value.pop("path", None)
    return value


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RunError(f"{path}: cannot be read ({' '.join(str(exc).split())[:200]})") from None


def read_run_record(run_dir: str | Path) -> tuple[dict[str, Any], TrainConfig]:
    """A run's ``config.json`` and its training configuration, every field :func:`load_run` reads
    checked, so that a damaged file is a RunError naming it, not an exception from deep inside."""
    path = Path(run_dir) / "config.json"
    record = _read_json(path) if path.is_file() else None
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
        raise RunError(f"{run_dir}: not an xrdcore run directory (no {RUN_FORMAT} config.json)")
    for key, field_name in (("encoder", "qualified_name"), ("hierarchy", "name")):
        if not isinstance(record.get(key), dict) or not isinstance(record[key].get(field_name), str):
            raise RunError(f"{path}: {key}.{field_name} is missing or not text")
    if not isinstance(record.get("config"), dict):
        raise RunError(f"{path}: config is missing or not an object")
    if record.get("wavelength") is not None and not is_real(record["wavelength"]):
        raise RunError(f"{path}: wavelength must be a number of Å, got {record['wavelength']!r}")
    try:
        config = TrainConfig.from_dict(record["config"])
    except Exception as exc:  # noqa: BLE001 - any field of the wrong kind; the message says which
        raise RunError(f"{path}: its config is not a training configuration "
                       f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    return record, config


def load_run(run_dir: str | Path, which: str = "best", device: str = "cpu",
             registry: Any | None = None) -> tuple[HierarchicalClassifier, TrainConfig, dict[str, Any]]:
    """A trained model from a run directory (its ``best`` or ``last`` weights), its configuration
    and ``config.json``; the encoder's plugin must be installed."""
    run_dir = Path(run_dir)
    record, config = read_run_record(run_dir)
    try:
        model, _ = build_model(config, registry)
    except KeyError as exc:
        encoder = record.get("encoder", {})
        raise RunError(f"{run_dir}: the run needs encoder {encoder.get('qualified_name')!r} of plugin "
                       f"{encoder.get('plugin')} {encoder.get('version')}, which is not installed ({exc})") from None
    load_checkpoint(run_dir / "checkpoints" / f"{which}.safetensors", model)
    model.to(resolve_device(device)).eval()
    return model, config, record


__all__ = ["CheckpointError", "RunError", "TrainConfig", "TrainingError", "build_model", "load_run",
           "predict_scores", "resolve_device", "score_split", "train"]
