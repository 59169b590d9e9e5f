"""XtalNet's CCSG generator (``xtalnet``): PXRD-conditioned joint diffusion
(:mod:`xrd_xtalnet.diffusion`), candidates ranked by CPCP similarity; its training and storage.

:meth:`XtalNetGenerator.fit` writes, into the directory the core gives it (``model/`` of a
generator run, see :mod:`xrdcore.generation`)::

    generator.json   what was fitted: kind, seed (the sampling stream starts from it), max_atoms
    cpcp/            the CPCP model (config.json, model.safetensors, results.json: train_cpcp)
    diffusion/       the denoiser (config.json, model.safetensors, results.json: train_generator)

and :meth:`XtalNetGenerator.load` restores both. Weights are safetensors, settings JSON: nothing
is pickled.
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

from xrd_xtalnet.cpcp import CPCP, cpcp_config, fit_cpcp, load_cpcp, similarity
from xrd_xtalnet.crystals import MIN_DISTANCE, composition_numbers, to_structure, volume_per_atom
from xrd_xtalnet.diffusion import CrystalDiffusion
from xrd_xtalnet.model_dir import load_model, save_model
from xrd_xtalnet.pairs import SplitPairs, split_pairs

if TYPE_CHECKING:
    from pymatgen.core import Composition, Structure
    from xrdcore.data.cache import PeakCache

__all__ = [
    "TRAINING_FIELDS",
    "GeneratorConfig",
    "XtalNetGenerator",
    "embed_in_batches",
    "load_diffusion",
    "read_fit_record",
    "save_diffusion",
    "train_generator",
]

RESULTS_FILE = "results.json"
GENERATOR_FILE, CPCP_DIR, DIFFUSION_DIR = "generator.json", "cpcp", "diffusion"
#: the :class:`GeneratorConfig` fields the generator's ``training`` option may set
TRAINING_FIELDS = ("epochs", "batch_size", "lr", "weight_decay", "clip", "val_draws")
DIFFUSION_OPTIONS = ("denoiser", "timesteps", "sigma_begin", "sigma_end", "lattice_weight", "coord_weight")


class XtalNetGenerator(Generator):
    """Pattern embedding + composition → candidate crystals, ranked by CPCP similarity.

    Every argument is a keyword with a default (``xrdcore`` builds it from the registered options):

    * model — ``cpcp``: :class:`~xrd_xtalnet.cpcp.CPCP` keyword arguments (``pxrd``, ``crystal``,
      ``shared_dim``, ...; default the published sizes; ``pxrd["grid"]`` defaults to the
      cache's 2θ range); ``diffusion``: :class:`CrystalDiffusion` keyword arguments (``denoiser``,
      ``timesteps``, ...; the denoiser's ``cond_dim`` comes from CPCP, ``volume_per_atom`` from the
      training structures);
    * training — ``cpcp_training``: the CPCP stage (``epochs``, ``batch_size``, ``lr``,
      ``weight_decay``, ``select``, ``ks``: :class:`~xrd_xtalnet.cpcp.CPCPConfig`); ``training``:
      the diffusion stage (``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``clip``,
      ``val_draws``: :class:`GeneratorConfig`); ``max_atoms``: structures with more atoms are left
      out of both stages (default 20); the seed comes from :meth:`fit`;
    * sampling — ``steps`` (denoising steps, None: all the training time steps), ``step_lr`` (the
      Langevin corrector's step scale), ``corrector``, ``min_distance`` (Å; closer atoms make a
      candidate invalid), ``sample_seed`` (the sampling random stream; None: the fit's seed, 0
      before fitting; it restarts at :meth:`fit` and :meth:`load` and continues over ``sample`` calls);
    * ``device``.

    Before :meth:`fit` or :meth:`load` the models are built untrained from the options when first
    used (for tests and plumbing); :meth:`from_models` wraps models built elsewhere.
    """

    def __init__(self, *, cpcp: Mapping[str, Any] | None = None, diffusion: Mapping[str, Any] | None = None,
                 cpcp_training: Mapping[str, Any] | None = None, training: Mapping[str, Any] | None = None,
                 max_atoms: int | None = 20, steps: int | None = None, step_lr: float = 1e-5, corrector: bool = True,
                 min_distance: float = MIN_DISTANCE, sample_seed: int | None = None, device: str | torch.device = "cpu"):
        if max_atoms is not None and (isinstance(max_atoms, bool) or not isinstance(max_atoms, int) or max_atoms < 1):
            raise ValueError(f"max_atoms must be a positive integer or None, got {max_atoms!r}")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ValueError(f"steps must be a positive integer or None, got {steps!r}")
        self.cpcp_options, self.cpcp_training = dict(cpcp or {}), dict(cpcp_training or {})
        cpcp_config(self.cpcp_options, self.cpcp_training, max_atoms)  # unknown options fail here, not after training
        self.diffusion_options, self.training = dict(diffusion or {}), dict(training or {})
        _check_diffusion_options(self.diffusion_options, self.training)
        self.max_atoms = max_atoms
        self.steps, self.step_lr, self.corrector = steps, float(step_lr), bool(corrector)
        self.min_distance = float(min_distance)
        self.sample_seed = None if sample_seed is None else int(sample_seed)
        self.device = torch.device(device)
        self._cpcp: CPCP | None = None
        self._diffusion: CrystalDiffusion | None = None
        self._parts = False
        self.fit_seed: int | None = None
        self._restart_sampling(0)

    @classmethod
    def from_models(cls, diffusion: CrystalDiffusion, cpcp: CPCP | None = None, **settings: Any) -> XtalNetGenerator:
        """A generator of models built or trained elsewhere (tests, experiments): ``diffusion`` and
        ``cpcp`` (None: no ranking or pattern embedding; conditions are passed as given);
        ``settings`` are the sampling keyword arguments of the constructor."""
        generator = cls(**settings)
        if cpcp is not None and diffusion.cond_dim not in (0, cpcp.shared_dim):
            raise ValueError(f"the denoiser takes {diffusion.cond_dim}-dimensional conditions but the CPCP model "
                             f"embeds patterns in {cpcp.shared_dim} dimensions")
        generator._set_models(diffusion, cpcp)
        generator._parts = True
        return generator

    # --- the models ------------------------------------------------------------------------------

    @property
    def cpcp(self) -> CPCP:
        if self._cpcp is None:
            if self._parts:
                raise RuntimeError("this generator was built from parts without a CPCP model: it cannot embed "
                                   "patterns or rank candidates")
            model = cpcp_config(self.cpcp_options, self.cpcp_training, self.max_atoms).model_kwargs()
            self._cpcp = CPCP(**model).to(self.device).eval()
        return self._cpcp

    @property
    def diffusion(self) -> CrystalDiffusion:
        if self._diffusion is None:
            kwargs = dict(self.diffusion_options)
            kwargs["denoiser"] = {**dict(kwargs.get("denoiser", {})), "cond_dim": self.cpcp.shared_dim}
            self._diffusion = CrystalDiffusion(**kwargs).to(self.device).eval()
        return self._diffusion

    def _set_models(self, diffusion: CrystalDiffusion, cpcp: CPCP | None) -> None:
        self._diffusion = diffusion.to(self.device).eval()
        self._cpcp = cpcp.to(self.device).eval() if cpcp is not None else None

    def _restart_sampling(self, fit_seed: int) -> None:
        self.generator = torch.Generator().manual_seed(self.sample_seed if self.sample_seed is not None else fit_seed)

    # --- fit and load ----------------------------------------------------------------------------

    def fit(self, cache: PeakCache, out: Path, *, device: str = "cpu", seed: int = 0,
            progress: bool = False) -> dict[str, Any]:
        """Train CPCP (``out/cpcp``) and then the denoiser conditioned on it (``out/diffusion``) on
        the cache's train split, each stage selecting its epoch on the val split, with ``seed``;
        the test split is not read. Returns what the training did: per stage the selected epoch,
        its validation scores, the structures kept and dropped per split, and the seconds."""
        from xrdcore.storage import atomic_write_json

        started = time.perf_counter()
        out = Path(out)
        self.device = torch.device(device)
        cpcp, cpcp_facts = fit_cpcp(cache, out / CPCP_DIR, cpcp_config(self.cpcp_options, self.cpcp_training,
                                                                     self.max_atoms, seed), device, progress)
        config = GeneratorConfig(diffusion=self.diffusion_options, max_atoms=self.max_atoms, seed=int(seed),
                                 **self.training)
        diffusion, results = _train(cache, cpcp, str(out / CPCP_DIR), out / DIFFUSION_DIR, config, self.device,
                                    progress)
        atomic_write_json(out / GENERATOR_FILE, {"kind": "xtalnet", "seed": int(seed), "max_atoms": self.max_atoms})
        self._set_models(diffusion, cpcp)
        self._parts, self.fit_seed = False, int(seed)
        self._restart_sampling(int(seed))
        return {"seed": int(seed), "max_atoms": self.max_atoms, "cpcp": cpcp_facts,
                "diffusion": {"selected_on": results["selected_on"], "selected_epoch": results["selected_epoch"],
                              "epochs": config.epochs, "val": results["val"], "pairs": results["pairs"],
                              "volume_per_atom": results["diffusion"]["volume_per_atom"],
                              "seconds": results["seconds"]},
                "seconds": round(time.perf_counter() - started, 2)}

    def load(self, out: Path, *, device: str = "cpu") -> None:
        """Restore what :meth:`fit` wrote to ``out`` (both models, on ``device``, and the sampling
        stream's start); a wrong or damaged directory raises ``CheckpointError``."""
        out = Path(out)
        record = read_fit_record(out, "xtalnet")
        self.device = torch.device(device)
        cpcp = load_cpcp(out / CPCP_DIR, self.device)
        diffusion = load_diffusion(out / DIFFUSION_DIR, self.device)
        if diffusion.cond_dim != cpcp.shared_dim:
            from xrdcore.train.checkpoint import CheckpointError

            raise CheckpointError(f"{out}: the denoiser takes {diffusion.cond_dim}-dimensional conditions but the "
                                  f"CPCP model embeds in {cpcp.shared_dim}")
        self._set_models(diffusion, cpcp)
        self._parts, self.fit_seed = False, int(record["seed"])
        self._restart_sampling(self.fit_seed)

    # --- the Generator interface -----------------------------------------------------------------

    def embed_patterns(self, peaks: Sequence[Any]) -> torch.Tensor:
        """``(N, D)`` CPCP pattern embeddings (unit vectors) of N peak lists: the cache's
        ``PeakList`` or the ``FoundPeaks`` of a measured profile (peaks outside CPCP's 2θ range are
        left out, each list rescaled to its strongest remaining peak)."""
        return embed_in_batches(self.cpcp.embed_peak_lists, list(peaks))

    def embed_structures(self, structures: Sequence[Structure]) -> torch.Tensor:
        """``(N, D)`` CPCP crystal embeddings (unit vectors) of ordered structures."""
        return embed_in_batches(self.cpcp.embed_structures, list(structures))

    def sample(self, condition: torch.Tensor | None, composition: Composition | str, n: int, *,
               steps: int | None = None) -> list[Structure]:
        """``n`` candidate cells with exactly the atoms of ``composition`` (cell content: ``"Na4Cl4"``
        is 8 atoms), conditioned on the pattern embedding ``condition`` ``(D,)`` (None only for an
        unconditioned denoiser). Every candidate is returned; ``structure.properties["valid"]`` and
        ``["invalid_reason"]`` say whether it is a crystal (finite, non-degenerate lattice, no atoms
        closer than ``min_distance``). ``steps`` overrides the generator's step count."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        numbers = composition_numbers(composition)
        diffusion = self.diffusion
        if diffusion.cond_dim and condition is None:
            raise ValueError("this generator is conditioned on a pattern embedding; pass condition")
        if not diffusion.cond_dim:
            condition = None
        crystals = diffusion.sample(numbers, n, condition, steps=self.steps if steps is None else steps,
                                    step_lr=self.step_lr, corrector=self.corrector, generator=self.generator)
        return [to_structure(lattice, frac, atoms, min_distance=self.min_distance)
                for lattice, frac, atoms in crystals.arrays()]

    def rank(self, condition: torch.Tensor, candidates: Sequence[Structure]) -> list[float]:
        """CPCP cosine similarity between ``condition`` and each candidate; ``-inf`` for invalid ones."""
        return similarity(self.cpcp, condition, candidates)


@torch.no_grad()
def embed_in_batches(embed: Any, items: list[Any], batch_size: int = 64) -> torch.Tensor:
    """``embed`` (a CPCP method, run in eval mode) over ``items`` in batches, concatenated."""
    model = embed.__self__
    was_training = model.training
    model.eval()
    try:
        if not items:
            return torch.zeros(0, model.shared_dim, device=model.device)
        return torch.cat([embed(items[i:i + batch_size]) for i in range(0, len(items), batch_size)])
    finally:
        model.train(was_training)


def read_fit_record(out: Path, kind: str) -> dict[str, Any]:
    """``out/generator.json`` of a fitted generator of ``kind``, or ``CheckpointError``."""
    from xrdcore.train.checkpoint import CheckpointError

    try:
        record = json.loads((Path(out) / GENERATOR_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{out}: no readable {GENERATOR_FILE}; not a fitted {kind} generator ({exc})") from None
    if record.get("kind") != kind:
        raise CheckpointError(f"{out}: holds a {record.get('kind')!r} generator, not {kind!r}")
    return record


def _check_diffusion_options(diffusion: Mapping[str, Any], training: Mapping[str, Any]) -> None:
    unknown = sorted(set(diffusion) - set(DIFFUSION_OPTIONS))
    if unknown:
        raise ValueError(f"unknown diffusion option(s) {', '.join(unknown)}; allowed: {', '.join(DIFFUSION_OPTIONS)} "
                         f"(volume_per_atom is set from the training structures)")
    if "cond_dim" in dict(diffusion.get("denoiser") or {}):
        raise ValueError("the denoiser's cond_dim is set from the CPCP model (cpcp shared_dim); leave it out")
    unknown = sorted(set(training) - set(TRAINING_FIELDS))
    if unknown:
        raise ValueError(f"unknown training option(s) {', '.join(unknown)}; allowed: {', '.join(TRAINING_FIELDS)} "
                         f"(max_atoms is the generator's own option, the seed comes from fit)")


# --- storage -------------------------------------------------------------------------------------


def save_diffusion(diffusion: CrystalDiffusion, directory: str | Path, state: Mapping[str, Any] | None = None) -> Path:
    """The diffusion model in ``directory`` (:mod:`xrd_xtalnet.model_dir`)."""
    return save_model(directory, diffusion, "xtalnet-diffusion", diffusion.config, state)


def load_diffusion(directory: str | Path, device: str | torch.device = "cpu") -> CrystalDiffusion:
    """The diffusion model saved in ``directory``, in eval mode; problems raise
    ``xrdcore.train.checkpoint.CheckpointError``."""
    return load_model(directory, "xtalnet-diffusion", CrystalDiffusion, device)


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

    def __post_init__(self):
        for name in ("epochs", "batch_size", "val_draws"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


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
    draws). The test split is not read (the harness scores generation on it with the fitted
    generator: :func:`xrdcore.generation.score_generation`).

    Writes the selected model to ``out_dir`` (:func:`load_diffusion`) with ``results.json``: the
    config, the data, per split what was kept and dropped, the history (train loss and its
    lattice/coordinate parts, val loss) and the selected epoch. Returns the results. ``out_dir``
    must be new or empty. :meth:`XtalNetGenerator.fit` runs both stages.
    """
    device = torch.device(device)
    if isinstance(cpcp_run, CPCP):
        cpcp, source = cpcp_run, "(model object)"
    else:
        cpcp, source = load_cpcp(cpcp_run, device), str(cpcp_run)
    if not isinstance(config, GeneratorConfig):
        config = GeneratorConfig(**dict(config or {}))
    return _train(cache, cpcp, source, out_dir, config, device, progress)[1]


def _train(cache: PeakCache, cpcp: CPCP, source: str, out_dir: str | Path, config: GeneratorConfig,
           device: torch.device, progress: bool) -> tuple[CrystalDiffusion, dict[str, Any]]:
    """:func:`train_generator`, also returning the selected model (in eval mode)."""
    from tqdm import tqdm
    from xrdcore.storage import atomic_write_json, holds_other_files

    out = Path(out_dir)
    if holds_other_files(out):
        raise FileExistsError(f"{out}: not empty; choose a new directory for the generator run")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    cpcp.to(device).eval()
    data = {split: split_pairs(cache, split, config.max_atoms) for split in ("train", "val")}
    for split, pairs in data.items():
        if not len(pairs):
            raise ValueError(f"{split} split has no usable structures (at most {config.max_atoms} atoms, ordered)")
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
    history, best, best_loss, best_state = [], None, math.inf, None
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
        if best is None or val_loss < best_loss:  # a non-finite first epoch is still kept
            best, best_loss = epoch, val_loss
            best_state = {k: v.detach().clone() for k, v in diffusion.state_dict().items()}
            save_diffusion(diffusion, out, {"epoch": epoch})
    diffusion.load_state_dict(best_state)
    diffusion.eval()
    results = {"kind": "xtalnet-diffusion", "config": asdict(config), "diffusion": diffusion.config, "cpcp": source,
               "data": cache.describe(), "pairs": {split: pairs.counts() for split, pairs in data.items()},
               "selected_on": "val_loss", "selected_epoch": best, "val": {"loss": best_loss},
               "history": history, "device": str(device), "seconds": round(time.perf_counter() - started, 2)}
    atomic_write_json(out / RESULTS_FILE, results)
    return diffusion, results
