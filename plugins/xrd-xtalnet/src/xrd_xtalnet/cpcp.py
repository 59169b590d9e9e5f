"""CPCP: contrastive PXRD–crystal pretraining (XtalNet), its training, retrieval and storage.

A PXRD encoder (:class:`~xrd_xtalnet.pxrd_encoder.PeakTransformer`) and a crystal encoder
(:class:`~xrd_xtalnet.crystal_encoder.CrystalEncoder`) are projected linearly into one shared
space and L2-normalised. A batch of B (pattern, structure) pairs gives the B × B matrix of cosine
similarities times a learnable scale ``s = exp(log_scale)`` (inverse temperature); the loss is
CLIP's symmetric InfoNCE, the mean of the cross-entropies of its rows (pattern → structure) and
columns (structure → pattern) with the diagonal as targets. ``s`` starts at ``1/temperature``
(0.07 as in CLIP) and is clamped to at most ``max_scale`` (100 as in CLIP): in the forward pass, and
the parameter itself after each optimiser step so it cannot drift where its gradient is zero.

Retrieval: for every pattern of a split, the rank of its own structure among all structures of
that split by similarity; the top-k hit rate is the fraction ranked within the first k. Ties count
against the true structure (a structure tied with it is ranked ahead of it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from xrdcore.diffraction.grid import as_grid
from xrdcore.generation import hit_rates

from xrd_xtalnet.crystal_encoder import CrystalEncoder
from xrd_xtalnet.crystals import CrystalBatch, is_valid
from xrd_xtalnet.model_dir import load_model, save_model
from xrd_xtalnet.pairs import SplitPairs, pattern_inputs, split_pairs
from xrd_xtalnet.pxrd_encoder import PeakTransformer

if TYPE_CHECKING:
    from pymatgen.core import Structure
    from xrdcore.data.cache import PeakCache

__all__ = [
    "CPCP",
    "TRAINING_FIELDS",
    "CPCPConfig",
    "cpcp_config",
    "fit_cpcp",
    "info_nce",
    "load_cpcp",
    "retrieval_hit_rates",
    "save_cpcp",
    "similarity",
    "train_cpcp",
]

RESULTS_FILE = "results.json"
SELECTIONS = ("val_loss", "val_top1")


def info_nce(patterns: torch.Tensor, crystals: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE of ``B`` matched pairs: ``patterns`` and ``crystals`` (B, D) (normalised
    here), ``scale`` the inverse temperature. Row i of each is one pair."""
    if patterns.shape != crystals.shape or patterns.dim() != 2:
        raise ValueError(f"patterns and crystals must be (B, D) of one shape, got {tuple(patterns.shape)} and "
                         f"{tuple(crystals.shape)}")
    logits = scale * F.normalize(patterns, dim=1) @ F.normalize(crystals, dim=1).T
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class CPCP(nn.Module):
    """PXRD encoder + crystal encoder + projections into one L2-normalised space.

    ``pxrd``: keyword arguments of :class:`PeakTransformer` (default: its defaults, the published
    sizes); ``crystal``: of :class:`CrystalEncoder`; ``shared_dim`` 256; ``temperature`` 0.07,
    the initial 1/scale; ``max_scale`` 100.
    """

    def __init__(self, *, pxrd: Mapping[str, Any] | None = None, crystal: Mapping[str, Any] | None = None,
                 shared_dim: int = 256, temperature: float = 0.07, max_scale: float = 100.0):
        super().__init__()
        if not (temperature > 0 and max_scale >= 1 / temperature):
            raise ValueError(f"need temperature > 0 and 1/temperature <= max_scale, got {temperature}, {max_scale}")
        pxrd = dict(pxrd or {})
        if "grid" in pxrd:  # stored as JSON with the model
            pxrd["grid"] = as_grid("pxrd grid", pxrd["grid"]).to_dict()
        self.config = {"pxrd": pxrd, "crystal": dict(crystal or {}), "shared_dim": int(shared_dim),
                       "temperature": float(temperature), "max_scale": float(max_scale)}
        self.pxrd_encoder = PeakTransformer(**pxrd)
        self.crystal_encoder = CrystalEncoder(**dict(crystal or {}))
        self.pxrd_projection = nn.Linear(self.pxrd_encoder.embed_dim, shared_dim)
        self.crystal_projection = nn.Linear(self.crystal_encoder.embed_dim, shared_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))
        self.max_log_scale = math.log(max_scale)
        self.shared_dim = int(shared_dim)

    @property
    def scale(self) -> torch.Tensor:
        """The inverse temperature, clamped to at most ``max_scale``."""
        return self.log_scale.clamp(max=self.max_log_scale).exp()

    def clamp_(self) -> None:
        """Clamp the log-scale parameter to [0, log max_scale] (call after each optimiser step)."""
        with torch.no_grad():
            self.log_scale.clamp_(0.0, self.max_log_scale)

    def embed_patterns(self, peaks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(B, shared_dim)`` unit vectors of a ``peaks`` batch."""
        return F.normalize(self.pxrd_projection(self.pxrd_encoder(peaks)), dim=1)

    def embed_crystals(self, crystals: CrystalBatch) -> torch.Tensor:
        """``(G, shared_dim)`` unit vectors of a batch of crystals."""
        return F.normalize(self.crystal_projection(self.crystal_encoder(crystals)), dim=1)

    def embed_peak_lists(self, peak_lists: Sequence[Any]) -> torch.Tensor:
        """``(B, shared_dim)`` unit vectors of peak lists (the cache's ``PeakList`` or a measured
        profile's ``FoundPeaks``); only peaks inside the PXRD encoder's 2θ bins are used, each list
        rescaled to its strongest one (:func:`~xrd_xtalnet.pairs.pattern_inputs`)."""
        encoder = self.pxrd_encoder
        return self.embed_patterns(pattern_inputs(peak_lists, self.device, (encoder.start, encoder.stop)))

    def embed_structures(self, structures: Sequence[Structure]) -> torch.Tensor:
        return self.embed_crystals(CrystalBatch.from_structures(structures, self.device, self.dtype))

    @property
    def device(self) -> torch.device:
        return self.log_scale.device

    @property
    def dtype(self) -> torch.dtype:
        return self.log_scale.dtype

    def forward(self, peaks: Mapping[str, torch.Tensor], crystals: CrystalBatch) -> torch.Tensor:
        """The symmetric InfoNCE loss of matched (pattern, crystal) rows."""
        return info_nce(self.embed_patterns(peaks), self.embed_crystals(crystals), self.scale)


@torch.no_grad()
def similarity(model: CPCP, condition: torch.Tensor, candidates: Sequence[Structure],
               batch_size: int = 64) -> list[float]:
    """Cosine similarity between a pattern embedding ``condition`` (``(D,)`` or ``(1, D)``, in
    CPCP's shared space) and each candidate's crystal embedding; ``-inf`` for candidates recorded
    or found invalid (:func:`xrd_xtalnet.crystals.is_valid`), so they rank last."""
    was_training = model.training
    model.eval()
    condition = F.normalize(condition.reshape(1, -1).to(model.device, model.dtype), dim=1)
    scores = [-math.inf] * len(candidates)
    valid = [i for i, s in enumerate(candidates) if is_valid(s)]
    for start in range(0, len(valid), batch_size):
        rows = valid[start:start + batch_size]
        embedding = model.embed_structures([candidates[i] for i in rows])
        for i, value in zip(rows, (embedding @ condition[0]).tolist()):
            scores[i] = float(value)
    model.train(was_training)
    return scores


# --- storage -------------------------------------------------------------------------------------


def save_cpcp(model: CPCP, directory: str | Path, state: Mapping[str, Any] | None = None) -> Path:
    """The model in ``directory`` (:mod:`xrd_xtalnet.model_dir`), loadable with :func:`load_cpcp`."""
    return save_model(directory, model, "xtalnet-cpcp", model.config, state)


def load_cpcp(directory: str | Path, device: str | torch.device = "cpu") -> CPCP:
    """The CPCP model saved in ``directory`` (by :func:`save_cpcp` or :func:`train_cpcp`), in eval
    mode; a wrong or damaged directory raises ``xrdcore.train.checkpoint.CheckpointError``."""
    return load_model(directory, "xtalnet-cpcp", CPCP, device)


# --- retrieval -----------------------------------------------------------------------------------


@torch.no_grad()
def _embed_split(model: CPCP, pairs: SplitPairs, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    patterns, crystals = [], []
    for start in range(0, len(pairs), batch_size):
        rows = range(start, min(start + batch_size, len(pairs)))
        patterns.append(model.embed_patterns(pairs.patterns(rows, model.device)))
        crystals.append(model.embed_crystals(pairs.crystal_batch(rows, model.device, model.dtype)))
    return torch.cat(patterns), torch.cat(crystals)


def _retrieval(model: CPCP, pairs: SplitPairs, ks: Sequence[int], batch_size: int) -> dict[str, Any]:
    was_training = model.training
    model.eval()
    patterns, crystals = _embed_split(model, pairs, batch_size)
    model.train(was_training)
    return {**hit_rates(patterns @ crystals.T, ks), "n": len(pairs)}


def retrieval_hit_rates(model: CPCP, cache: PeakCache, split: str, ks: Sequence[int] = (1, 3, 5, 10), *,
                        max_atoms: int | None = None, batch_size: int = 64) -> dict[str, Any]:
    """Top-k hit rates of the true structure among all structures of ``split`` (those with at most
    ``max_atoms`` atoms; None: all), each pattern scored against every structure of the split.
    Returns ``{"top1": ..., "top3": ..., "n": structures ranked, "dropped_...": counts}``; with
    ``k >= n`` a hit is certain, so read the rates with ``n``."""
    pairs = split_pairs(cache, split, max_atoms)
    if not len(pairs):
        raise ValueError(f"split {split!r} has no structures with at most {max_atoms} atoms")
    return {**_retrieval(model, pairs, ks, batch_size), **{f"dropped_{k}": v for k, v in pairs.dropped.items()}}


# --- training ------------------------------------------------------------------------------------


@dataclass
class CPCPConfig:
    """What :func:`train_cpcp` trains: the model's keyword arguments (``pxrd``, ``crystal``,
    ``shared_dim``, ``temperature``, ``max_scale``; ``pxrd["grid"]`` defaults to the cache's
    2θ range at the default grid's step), the structures kept (``max_atoms``, None: all), AdamW (``lr``,
    ``weight_decay``) with a cosine decay over ``epochs``, ``batch_size`` pairs per step (a final
    batch of one pair is skipped: InfoNCE needs negatives), and the model-selection criterion
    ``select``: ``"val_loss"`` (lowest validation InfoNCE) or ``"val_top1"`` (highest validation
    top-1 retrieval, ties to the lower loss)."""

    pxrd: dict[str, Any] = field(default_factory=dict)
    crystal: dict[str, Any] = field(default_factory=dict)
    shared_dim: int = 256
    temperature: float = 0.07
    max_scale: float = 100.0
    max_atoms: int | None = None
    epochs: int = 100
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.01
    select: str = "val_loss"
    ks: tuple[int, ...] = (1, 3, 5, 10)
    seed: int = 0

    def __post_init__(self):
        if self.select not in SELECTIONS:
            raise ValueError(f"select must be one of {', '.join(SELECTIONS)}, got {self.select!r}")
        if self.batch_size < 2 or self.epochs < 1:
            raise ValueError(f"need batch_size >= 2 and epochs >= 1, got {self.batch_size}, {self.epochs}")
        self.ks = tuple(int(k) for k in self.ks)

    def model_kwargs(self, cache: PeakCache | None = None) -> dict[str, Any]:
        pxrd = dict(self.pxrd)
        if "grid" not in pxrd and cache is not None:
            low, high = cache.manifest["spec"]["two_theta_range"]
            pxrd["grid"] = {"start": float(low), "stop": float(high)}
        return {"pxrd": pxrd, "crystal": dict(self.crystal), "shared_dim": self.shared_dim,
                "temperature": self.temperature, "max_scale": self.max_scale}


def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[list[int]]:
    order = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    return [b for b in batches if len(b) >= 2]


@torch.no_grad()
def _loss(model: CPCP, pairs: SplitPairs, batch_size: int) -> float:
    """Mean InfoNCE over the split in fixed batches (deterministic, for selection)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for rows in _batches(len(pairs), batch_size, None):
        loss = model(pairs.patterns(rows, model.device), pairs.crystal_batch(rows, model.device, model.dtype))
        total, count = total + float(loss) * len(rows), count + len(rows)
    model.train(was_training)
    return total / count if count else math.nan


def train_cpcp(cache: PeakCache, out_dir: str | Path, config: CPCPConfig | Mapping[str, Any] | None = None,
               device: str | torch.device = "cpu", progress: bool = False, *, score_test: bool = True) -> dict[str, Any]:
    """Train CPCP on ``cache``'s **train** split, select the epoch on the **val** split
    (``config.select``: validation InfoNCE, or validation top-1 retrieval), then, with
    ``score_test``, score the selected weights once on the **test** split (InfoNCE and top-k
    retrieval among all test structures). The test split plays no part in training or selection;
    the generators train CPCP with ``score_test=False`` (the harness scores test retrieval itself).

    Writes ``out_dir/model.safetensors`` and ``config.json`` (the selected model, loadable with
    :func:`load_cpcp`) and ``results.json``: the config, the data (cache path, key, split hash),
    per split what was kept and dropped (too many atoms, disordered), the per-epoch history
    (train loss, val loss, val retrieval, scale), the selected epoch, the val scores and (with
    ``score_test``) the test scores. Returns the results. ``out_dir`` must be new or empty.
    """
    return _train(cache, out_dir, config, device, progress, score_test)[1]


def _train(cache: PeakCache, out_dir: str | Path, config: CPCPConfig | Mapping[str, Any] | None,
           device: str | torch.device, progress: bool, score_test: bool) -> tuple[CPCP, dict[str, Any]]:
    """:func:`train_cpcp`, also returning the selected model (in eval mode)."""
    from tqdm import tqdm
    from xrdcore.storage import atomic_write_json, holds_other_files

    if not isinstance(config, CPCPConfig):
        config = CPCPConfig(**dict(config or {}))
    out = Path(out_dir)
    if holds_other_files(out):
        raise FileExistsError(f"{out}: not empty; choose a new directory for the CPCP run")
    started = time.perf_counter()
    device = torch.device(device)
    torch.manual_seed(config.seed)
    splits = ("train", "val", "test") if score_test else ("train", "val")
    data = {split: split_pairs(cache, split, config.max_atoms) for split in splits}
    for split in ("train", "val"):
        if len(data[split]) < 2:
            raise ValueError(f"{split} split has {len(data[split])} usable pairs (at most {config.max_atoms} atoms, "
                             f"ordered); at least 2 are needed")
    model = CPCP(**config.model_kwargs(cache)).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(_batches(len(data["train"]), config.batch_size, None)))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(config.seed)
    history, best, best_key, best_state = [], None, None, None
    for epoch in tqdm(range(1, config.epochs + 1), desc="CPCP", disable=not progress):
        model.train()
        losses = []
        for rows in _batches(len(data["train"]), config.batch_size, shuffle):
            loss = model(data["train"].patterns(rows, device), data["train"].crystal_batch(rows, device, model.dtype))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            model.clamp_()
            losses.append(loss.item())
        val_loss = _loss(model, data["val"], config.batch_size)
        val = _retrieval(model, data["val"], config.ks, config.batch_size)
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else math.nan,
                        "val_loss": val_loss, "val": val, "scale": model.scale.item()})
        key = (val_loss,) if config.select == "val_loss" else (-val["top1"], val_loss)
        if best_key is None or key < best_key:
            best_key, best = key, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            save_cpcp(model, out, {"epoch": epoch})
    model.load_state_dict(best_state)
    model.eval()
    selected = history[best - 1]
    results = {"kind": "xtalnet-cpcp", "config": {**asdict(config), "ks": list(config.ks)},
               "model": model.config, "data": cache.describe(),
               "pairs": {split: pairs.counts() for split, pairs in data.items()},
               "selected_on": config.select, "selected_epoch": best,
               "val": {"loss": selected["val_loss"], **selected["val"]}}
    if score_test:
        results["test"] = {"loss": _loss(model, data["test"], config.batch_size) if len(data["test"]) >= 2 else None,
                           **(_retrieval(model, data["test"], config.ks, config.batch_size) if len(data["test"])
                              else {"n": 0})}
    results.update(history=history, device=str(device), seconds=round(time.perf_counter() - started, 2))
    atomic_write_json(out / RESULTS_FILE, results)
    return model, results


