"""The simulator and generator checks, on the packaged MP-20 structures."""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xrdcore.interfaces import INPUT_KINDS, Generator, Simulator
from xrdcore.registry import Registry
from xrdcore.testing import data
from xrdcore.testing._core import Checker, CheckReport, Skip, require, resolve, take_rows

#: a packaged Heusler compound, NdInRh2 (Fm-3m, a = 6.7 Å): rock-salt-like face-centred cubic
FCC_ID = "mp-975537"
#: reflections the face-centred lattice forbids (mixed parity), and its strongest
FORBIDDEN = ((1, 0, 0), (1, 1, 0))
STRONGEST = (2, 2, 0)


def check_simulator(simulator: str | Callable[..., Simulator], /, *, registry: Registry | None = None,
                    **options: Any) -> CheckReport:
    """Check a simulator; raise ``AssertionError`` naming it and the check that failed.

    ``simulator``: a registered name (its ``tiny`` options, ``options`` on top) or a factory.
    The checks, on three packaged structures: build (a :class:`Simulator` whose ``output_kind``
    is an input kind); settings (a dict, JSON as it is, the same every time: caches are keyed
    by it); output (of the declared kind: ``(B, L)`` profiles in [0, 1] with maximum 1,
    ``(B, P)`` peak tensors with a boolean mask, or ``(B, V, C, H, W)`` images in [0, 1] of
    ``output_shape``; finite); deterministic; one per structure, in order (a reordered batch
    gives the reordered outputs); depends on the structure; and for a profile simulator with a
    ``grid`` and a ``wavelength`` (Å), Bragg peaks: the strongest peak of face-centred cubic
    NdInRh2 at the angle of its (220) reflection, nothing at the forbidden (100) and (110).
    """
    subject = resolve("simulator", simulator, options, registry)
    checker = Checker(subject.label)
    with checker.check("build"):
        built = subject.create()
        require(built.output_kind in INPUT_KINDS,
                f"output_kind {built.output_kind!r} is not one of {INPUT_KINDS}")
    with checker.check("settings"):
        settings = built.settings
        require(isinstance(settings, dict), f"settings is a {type(settings).__name__}, not a dict")
        require(json.loads(json.dumps(settings)) == settings, "settings change in a JSON round trip")
        require(json.dumps(built.settings, sort_keys=True) == json.dumps(settings, sort_keys=True),
                "settings differ between two reads")
    structures = data.structures()
    rows = [data.ids().index(FCC_ID), 0, 1]
    chosen = [structures[i] for i in rows]
    with checker.check("output"):
        out = built.simulate(chosen)
        _check_output(built, out, len(chosen))
    with checker.check("deterministic"):
        require(_same(built.simulate(chosen), out, exact=True),
                "simulating the same structures twice differs")
    with checker.check("one per structure, in order"):
        require(_same(built.simulate(chosen[::-1]), take_rows(out, [2, 1, 0])),
                "the outputs of the reversed batch are not the reversed outputs")
    with checker.check("depends on the structure"):
        require(not _same(take_rows(out, [0]), take_rows(out, [1])), "two different structures give the same output")
    with checker.check("Bragg peaks"):
        grid, wavelength = getattr(built, "grid", None), getattr(built, "wavelength", None)
        if built.output_kind != "profile" or not hasattr(grid, "values") or not isinstance(wavelength, float):
            raise Skip("only for profile simulators with a grid and a wavelength in Å")
        _check_bragg_peaks(out[0].detach().cpu().numpy(), np.asarray(grid.values), wavelength, chosen[0])
    return checker.report


def check_generator(generator: str | Callable[..., Generator], /, *, registry: Registry | None = None,
                    cache: Any = None, **options: Any) -> CheckReport:
    """Check a generator; raise ``AssertionError`` naming it and the check that failed.

    ``generator``: a registered name (its ``tiny`` options, ``options`` on top) or a factory;
    ``cache``: a peak cache to fit on (default: one of the packaged structures, built in a
    temporary directory; the ``xrd_cache`` fixture is one). The checks: build; fit (returns a
    JSON dict); load (a new instance loading what fit wrote embeds patterns alike); embed
    patterns (``(N, D)``, finite, for the test split's peak lists); embed structures (the same
    ``D``; skipped when it raises NotImplementedError); sample (``n`` structures of the reduced
    composition asked for, invalid ones flagged with a reason); rank (one real number per
    candidate, no NaN).
    """
    subject = resolve("generator", generator, options, registry)
    checker = Checker(subject.label)
    with checker.check("build"):
        built = subject.create()
    with tempfile.TemporaryDirectory() as folder:
        if cache is None:
            cache = data.build_cache(Path(folder) / "cache")
        test = [int(i) for i in cache.indices("test")]
        peaks = [cache.peaks(i) for i in test]
        with checker.check("fit"):
            result = built.fit(cache, Path(folder) / "model", device="cpu", seed=0, progress=False)
            require(isinstance(result, dict), f"fit returned a {type(result).__name__}, not a dict")
            json.dumps(result)
        with checker.check("embed patterns"):
            conditions = built.embed_patterns(peaks)
            shaped = isinstance(conditions, torch.Tensor) and conditions.dim() == 2
            require(shaped and len(conditions) == len(peaks),
                    f"got {_describe(conditions)} for {len(peaks)} peak lists, expected (N, D)")
            require(conditions.dtype.is_floating_point and bool(torch.isfinite(conditions).all()),
                    "conditions are not finite floating-point numbers")
        with checker.check("load"):
            loaded = subject.create()
            loaded.load(Path(folder) / "model", device="cpu")
            require(torch.allclose(loaded.embed_patterns(peaks), conditions, atol=1e-5),
                    "a new instance that loaded what fit wrote embeds the patterns differently")
        with checker.check("embed structures"):
            try:
                embedded = built.embed_structures([cache.structure(i) for i in test])
            except NotImplementedError as exc:
                raise Skip(str(exc)) from None
            require(isinstance(embedded, torch.Tensor) and tuple(embedded.shape) == tuple(conditions.shape),
                    f"got {_describe(embedded)}, expected {tuple(conditions.shape)} like embed_patterns")
            require(bool(torch.isfinite(embedded).all()), "non-finite structure embeddings")
        composition = cache.structure(test[0]).composition
        with checker.check("sample"):
            candidates = built.sample(conditions[0], composition, 2)
            require(isinstance(candidates, list) and len(candidates) == 2,
                    f"asked for 2 candidates, got {candidates!r}")
            for c in candidates:
                require(c.composition.reduced_formula == composition.reduced_formula,
                        f"a candidate of {c.composition.reduced_formula} for {composition.reduced_formula}")
                valid = c.properties.get("valid", True)
                require(isinstance(valid, bool), f"properties['valid'] is {valid!r}, not a bool")
                require(valid or bool(c.properties.get("invalid_reason")),
                        "an invalid candidate without invalid_reason")
        with checker.check("rank"):
            scores = list(built.rank(conditions[0], candidates))
            require(len(scores) == len(candidates), f"{len(scores)} scores for {len(candidates)} candidates")
            require(all(isinstance(s, (int, float)) and not math.isnan(s) for s in scores),
                    f"scores {scores}")
    return checker.report


