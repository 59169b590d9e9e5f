"""PyxtalRandomGenerator (``pyxtal-random``): the non-learned bar for pattern-conditioned generation.

Random crystals (pyxtal) with exactly the requested cell content, in the space groups a simple
classifier picks for the pattern, ranked by CPCP similarity. A learned generator that does not beat
it has learned nothing from the pattern beyond what a space-group guess and the composition give.

**The classifier** is retrieval on CPCP embeddings, not a trained classification head: :meth:`fit`
trains CPCP exactly as ``xtalnet``'s first stage (:func:`xrd_xtalnet.cpcp.fit_cpcp`: with the same
options and seed it is the same model) and stores the CPCP crystal embeddings and spglib space
groups of the training structures (the library). For a pattern, the library structures are ordered
by the cosine similarity of their crystal embedding to the pattern embedding, and the first
``top_k`` distinct space groups among those that can hold the composition are used. A fixed
``space_groups`` option replaces the classifier (e.g. the true group, or another classifier's top-k).

**Cells.** The composition is the cell content of the candidates. pyxtal counts atoms in the
conventional cell; for a centred group (A, B, C, I: 2 lattice points per cell, R in hexagonal axes:
3, F: 4) the composition is read first as a primitive cell (the conventional cell holds that many
times the atoms, and the candidate is its primitive cell, as the caches store structures), then, if
its counts fit as they are, as a conventional cell. Each (group, reading) that pyxtal's Wyckoff
check allows is a placement; candidates are drawn round-robin over the placements.

**Failures are candidates.** When no space group can hold the composition, or pyxtal cannot place
it, ``sample`` still returns ``n`` candidates: the missing ones are placeholders with
``properties["valid"] = False`` and an ``invalid_reason`` (they score as misses and rank last),
so one impossible pattern does not end a harness run. ``last_report`` says what happened.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import warnings
from collections.abc import Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from xrdcore.interfaces import Generator

from xrd_xtalnet.crystals import MIN_DISTANCE, composition_numbers, crystal_arrays, to_structure

if TYPE_CHECKING:
    from pymatgen.core import Composition, Structure
    from xrdcore.data.cache import PeakCache

    from xrd_xtalnet.cpcp import CPCP

__all__ = ["PyxtalRandomGenerator", "compatible_space_groups", "placements", "primitive_cell"]

LIBRARY_FILE, LIBRARY_JSON = "library.safetensors", "library.json"
#: lattice points per conventional cell, by the first letter of the Hermann–Mauguin symbol
CENTRING = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "R": 3, "F": 4}
#: rows: the primitive cell's vectors in the conventional cell's fractional coordinates
#: (R: hexagonal axes, obverse setting, as pyxtal builds them)
PRIMITIVE = {"A": [[1, 0, 0], [0, 0.5, 0.5], [0, -0.5, 0.5]],
             "B": [[0.5, 0, 0.5], [0, 1, 0], [-0.5, 0, 0.5]],
             "C": [[0.5, 0.5, 0], [-0.5, 0.5, 0], [0, 0, 1]],
             "I": [[-0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5]],
             "F": [[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]],
             "R": [[2 / 3, 1 / 3, 1 / 3], [-1 / 3, 1 / 3, 1 / 3], [-1 / 3, -2 / 3, 1 / 3]]}


class PlacementTimeout(Exception):
    """pyxtal took longer than ``time_limit`` to place one candidate."""


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    """Interrupt the block after ``seconds`` (a SIGALRM timer; only in the main thread of a POSIX
    process, elsewhere the block runs unlimited): some compositions send pyxtal's search of Wyckoff
    combinations into minutes per call."""
    usable = seconds is not None and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise PlacementTimeout(f"no placement within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@cache
def _group(number: int) -> Any:
    from pyxtal.symmetry import Group

    if not 1 <= number <= 230:
        raise ValueError(f"space groups are 1-230, got {number}")
    return Group(number)


def _letter(number: int) -> str:
    return _group(number).symbol[0]


@lru_cache(maxsize=4096)
def _placements(counts: tuple[int, ...], number: int) -> tuple[int, ...]:
    group, factor = _group(number), CENTRING[_letter(number)]
    fits = []
    for multiple in dict.fromkeys((factor, 1)):  # primitive reading first; 1 twice for P groups
        if group.check_compatible([c * multiple for c in counts])[0]:
            fits.append(multiple)
    return tuple(fits)


def placements(composition: Composition | str, space_group: int) -> list[int]:
    """How pyxtal can place the cell content ``composition`` in ``space_group``: the multiples of
    its counts that the conventional cell's Wyckoff positions can hold, the primitive reading (the
    group's lattice points per cell) before the conventional one (1); empty if neither fits."""
    _, counts = np.unique(composition_numbers(composition), return_counts=True)
    return list(_placements(tuple(int(c) for c in counts), int(space_group)))


