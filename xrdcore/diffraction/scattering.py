"""Atomic X-ray scattering factors: pymatgen's parameter table, read without torch, so that
validating a structure (which elements can be simulated) costs no torch import in the worker
processes of a data build."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import numpy as np


@cache
def scattering_parameters() -> dict[str, np.ndarray]:
    """Element → (n, 2) array of (aᵢ, bᵢ): pymatgen's table, so that both codes use one physics."""
    path = resources.files("pymatgen.analysis.diffraction") / "atomic_scattering_params.json"
    return {element: np.asarray(coeffs, dtype=float) for element, coeffs in json.loads(path.read_text()).items()}


@cache
def atomic_number(symbol: str) -> int:
    from pymatgen.core.periodic_table import Element

    return Element(symbol).Z


