"""XtalNet's CCSG generator: PXRD-conditioned joint diffusion (:mod:`xrd_xtalnet.diffusion`),
candidates ranked by CPCP similarity; its training, storage and loading.

A generator run directory holds ``config.json`` (the diffusion model's keyword arguments and the
sampling settings), ``model.safetensors`` (weights, no pickle), ``cpcp/`` (a copy of the CPCP
model it is conditioned on, so the run is self-contained) and ``results.json`` (training).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from xrdcore.interfaces import Generator

from xrd_xtalnet.cpcp import CPCP, load_cpcp, save_cpcp, similarity
from xrd_xtalnet.crystals import MIN_DISTANCE, composition_numbers, to_structure, volume_per_atom
from xrd_xtalnet.diffusion import CrystalDiffusion
from xrd_xtalnet.pairs import SplitPairs, split_pairs

if TYPE_CHECKING:
    from pymatgen.core import Composition, Structure
    from xrdcore.data.cache import PeakCache
    from xrdcore.diffraction.pxrd import PeakList

__all__ = ["GeneratorConfig", "XtalNetGenerator", "load_generator", "save_generator", "train_generator"]

MODEL_FILE, CONFIG_FILE, RESULTS_FILE, CPCP_DIR = "model.safetensors", "config.json", "results.json", "cpcp"


class XtalNetGenerator(Generator):
    """Pattern embedding + composition → candidate crystals, ranked by CPCP similarity.

    Build it from a trained run (``run``: a directory written by :func:`train_generator`), or from
    parts: ``diffusion`` (a :class:`CrystalDiffusion` or its keyword arguments) and ``cpcp`` (a
    :class:`CPCP`, a CPCP directory, CPCP keyword arguments, or None: no ranking, and conditions
    are taken as given). Without either, the model is untrained (for tests and ``--tiny`` runs).

    ``steps``: denoising steps when sampling (None: all the training time steps); ``step_lr``:
    the Langevin corrector's step scale; ``corrector``: whether to use it; ``seed``: the sampling
    random stream (successive ``sample`` calls continue it); ``min_distance``: Å, closer atoms make
    a candidate invalid.
    """

    def __init__(self, run: str | Path | None = None, *, diffusion: CrystalDiffusion | Mapping[str, Any] | None = None,
                 cpcp: CPCP | str | Path | Mapping[str, Any] | None = None, steps: int | None = None,
                 step_lr: float = 1e-5, corrector: bool = True, seed: int = 0, min_distance: float = MIN_DISTANCE,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        if run is not None:
            if diffusion is not None or cpcp is not None:
                raise ValueError("give either a run directory or diffusion/cpcp, not both")
            self.diffusion, self.cpcp = load_generator(run, device)
        else:
            if isinstance(cpcp, (str, Path)):
                cpcp = load_cpcp(cpcp, device)
            elif isinstance(cpcp, Mapping):
                cpcp = CPCP(**cpcp)
            if not isinstance(diffusion, CrystalDiffusion):
                kwargs = dict(diffusion or {})
                denoiser = dict(kwargs.get("denoiser", {}))
                if cpcp is not None:
                    denoiser.setdefault("cond_dim", cpcp.shared_dim)
                diffusion = CrystalDiffusion(**{**kwargs, "denoiser": denoiser})
            self.diffusion, self.cpcp = diffusion, cpcp
        if self.cpcp is not None and self.diffusion.cond_dim not in (0, self.cpcp.shared_dim):
            raise ValueError(f"the denoiser takes {self.diffusion.cond_dim}-dimensional conditions but the CPCP "
                             f"model embeds patterns in {self.cpcp.shared_dim} dimensions")
        self.diffusion.to(self.device).eval()
        if self.cpcp is not None:
            self.cpcp.to(self.device).eval()
        self.steps, self.step_lr, self.corrector = steps, float(step_lr), bool(corrector)
        self.min_distance = float(min_distance)
        self.generator = torch.Generator().manual_seed(int(seed))

    @torch.no_grad()
    def embed_pattern(self, peaks: PeakList | Sequence[PeakList]) -> torch.Tensor:
        """The condition of one peak list ``(D,)``, or of several ``(B, D)``: CPCP's pattern embedding."""
        if self.cpcp is None:
            raise RuntimeError("this generator has no CPCP model to embed patterns with")
        many = isinstance(peaks, Sequence)
        embedding = self.cpcp.embed_peak_lists(list(peaks) if many else [peaks])
        return embedding if many else embedding[0]

    def sample(self, condition: torch.Tensor | None, composition: Composition | str, n: int, *,
               steps: int | None = None) -> list[Structure]:
        """``n`` candidate cells with exactly the atoms of ``composition`` (cell content: ``"Na4Cl4"``
        is 8 atoms), conditioned on the pattern embedding ``condition`` ``(D,)`` (None only for an
        unconditioned denoiser). Every candidate is returned; ``structure.properties["valid"]`` and
        ``["invalid_reason"]`` say whether it is a crystal (finite, non-degenerate lattice, no atoms
        closer than ``min_distance``). ``steps`` overrides the generator's step count."""
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        numbers = composition_numbers(composition)
        if self.diffusion.cond_dim and condition is None:
            raise ValueError("this generator is conditioned on a pattern embedding; pass condition")
        if not self.diffusion.cond_dim:
            condition = None
        crystals = self.diffusion.sample(numbers, n, condition, steps=self.steps if steps is None else steps,
                                         step_lr=self.step_lr, corrector=self.corrector, generator=self.generator)
        return [to_structure(lattice, frac, atoms, min_distance=self.min_distance)
                for lattice, frac, atoms in crystals.arrays()]

    def rank(self, condition: torch.Tensor, candidates: Sequence[Structure]) -> list[float]:
        """CPCP cosine similarity between ``condition`` and each candidate; ``-inf`` for invalid ones."""
        if self.cpcp is None:
            raise RuntimeError("this generator has no CPCP model to rank candidates with")
        return similarity(self.cpcp, condition, candidates)