def compatible_space_groups(composition: Composition | str, space_groups: Sequence[int]) -> list[int]:
    """The groups, in the given order, with a placement for the cell content (:func:`placements`)."""
    return [int(g) for g in space_groups if placements(composition, int(g))]


def primitive_cell(structure: Structure, space_group: int) -> Structure:
    """The primitive cell of a conventional cell of ``space_group`` as pyxtal builds it (standard
    setting; R in hexagonal axes), by the centring's fixed transformation (not a symmetry search,
    which could find a smaller cell for a structure with extra translations)."""
    from pymatgen.core import Lattice, Structure

    letter = _letter(int(space_group))
    if letter == "P":
        return structure.copy()
    matrix = np.array(PRIMITIVE[letter]) @ structure.lattice.matrix
    reduced = Structure(Lattice(matrix), structure.species, structure.cart_coords, coords_are_cartesian=True,
                        to_unit_cell=True)
    reduced.merge_sites(tol=0.01, mode="delete")
    return reduced


def placeholder(numbers: np.ndarray, reason: str) -> Structure:
    """An invalid candidate of the requested atoms (all at the origin of a cubic cell), recording
    why no real one could be drawn."""
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(3.0), [int(z) for z in numbers], np.zeros((len(numbers), 3)),
                     properties={"valid": False, "invalid_reason": reason})