def _check_output(simulator: Simulator, out: Any, n: int) -> None:
    kind = simulator.output_kind
    if kind == "peaks":
        require(isinstance(out, Mapping) and {"two_theta", "intensity", "mask"} <= set(out),
                f"peaks must be a dict of two_theta, intensity, mask; got {_describe(out)}")
        shapes = {k: tuple(out[k].shape) for k in ("two_theta", "intensity", "mask")}
        require(len(set(shapes.values())) == 1 and len(shapes["mask"]) == 2 and shapes["mask"][0] == n,
                f"expected three (B={n}, P) tensors, got {shapes}")
        require(out["mask"].dtype == torch.bool, f"mask dtype {out['mask'].dtype}, not bool")
        real = torch.cat([out["two_theta"][out["mask"]], out["intensity"][out["mask"]]])
        require(bool(torch.isfinite(real).all()), "non-finite peaks")
        return
    require(isinstance(out, torch.Tensor) and out.dtype.is_floating_point,
            f"expected a float tensor, got {_describe(out)}")
    require(bool(torch.isfinite(out).all()), "non-finite values")
    require(out.min() >= 0 and out.max() <= 1,
            f"values from {float(out.min()):.3g} to {float(out.max()):.3g}, not in [0, 1]")
    if kind == "profile":
        require(out.dim() == 2 and len(out) == n, f"expected (B={n}, L) profiles, got {tuple(out.shape)}")
        require(torch.allclose(out.amax(1), torch.ones(n, dtype=out.dtype)),
                "profiles are not scaled to maximum 1")
    else:
        expected = getattr(simulator, "output_shape", None)
        require(out.dim() == 5 and len(out) == n,
                f"expected (B={n}, V, C, H, W) images, got {tuple(out.shape)}")
        require(expected is None or tuple(out.shape[1:]) == tuple(expected),
                f"images of shape {tuple(out.shape[1:])}, output_shape says {expected}")


def _check_bragg_peaks(profile: np.ndarray, two_theta: np.ndarray, wavelength: float, structure: Any) -> None:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    with warnings.catch_warnings():  # spglib's deprecation notices about its error handling
        warnings.simplefilter("ignore", DeprecationWarning)
        a = SpacegroupAnalyzer(structure).get_conventional_standard_structure().lattice.a

    def position(hkl: tuple[int, int, int]) -> float:
        return 2 * math.degrees(math.asin(wavelength * math.sqrt(sum(h * h for h in hkl)) / (2 * a)))

    angle, top = position(STRONGEST), float(two_theta[profile.argmax()])
    step = float(np.median(np.diff(two_theta)))
    require(abs(top - angle) <= max(0.05, 2 * step),
            f"the strongest peak is at {top:.2f}°; Bragg's law puts {STRONGEST}, the strongest reflection of "
            f"face-centred cubic {structure.composition.reduced_formula}, at {angle:.2f}°")
    for hkl in FORBIDDEN:
        angle = position(hkl)
        if two_theta[0] < angle < two_theta[-1]:
            near = profile[np.abs(two_theta - angle) <= 0.3].max(initial=0)
            require(near < 0.01, f"intensity {near:.3f} at the forbidden {hkl} reflection ({angle:.2f}°)")


def _same(a: Any, b: Any, exact: bool = False) -> bool:
    """Equal outputs; peak lists are compared on their real peaks only (padding may differ)."""
    if isinstance(a, Mapping):
        if len(a["mask"]) != len(b["mask"]):
            return False
        return all(_same(a[k][i][a["mask"][i]], b[k][i][b["mask"][i]], exact)
                   for k in ("two_theta", "intensity") for i in range(len(a["mask"])))
    if a.shape != b.shape:
        return False
    return bool(torch.equal(a, b)) if exact else bool(torch.allclose(a, b, atol=1e-6))


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__