# --- storage -------------------------------------------------------------------------------------


def save_generator(diffusion: CrystalDiffusion, cpcp: CPCP | None, directory: str | Path,
                   state: Mapping[str, Any] | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``cpcp/`` (see the module docstring)."""
    from xrdcore.storage import atomic_write_json
    from xrdcore.train.checkpoint import save_checkpoint

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"kind": "xtalnet-generator", "diffusion": diffusion.config, "cpcp": cpcp is not None}
    atomic_write_json(directory / CONFIG_FILE, config)
    save_checkpoint(directory / MODEL_FILE, diffusion, {**config, **(state or {})})
    if cpcp is not None:
        save_cpcp(cpcp, directory / CPCP_DIR)
    return directory


def load_generator(directory: str | Path, device: str | torch.device = "cpu") -> tuple[CrystalDiffusion, CPCP | None]:
    """The diffusion model and CPCP model of a generator run, in eval mode (for
    ``XtalNetGenerator(run)``); problems raise ``xrdcore.train.checkpoint.CheckpointError``."""
    from xrdcore.train.checkpoint import CheckpointError, load_checkpoint

    directory = Path(directory)
    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{directory}: no readable {CONFIG_FILE} ({exc})") from None
    if config.get("kind") != "xtalnet-generator":
        raise CheckpointError(f"{directory}: not an XtalNet generator run (kind {config.get('kind')!r})")
    diffusion = CrystalDiffusion(**config["diffusion"])
    load_checkpoint(directory / MODEL_FILE, diffusion)
    cpcp = load_cpcp(directory / CPCP_DIR, device) if config.get("cpcp") else None
    return diffusion.to(device).eval(), cpcp


# --- training ------------------------------------------------------------------------------------


@dataclass
class GeneratorConfig:
    """What :func:`train_generator` trains: ``diffusion`` keyword arguments of
    :class:`CrystalDiffusion` (``denoiser``, ``timesteps``, ``sigma_begin``, ``sigma_end``, loss
    weights; ``volume_per_atom`` is set from the training structures, ``denoiser["cond_dim"]`` from
    the CPCP model), the structures kept (``max_atoms``, None: all), AdamW (``lr``,
    ``weight_decay``) with cosine decay over ``epochs`` of ``batch_size`` crystals, gradient-norm
    clipping at ``clip``, and ``val_draws`` noise draws per validation structure (fixed across
    epochs, so the validation loss compares epochs)."""

    diffusion: dict[str, Any] = field(default_factory=dict)
    max_atoms: int | None = None
    epochs: int = 500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip: float = 1.0
    val_draws: int = 4
    seed: int = 0


def _conditions(cpcp: CPCP, pairs: SplitPairs, device: torch.device, batch_size: int = 64) -> torch.Tensor:
    """Frozen CPCP pattern embeddings of every row of a split."""
    with torch.no_grad():
        return torch.cat([cpcp.embed_patterns(pairs.patterns(range(s, min(s + batch_size, len(pairs))), device))
                          for s in range(0, len(pairs), batch_size)])


def _val_loss(diffusion: CrystalDiffusion, pairs: SplitPairs, conditions: torch.Tensor, config: GeneratorConfig,
              device: torch.device) -> float:
    generator = torch.Generator().manual_seed(config.seed + 1)
    total, count = 0.0, 0
    was_training = diffusion.training
    diffusion.eval()
    with torch.no_grad():
        for _ in range(config.val_draws):
            for start in range(0, len(pairs), config.batch_size):
                rows = list(range(start, min(start + config.batch_size, len(pairs))))
                loss, _ = diffusion.loss(pairs.crystal_batch(rows, device), conditions[rows], generator)
                total, count = total + float(loss) * len(rows), count + len(rows)
    diffusion.train(was_training)
    return total / count


def train_generator(cache: PeakCache, cpcp_run: str | Path | CPCP, out_dir: str | Path,
                    config: GeneratorConfig | Mapping[str, Any] | None = None, device: str | torch.device = "cpu",
                    progress: bool = False) -> dict[str, Any]:
    """Train the denoiser on ``cache``'s **train** split, each structure conditioned on the frozen
    CPCP embedding of its own simulated pattern (``cpcp_run``: a CPCP directory or model, not
    updated), and select the epoch with the lowest diffusion loss on the **val** split (fixed noise
    draws). Nothing is scored on the test split here: run :func:`xrd_xtalnet.evaluation.evaluate_generation`
    on it once with the selected generator.

    Writes a generator run to ``out_dir`` (module docstring; load with ``XtalNetGenerator(out_dir)``)
    with ``results.json``: the config, the data, per split what was kept and dropped, the history
    (train loss and its lattice/coordinate parts, val loss) and the selected epoch. Returns the
    results. ``out_dir`` must be new or empty.
    """
    from xrdcore.storage import atomic_write_json, holds_other_files

    if not isinstance(config, GeneratorConfig):
        config = GeneratorConfig(**dict(config or {}))
    out = Path(out_dir)
    if holds_other_files(out):
        raise FileExistsError(f"{out}: not empty; choose a new directory for the generator run")
    started = time.perf_counter()
    device = torch.device(device)
    torch.manual_seed(config.seed)
    cpcp = cpcp_run if isinstance(cpcp_run, CPCP) else load_cpcp(cpcp_run, device)
    cpcp.to(device).eval()
    data = {split: split_pairs(cache, split, config.max_atoms) for split in ("train", "val")}
    for split, pairs in data.items():
        if not len(pairs):
            raise ValueError(f"{split} split has no usable structures")
    conditions = {split: _conditions(cpcp, pairs, device) for split, pairs in data.items()}
    kwargs = dict(config.diffusion)
    kwargs["denoiser"] = {**dict(kwargs.get("denoiser", {})), "cond_dim": cpcp.shared_dim}
    kwargs["volume_per_atom"] = volume_per_atom(data["train"].crystals)
    diffusion = CrystalDiffusion(**kwargs).to(device)
    optimiser = torch.optim.AdamW(diffusion.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = math.ceil(len(data["train"]) / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs * per_epoch)
    shuffle = torch.Generator().manual_seed(config.seed)
    noise = torch.Generator().manual_seed(config.seed + 2)
    history, best, best_loss = [], None, math.inf
    from tqdm import tqdm

    for epoch in tqdm(range(1, config.epochs + 1), desc="CCSG", disable=not progress):
        diffusion.train()
        parts = []
        order = torch.randperm(len(data["train"]), generator=shuffle).tolist()
        for start in range(0, len(order), config.batch_size):
            rows = order[start:start + config.batch_size]
            loss, part = diffusion.loss(data["train"].crystal_batch(rows, device), conditions["train"][rows], noise)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(diffusion.parameters(), config.clip)
            optimiser.step()
            schedule.step()
            parts.append([loss.item(), part["lattice"], part["coord"]])
        val_loss = _val_loss(diffusion, data["val"], conditions["val"], config, device)
        mean = np.mean(parts, axis=0)
        history.append({"epoch": epoch, "train_loss": float(mean[0]), "train_lattice": float(mean[1]),
                        "train_coord": float(mean[2]), "val_loss": val_loss})
        if val_loss < best_loss:
            best, best_loss = epoch, val_loss
            save_generator(diffusion, cpcp, out, {"epoch": epoch})
    results = {"kind": "xtalnet-generator", "config": asdict(config), "diffusion": diffusion.config,
               "cpcp": str(cpcp_run) if not isinstance(cpcp_run, CPCP) else "(model object)",
               "data": cache.describe(), "pairs": {split: pairs.counts() for split, pairs in data.items()},
               "selected_on": "val_loss", "selected_epoch": best, "val": {"loss": best_loss},
               "history": history, "device": str(device), "seconds": round(time.perf_counter() - started, 2)}
    atomic_write_json(out / RESULTS_FILE, results)
    return results