class PyxtalRandomGenerator(Generator):
    """Random crystals of a composition in the space groups of a retrieval classifier (module
    docstring), ranked by CPCP similarity.

    * ``space_groups``: fixed groups to draw from instead of the classifier (all of them, in order,
      skipping those that cannot hold the composition); None: the classifier's;
    * ``top_k``: how many distinct space groups the classifier gives (5);
    * ``cpcp``, ``cpcp_training``, ``max_atoms``: the CPCP stage, as for ``xtalnet`` (same
      defaults; ``max_atoms`` also limits the library);
    * ``attempts``: pyxtal placements tried per candidate before the next placement is tried;
      ``time_limit``: seconds one pyxtal call may take (2; None: no limit) before that placement
      is given up: for some compositions pyxtal's search of Wyckoff combinations takes minutes;
    * ``min_distance``: Å, closer atoms make a candidate invalid (pyxtal's own check uses covalent
      radii); ``sample_seed``: the random stream (None: the fit's seed, 0 before fitting; it
      restarts at ``fit`` and ``load``); ``device``.
    """

    def __init__(self, *, space_groups: Sequence[int] | None = None, top_k: int = 5,
                 cpcp: dict[str, Any] | None = None, cpcp_training: dict[str, Any] | None = None,
                 max_atoms: int | None = 20, attempts: int = 10, time_limit: float | None = 2.0,
                 min_distance: float = MIN_DISTANCE, sample_seed: int | None = None,
                 device: str | torch.device = "cpu"):
        from xrd_xtalnet.cpcp import cpcp_config

        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        if max_atoms is not None and (isinstance(max_atoms, bool) or not isinstance(max_atoms, int) or max_atoms < 1):
            raise ValueError(f"max_atoms must be a positive integer or None, got {max_atoms!r}")
        if space_groups is not None:
            space_groups = [int(g) for g in space_groups]
            for g in space_groups:
                _group(g)
            if not space_groups:
                raise ValueError("space_groups is empty; give None for the classifier's groups")
        self.space_groups, self.top_k = space_groups, top_k
        self.cpcp_options, self.cpcp_training = dict(cpcp or {}), dict(cpcp_training or {})
        cpcp_config(self.cpcp_options, self.cpcp_training, max_atoms)  # unknown options fail here
        if time_limit is not None and not (isinstance(time_limit, (int, float)) and time_limit > 0):
            raise ValueError(f"time_limit must be positive seconds or None, got {time_limit!r}")
        self.max_atoms, self.attempts, self.min_distance = max_atoms, int(attempts), float(min_distance)
        self.time_limit = None if time_limit is None else float(time_limit)
        self.sample_seed = None if sample_seed is None else int(sample_seed)
        self.device = torch.device(device)
        self._cpcp: CPCP | None = None
        self.library_embeddings: torch.Tensor | None = None  # (N, D) unit vectors
        self.library_space_groups: np.ndarray | None = None  # (N,)
        self.fit_seed: int | None = None
        self.last_report: dict[str, Any] = {}
        self._restart_sampling(0)

    def _restart_sampling(self, fit_seed: int) -> None:
        self.rng = np.random.default_rng(self.sample_seed if self.sample_seed is not None else fit_seed)

    @property
    def cpcp(self) -> CPCP:
        """The CPCP model (untrained, built from the options, before ``fit`` or ``load``)."""
        if self._cpcp is None:
            from xrd_xtalnet.cpcp import CPCP, cpcp_config

            model = cpcp_config(self.cpcp_options, self.cpcp_training, self.max_atoms).model_kwargs()
            self._cpcp = CPCP(**model).to(self.device).eval()
        return self._cpcp

    # --- fit and load ----------------------------------------------------------------------------

    def fit(self, cache: PeakCache, out: Path, *, device: str = "cpu", seed: int = 0,
            progress: bool = False) -> dict[str, Any]:
        """Train CPCP into ``out/cpcp`` (``xtalnet``'s first stage: train split, selected on val),
        then store the library: the CPCP crystal embeddings and space groups of the training
        structures it kept (``out/library.safetensors``, ids in ``out/library.json``). The test
        split is not read."""
        from safetensors.torch import save_file
        from xrdcore.storage import atomic_write_json

        from xrd_xtalnet.cpcp import cpcp_config, fit_cpcp
        from xrd_xtalnet.generator import CPCP_DIR, GENERATOR_FILE, embed_in_batches
        from xrd_xtalnet.pairs import split_pairs

        started = time.perf_counter()
        out = Path(out)
        self.device = torch.device(device)
        model, facts = fit_cpcp(cache, out / CPCP_DIR, cpcp_config(self.cpcp_options, self.cpcp_training,
                                                                   self.max_atoms, seed), device, progress)
        pairs = split_pairs(cache, "train", self.max_atoms)
        structures = [pairs.structure(r) for r in range(len(pairs))]
        embeddings = embed_in_batches(model.embed_structures, structures).float().cpu().contiguous()
        groups = torch.as_tensor(cache.space_groups[pairs.indices], dtype=torch.int64)
        save_file({"embeddings": embeddings, "space_groups": groups}, str(out / LIBRARY_FILE))
        atomic_write_json(out / LIBRARY_JSON, {"split": "train", "max_atoms": self.max_atoms,
                                               "ids": [cache.ids[int(i)] for i in pairs.indices]})
        atomic_write_json(out / GENERATOR_FILE, {"kind": "pyxtal-random", "seed": int(seed),
                                                 "max_atoms": self.max_atoms})
        self.load(out, device=str(self.device))
        return {"seed": int(seed), "max_atoms": self.max_atoms, "cpcp": facts,
                "library": {"structures": len(groups), "space_groups": len(set(groups.tolist()))},
                "seconds": round(time.perf_counter() - started, 2)}

    def load(self, out: Path, *, device: str = "cpu") -> None:
        """Restore the CPCP model and the library that :meth:`fit` wrote."""
        from safetensors.torch import load_file
        from xrdcore.train.checkpoint import CheckpointError

        from xrd_xtalnet.cpcp import load_cpcp
        from xrd_xtalnet.generator import CPCP_DIR, read_fit_record

        out = Path(out)
        record = read_fit_record(out, "pyxtal-random")
        self.device = torch.device(device)
        self._cpcp = load_cpcp(out / CPCP_DIR, self.device)
        try:
            library = load_file(str(out / LIBRARY_FILE))
        except (OSError, ValueError, RuntimeError) as exc:  # safetensors' own error is a subclass of these
            raise CheckpointError(f"{out}: no readable {LIBRARY_FILE} ({exc})") from None
        embeddings, groups = library.get("embeddings"), library.get("space_groups")
        if embeddings is None or groups is None or embeddings.shape != (len(groups), self._cpcp.shared_dim):
            raise CheckpointError(f"{out}: {LIBRARY_FILE} does not hold a library for this CPCP model")
        self.library_embeddings = torch.nn.functional.normalize(embeddings.float(), dim=1)
        self.library_space_groups = groups.numpy().astype(np.int64)
        self.fit_seed = int(record["seed"])
        self._restart_sampling(self.fit_seed)

    # --- the classifier --------------------------------------------------------------------------

    def rank_space_groups(self, condition: torch.Tensor) -> list[tuple[int, float]]:
        """Every space group of the library with the highest cosine similarity of one of its
        structures to the pattern embedding ``condition``, best first."""
        if self.library_embeddings is None:
            raise RuntimeError("pyxtal-random has no library of training structures: fit or load it first, or give "
                               "space_groups")
        condition = torch.nn.functional.normalize(condition.detach().float().cpu().reshape(1, -1), dim=1)[0]
        scores = (self.library_embeddings @ condition).numpy()
        best: dict[int, float] = {}
        for i in np.argsort(-scores, kind="stable"):
            best.setdefault(int(self.library_space_groups[i]), float(scores[i]))
        return list(best.items())

    def space_groups_for(self, condition: torch.Tensor | None, composition: Composition | str) -> list[int]:
        """The groups ``sample`` draws in: the fixed ``space_groups`` that can hold the composition,
        or the classifier's first ``top_k`` distinct groups among those that can."""
        if self.space_groups is not None:
            return compatible_space_groups(composition, self.space_groups)
        if condition is None:
            raise ValueError("pyxtal-random picks space groups from the pattern: pass its condition (or give "
                             "space_groups)")
        chosen = []
        for group, _ in self.rank_space_groups(condition):
            if placements(composition, group):
                chosen.append(group)
                if len(chosen) == self.top_k:
                    break
        return chosen

    # --- the Generator interface -----------------------------------------------------------------

    def embed_patterns(self, peaks: Sequence[Any]) -> torch.Tensor:
        """``(N, D)`` CPCP pattern embeddings of N peak lists (``PeakList`` or ``FoundPeaks``)."""
        from xrd_xtalnet.generator import embed_in_batches

        return embed_in_batches(self.cpcp.embed_peak_lists, list(peaks))

    def embed_structures(self, structures: Sequence[Structure]) -> torch.Tensor:
        """``(N, D)`` CPCP crystal embeddings of ordered structures."""
        from xrd_xtalnet.generator import embed_in_batches

        return embed_in_batches(self.cpcp.embed_structures, list(structures))

    def sample(self, condition: torch.Tensor | None, composition: Composition | str, n: int, *,
               space_groups: Sequence[int] | None = None) -> list[Structure]:
        """``n`` random crystals with the cell content ``composition`` in the groups of
        :meth:`space_groups_for` (or, for this call, ``space_groups``); ``condition`` picks the
        groups, not the positions. Always ``n`` candidates: placeholders with an ``invalid_reason``
        stand in for those that could not be drawn (module docstring). ``last_report``: the groups,
        the placements, the group of every drawn candidate, failed pyxtal attempts."""
        from pymatgen.core import Composition, Element
        from pyxtal import pyxtal

        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        numbers = composition_numbers(composition)
        formula = Composition(composition).formula
        if space_groups is not None:
            groups = compatible_space_groups(composition, [int(g) for g in space_groups])
        else:
            groups = self.space_groups_for(condition, composition)
        elements, counts = np.unique(numbers, return_counts=True)
        species = [Element.from_Z(int(z)).symbol for z in elements]
        slots = [(g, m) for g in groups for m in placements(composition, g)]
        candidates: list[Structure] = []
        drawn, failures, dead = [], 0, set()
        cursor = 0
        while len(candidates) < n and len(dead) < len(slots):
            slot = slots[cursor % len(slots)]
            cursor += 1
            if slot in dead:
                continue
            group, multiple = slot
            for _ in range(self.attempts):
                crystal = pyxtal()
                try:
                    with warnings.catch_warnings(), _time_limit(self.time_limit):
                        warnings.simplefilter("ignore")
                        crystal.from_random(3, group, species, [int(c) * multiple for c in counts],
                                            random_state=int(self.rng.integers(2**31 - 1)))
                    if not crystal.valid:
                        raise ValueError("invalid placement")
                    structure = crystal.to_pymatgen()
                    if multiple > 1:
                        structure = primitive_cell(structure, group)
                    lattice, frac, atoms = crystal_arrays(structure)
                    if sorted(atoms.tolist()) != numbers.tolist():
                        raise ValueError("the primitive cell does not hold the composition")
                except PlacementTimeout:  # pyxtal searched Wyckoff combinations too long: give the slot up
                    failures += 1
                    dead.add(slot)
                    break
                except Exception:  # noqa: BLE001 (pyxtal raises many types for an impossible placement)
                    failures += 1
                    continue
                candidate = to_structure(lattice, frac, atoms, min_distance=self.min_distance)
                candidate.properties.update(space_group=group, cell="primitive" if multiple > 1 else "conventional")
                candidates.append(candidate)
                drawn.append(group)
                break
            else:
                dead.add(slot)
        if len(candidates) < n:
            if not slots and (space_groups is not None or self.space_groups is not None):
                given = space_groups if space_groups is not None else self.space_groups
                reason = f"none of the space groups {list(given)} has Wyckoff positions for {formula}"
            elif not slots:
                reason = (f"none of the {len(set(self.library_space_groups.tolist()))} space groups of the training "
                          f"structures has Wyckoff positions for {formula}")
            else:
                reason = f"pyxtal could not place {formula} in space groups {groups} ({failures} failed attempts)"
            candidates += [placeholder(numbers, reason) for _ in range(n - len(candidates))]
        self.last_report = {"space_groups": groups, "placements": [list(s) for s in slots], "drawn": drawn,
                            "failed_attempts": failures, "gave_up": [list(s) for s in sorted(dead)],
                            "placeholders": n - len(drawn)}
        return candidates

    def rank(self, condition: torch.Tensor, candidates: Sequence[Structure]) -> list[float]:
        """CPCP cosine similarity between ``condition`` and each candidate; ``-inf`` for invalid ones."""
        from xrd_xtalnet.cpcp import similarity

        return similarity(self.cpcp, condition, candidates)