# --- the CPCP stage of both generators -----------------------------------------------------------

#: the :class:`CPCPConfig` fields a generator's ``cpcp_training`` option may set (the model's come
#: from its ``cpcp`` option, ``max_atoms`` from its own option, the seed from ``fit``)
TRAINING_FIELDS = ("epochs", "batch_size", "lr", "weight_decay", "select", "ks")


def cpcp_config(model: Mapping[str, Any] | None = None, training: Mapping[str, Any] | None = None,
                max_atoms: int | None = None, seed: int = 0) -> CPCPConfig:
    """The :class:`CPCPConfig` of a generator's CPCP stage: ``model`` (CPCP keyword arguments),
    ``training`` (:data:`TRAINING_FIELDS` only), ``max_atoms`` and ``seed``."""
    model, training = dict(model or {}), dict(training or {})
    unknown = sorted(set(model) - {"pxrd", "crystal", "shared_dim", "temperature", "max_scale"})
    if unknown:
        raise ValueError(f"unknown CPCP model option(s) {', '.join(unknown)}; allowed: pxrd, crystal, shared_dim, "
                         f"temperature, max_scale")
    unknown = sorted(set(training) - set(TRAINING_FIELDS))
    if unknown:
        raise ValueError(f"unknown CPCP training option(s) {', '.join(unknown)}; allowed: {', '.join(TRAINING_FIELDS)} "
                         f"(max_atoms is the generator's own option, the seed comes from fit)")
    return CPCPConfig(**model, **training, max_atoms=max_atoms, seed=int(seed))


def fit_cpcp(cache: PeakCache, out_dir: str | Path, config: CPCPConfig, device: str | torch.device = "cpu",
             progress: bool = False) -> tuple[CPCP, dict[str, Any]]:
    """The CPCP stage of ``xtalnet`` and ``pyxtal-random`` (one function, so the same options and
    seed give both the same model): :func:`train_cpcp` without test scores; returns the selected
    model (eval mode) and a compact summary for the generator's ``fit`` facts."""
    model, results = _train(cache, out_dir, config, device, progress, score_test=False)
    summary = {"selected_on": results["selected_on"], "selected_epoch": results["selected_epoch"],
               "epochs": config.epochs, "val": results["val"], "pairs": results["pairs"],
               "seconds": results["seconds"]}
    return model, summary
