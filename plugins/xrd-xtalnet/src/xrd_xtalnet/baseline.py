"""PyxtalRandomGenerator: the non-learned bar for pattern-conditioned generation.

Random crystals (pyxtal) with exactly the requested cell content, in the given space groups
(e.g. a classifier's top-k for the pattern), drawn round-robin over the groups whose Wyckoff
multiplicities can hold the composition (pyxtal's ``check_compatible``); groups that cannot are
skipped and listed in ``last_report``. Candidates are ranked by the same CPCP similarity as
XtalNet's. A learned generator that does not beat this has learned nothing from the pattern
beyond what the space group and composition give.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from xrdcore.interfaces import Generator

from xrd_xtalnet.crystals import MIN_DISTANCE, composition_numbers, crystal_arrays, to_structure

if TYPE_CHECKING:
    from pymatgen.core import Composition, Structure

    from xrd_xtalnet.cpcp import CPCP

__all__ = ["PyxtalRandomGenerator", "compatible_space_groups"]


def compatible_space_groups(composition: Composition | str, space_groups: Sequence[int]) -> list[int]:
    """The groups, in the given order, whose Wyckoff positions can hold the cell content."""
    from pyxtal.symmetry import Group

    numbers = composition_numbers(composition)
    _, counts = np.unique(numbers, return_counts=True)
    fits = []
    for number in space_groups:
        if not 1 <= int(number) <= 230:
            raise ValueError(f"space groups are 1-230, got {number}")
        if Group(int(number)).check_compatible([int(c) for c in counts])[0]:
            fits.append(int(number))
    return fits


class PyxtalRandomGenerator(Generator):
    """Random crystals of a composition in given space groups, ranked by CPCP similarity.

    ``space_groups``: the groups to draw from (default: all 230; pass a classifier's top-k, or
    per call to ``sample``); ``cpcp``: a CPCP model or directory to rank with (None: ``rank``
    raises); ``seed``: the random stream (successive calls continue it); ``attempts``: pyxtal
    placements tried per candidate before the next compatible group is tried; ``min_distance``:
    Å, closer atoms make a candidate invalid (pyxtal's own check uses covalent radii).
    """

    def __init__(self, *, space_groups: Sequence[int] | None = None, cpcp: CPCP | str | Path | None = None,
                 seed: int = 0, attempts: int = 10, min_distance: float = MIN_DISTANCE,
                 device: str | torch.device = "cpu"):
        if isinstance(cpcp, (str, Path)):
            from xrd_xtalnet.cpcp import load_cpcp

            cpcp = load_cpcp(cpcp, device)
        self.space_groups = list(range(1, 231)) if space_groups is None else [int(g) for g in space_groups]
        self.cpcp, self.attempts, self.min_distance = cpcp, int(attempts), float(min_distance)
        self.rng = np.random.default_rng(int(seed))
        self.last_report: dict[str, Any] = {}

    def sample(self, condition: torch.Tensor | None, composition: Composition | str, n: int, *,
               space_groups: Sequence[int] | None = None) -> list[Structure]:
        """``n`` random crystals with the cell content ``composition``; ``condition`` is not used to
        draw them (only to rank). Raises ValueError if no given group can hold the composition or
        pyxtal cannot place it in any of them; ``last_report`` lists skipped groups, failed
        placements and the group of every candidate."""
        from pymatgen.core import Composition
        from pyxtal import pyxtal

        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        requested = self.space_groups if space_groups is None else [int(g) for g in space_groups]
        groups = compatible_space_groups(composition, requested)
        skipped = [g for g in requested if g not in groups]
        if not groups:
            raise ValueError(f"none of the space groups {requested} has Wyckoff positions that fit "
                             f"{Composition(composition).formula}")
        numbers = composition_numbers(composition)
        elements, counts = np.unique(numbers, return_counts=True)
        from pymatgen.core import Element

        species = [Element.from_Z(int(z)).symbol for z in elements]
        candidates, used, failures = [], [], 0
        cursor = 0
        dead: set[int] = set()
        while len(candidates) < n:
            if len(dead) == len(groups):
                raise ValueError(f"pyxtal could not place {Composition(composition).formula} in any of "
                                 f"{groups} ({failures} failed attempts)")
            group = groups[cursor % len(groups)]
            cursor += 1
            if group in dead:
                continue
            for _ in range(self.attempts):
                crystal = pyxtal()
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        crystal.from_random(3, group, species, [int(c) for c in counts],
                                            random_state=int(self.rng.integers(2**31 - 1)))
                    if not crystal.valid:
                        raise ValueError("invalid placement")
                    structure = crystal.to_pymatgen()
                except Exception:  # noqa: BLE001 (pyxtal raises many types for an impossible placement)
                    failures += 1
                    continue
                lattice, frac, atoms = crystal_arrays(structure)
                candidates.append(to_structure(lattice, frac, atoms, min_distance=self.min_distance))
                used.append(group)
                break
            else:
                dead.add(group)
        self.last_report = {"space_groups": used, "skipped_incompatible": skipped, "failed_attempts": failures,
                            "gave_up": sorted(dead)}
        return candidates

    def rank(self, condition: torch.Tensor, candidates: Sequence[Structure]) -> list[float]:
        """CPCP cosine similarity between ``condition`` and each candidate; ``-inf`` for invalid ones."""
        if self.cpcp is None:
            raise RuntimeError("PyxtalRandomGenerator was built without a CPCP model; it cannot rank")
        from xrd_xtalnet.cpcp import similarity

        return similarity(self.cpcp, condition, candidates)

    @torch.no_grad()
    def embed_pattern(self, peaks):
        """The CPCP embedding of one peak list ``(D,)`` (the condition used for ranking)."""
        if self.cpcp is None:
            raise RuntimeError("PyxtalRandomGenerator was built without a CPCP model")
        return self.cpcp.embed_peak_lists([peaks])[0]
