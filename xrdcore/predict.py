"""``xrdcore predict``: the space group of a measured powder pattern from a trained run, what every
head of the run's label hierarchy says on its own, where those heads disagree with the top space
group, and the nearest training structure of that group to compare the pattern with.

The pattern is preprocessed like the run's training inputs: put on the run's 2θ grid (degrees) and
divided by its maximum; grid points the measurement does not reach are 0 (``outside="zero"``) and
the output says how much of the grid was measured. Training profiles were rendered from simulated
peak lists with the run's peak shape; a measured pattern also has background (subtracted by SNIP
unless ``background="none"``), noise, preferred orientation and its instrument's peak shapes, which
are not removed. The probabilities are the model's answer for this input, not calibrated
confidences about the sample. Levels the model has no head for (a flat model's crystal system) are
answered by summing the space-group probabilities.
"""

from __future__ import annotations

import csv
import functools
import glob
import io
import json
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xrdcore.crystal import space_group
from xrdcore.crystal.levels import level
from xrdcore.data.cache import CacheError, PeakCache
from xrdcore.diffraction.background import BACKGROUNDS, subtract_background
from xrdcore.diffraction.peaks import find_peaks
from xrdcore.diffraction.plot import save_figure
from xrdcore.diffraction.profile import PeakBatch
from xrdcore.diffraction.radiation import wavelength as parse_wavelength
from xrdcore.diffraction.readers import MeasuredPattern, PatternError, at_wavelength, read_pattern, resample
from xrdcore.train.checkpoint import CheckpointError
from xrdcore.train.inputs import InputSpec, scale_intensity
from xrdcore.train.model import class_logits
from xrdcore.train.trainer import RunError, load_run

#: below this fraction of the model's 2θ grid measured, the prediction carries a warning
MIN_COVERAGE = 0.5
#: a measured maximum this close (degrees 2θ, about two lab peak widths) to where the measurement
#: stops short of the grid may be the flank of a stronger peak that was not measured
EDGE_WINDOW = 0.2
#: training profiles rendered at a time when searching the nearest reference
RENDER_BATCH = 256
#: levels every answer reports, from the model's head where it has one, else summed over the
#: space-group probabilities
SUPERCLASS_LEVELS = ("crystal_system", "lattice_system", "centring", "bravais", "point_group", "laue_class")
#: how a class of each level reads after "has": "has crystal system monoclinic"
_NOUNS = {"crystal_system": "crystal system", "lattice_system": "lattice system", "centring": "centring",
          "bravais": "Bravais lattice", "point_group": "point group", "laue_class": "Laue class",
          "arithmetic_class": "arithmetic class", "extinction_class": "the absences of",
          "extinction_class_any_setting": "the absences (in any setting) of"}


@dataclass(frozen=True)
class SpaceGroupScore:
    number: int
    symbol: str
    probability: float


@dataclass(frozen=True)
class LevelPrediction:
    """One head: its own most probable class, and the class the top-1 space group has on this level
    with the probability this head gives that class."""

    level: str
    predicted: str
    probability: float
    of_top_space_group: str
    top_space_group_probability: float
    #: the model has a head for this level; else its probabilities are summed over the space groups
    head: bool = True

    @property
    def agrees(self) -> bool:
        return self.predicted == self.of_top_space_group


@dataclass(frozen=True)
class Coverage:
    """How much of the model's 2θ grid the measurement covers (degrees); the rest is 0."""

    fraction: float
    measured: tuple[float, float]  # first and last measured 2θ
    grid: tuple[float, float]  # first and last grid point


@dataclass(frozen=True)
class Reference:
    """The training structure of a space group whose rendered profile is most similar (cosine, on the
    measured part of the grid) to the measured profile."""

    index: int  # position in the training cache
    id: str
    formula: str
    space_group: int
    similarity: float
    candidates: int  # training structures of the group compared
    profile: np.ndarray = field(repr=False)  # rendered on the model's grid, maximum 1


@dataclass
class Prediction:
    """What :func:`predict` found; ``reference`` and ``reference_note`` (why there is none) are set by
    :func:`plot_prediction`, and stay None until a reference is searched."""

    run_dir: Path
    pattern: Path
    encoder: str
    hierarchy: str
    space_groups: list[SpaceGroupScore]
    levels: list[LevelPrediction]
    disagreements: list[str]
    coverage: Coverage
    warnings: list[str]
    input: InputSpec
    two_theta: np.ndarray = field(repr=False)  # the model's grid, degrees
    profile: np.ndarray = field(repr=False)  # the measured pattern as the model saw it, maximum 1
    data_path: Path | None  # the run's training cache, as config.json records it
    data_key: str | None
    #: how the pattern's wavelength was handled, printed with every result
    wavelength_note: str = ""
    #: what was done about the pattern's background
    background_note: str = ""
    #: the other space groups of the top one's extinction class (in any setting: an unindexed powder
    #: pattern's axes are unknown), most probable first: same lattice system and systematic absences,
    #: so the reflections present cannot tell them apart, only their intensities may
    alternatives: list[SpaceGroupScore] = field(default_factory=list)
    #: the packaged model's name, where the run is one (``--model``)
    model: str | None = None
    reference: Reference | None = None
    reference_note: str | None = None
    #: what the reader did to the file's values (a descending scan reordered, repeated angles averaged)
    reading_notes: tuple[str, ...] = ()


def predict(run_dir: str | Path, pattern_path: str | Path, top: int = 5, outside: str = "zero",
            device: str = "cpu", wavelength: str | float | None = None, background: str = "auto",
            model_name: str | None = None) -> Prediction:
    """Predict the space group of the pattern in ``pattern_path`` (2θ in degrees, intensity) with the
    best checkpoint of ``run_dir``: the ``top`` most probable space groups, every level's answer, and
    the space groups the pattern's absences cannot tell from the top one.

    ``outside="error"`` refuses a pattern that does not cover the whole grid (PatternError).
    ``wavelength`` (a line name or Å) is the pattern's, where the file does not state it (a pdCIF
    does); a pattern at another wavelength than the run's data is moved to it (:func:`at_wavelength`),
    and refused if it then covers less than half the model's grid. ``background="auto"`` subtracts
    a SNIP background (:mod:`xrdcore.diffraction.background`), ``"none"`` leaves it. Runs on
    ``peaks`` inputs get the peaks :func:`find_peaks` finds in the pattern within the run's 2θ range
    (heights relative to the strongest; training used integrated intensities). ``model_name`` is
    the name of a packaged model, for the printout.
    """
    result = next(predict_many(run_dir, [pattern_path], top=top, outside=outside, device=device,
                               wavelength=wavelength, background=background, model_name=model_name))
    if isinstance(result, Exception):
        raise result
    return result


#: patterns put through the model at once by :func:`predict_many`
BATCH = 64


def predict_many(run_dir: str | Path, pattern_paths: Sequence[str | Path], top: int = 5,
                 outside: str = "zero", device: str = "cpu", wavelength: str | float | None = None,
                 background: str = "auto", model_name: str | None = None) -> Iterator[Prediction | Exception]:
    """:func:`predict` for many files, the model run on batches of them: yields for each file, in
    order, its Prediction, or the PatternError/OSError/ValueError that stopped it (the others go on)."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    if outside not in ("zero", "error"):
        raise ValueError(f"outside must be 'zero' or 'error', got {outside!r}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
    if wavelength is not None:  # once for the batch (in Å from here on), not once per file
        wavelength = parse_wavelength(wavelength)
    run_dir = Path(run_dir)
    model, config, record = _load_once(run_dir, device)
    for start in range(0, len(pattern_paths), BATCH):
        prepared: list[_Prepared | Exception] = []
        for path in pattern_paths[start:start + BATCH]:
            try:
                prepared.append(_prepare(path, config, record, run_dir, outside, wavelength, background))
            except (ValueError, OSError) as exc:  # PatternError is a ValueError
                prepared.append(exc)
        good = [p for p in prepared if isinstance(p, _Prepared)]
        probabilities = iter(_probabilities(model, config, good))
        for item in prepared:
            yield item if isinstance(item, Exception) else _answer(item, next(probabilities), model, config,
                                                                   record, run_dir, top, model_name)


@dataclass
class _Prepared:
    """One pattern read, at the run's wavelength, background handled, on the model's grid."""

    pattern: MeasuredPattern
    profile: np.ndarray  # on the grid, maximum 1
    coverage: Coverage
    wavelength_note: str
    background_note: str


def _prepare(path, config, record, run_dir, outside, wavelength, background) -> _Prepared:
    read = read_pattern(path)
    pattern, wavelength_note, moved = _at_run_wavelength(read, wavelength, record, run_dir)
    pattern, background_note = subtract_background(pattern, background)
    grid = config.input.grid
    profile = resample(pattern, grid, outside=outside)
    measured = (float(pattern.two_theta[0]), float(pattern.two_theta[-1]))
    coverage = Coverage(float(_covered(grid.values, measured, grid.step).mean()), measured,
                        (float(grid.values[0]), float(grid.values[-1])))
    if moved and coverage.fraction < MIN_COVERAGE:
        raise PatternError(f"{read.source}: moved to the run's {pattern.wavelength:g} Å the pattern covers "
                           f"{measured[0]:.2f}-{measured[1]:.2f}° 2θ, {coverage.fraction:.0%} of the model's "
                           f"grid {grid.start:g}-{grid.stop:g}°: too little to answer (measure a wider range)")
    return _Prepared(pattern, profile, coverage, wavelength_note, background_note)


def _probabilities(model, config, prepared: list[_Prepared]) -> list[dict[str, np.ndarray]]:
    """Every head's softmax for each prepared pattern; profiles go through the model together."""
    if not prepared:
        return []
    device = next(model.parameters()).device
    if config.input.kind == "peaks":  # peak lists differ in length: one at a time
        return [_probabilities_of(model, _peak_inputs(p, config, device))[0] for p in prepared]
    profiles = torch.from_numpy(np.stack([p.profile for p in prepared])).to(device)
    return _probabilities_of(model, scale_intensity(profiles, config.input.intensity))


def _probabilities_of(model, inputs) -> list[dict[str, np.ndarray]]:
    with torch.no_grad():
        _, logits = model(inputs)
    scores = {name: torch.softmax(class_logits(v).float(), dim=1).cpu().numpy() for name, v in logits.items()}
    return [{name: v[i] for name, v in scores.items()} for i in range(len(next(iter(scores.values()))))]


def _peak_inputs(p: _Prepared, config, device) -> dict[str, torch.Tensor]:
    """The peaks of the measured pattern inside the run's range, as the run's peak inputs."""
    grid = config.input.grid
    inside = (p.pattern.two_theta >= grid.start) & (p.pattern.two_theta <= grid.stop)
    found = find_peaks(p.pattern.two_theta[inside], p.pattern.intensity[inside])
    intensity = torch.tensor(found.intensity / 100.0, dtype=torch.float32, device=device)[None]
    return {"two_theta": torch.tensor(found.two_theta, dtype=torch.float32, device=device)[None],
            "intensity": scale_intensity(intensity, config.input.intensity),
            "mask": torch.ones(1, len(found), dtype=torch.bool, device=device)}


def _answer(p: _Prepared, probabilities: dict[str, np.ndarray], model, config, record, run_dir: Path,
            top: int, model_name: str | None) -> Prediction:
    sg_level = model.hierarchy["space_group"]
    sg_probability = probabilities["space_group"]
    table = sg_level.table  # a class's probability shared among its space groups
    by_number = sg_probability[table] / np.bincount(table, minlength=len(sg_level))[table]
    scores = [SpaceGroupScore(int(n) + 1, space_group(int(n) + 1).symbol, float(by_number[n]))
              for n in np.argsort(-by_number, kind="stable")[:top]]
    best = scores[0]

    levels, disagreements = [], []
    heads = {lv.name: lv for lv in model.hierarchy.levels}
    for name in dict.fromkeys([*heads, *SUPERCLASS_LEVELS]):
        lv = heads.get(name) or level(name)
        probability = probabilities[name] if name in heads else np.bincount(
            lv.table, weights=by_number, minlength=len(lv))  # summed over the space-group head
        own, of_best = int(np.argmax(probability)), int(lv.index(best.number))
        row = LevelPrediction(name, lv.classes[own], float(probability[own]), lv.classes[of_best],
                              float(probability[of_best]), name in heads)
        levels.append(row)
        if not row.agrees:
            members = np.array(lv.members(own))
            alternative = int(members[np.argmax(by_number[members - 1])])
            noun = _NOUNS.get(name, name.replace("_", " "))
            disagreements.append(
                f"{name} {'head' if row.head else '(summed over space groups)'} says {_class(row.predicted)} "
                f"({row.probability:.2f}), but the top space group {best.symbol} (No. {best.number}) has {noun} "
                f"{_class(row.of_top_space_group)} ({row.top_space_group_probability:.2f}); the most probable "
                f"space group with {noun} {_class(row.predicted)} is {space_group(alternative).symbol} "
                f"(No. {alternative}, {by_number[alternative - 1]:.2f})")
    absences = level("extinction_class_any_setting")
    alternatives = sorted((SpaceGroupScore(n, space_group(n).symbol, float(by_number[n - 1]))
                           for n in absences.members(int(absences.index(best.number))) if n != best.number),
                          key=lambda s: -s.probability)

    warnings = _coverage_warnings(p.coverage, config.input.grid.values, p.profile, config.input.grid.step)
    if not (run_dir / "metrics.json").is_file():
        warnings.append("the run has not finished (no metrics.json): these are the weights of its best "
                        "epoch so far")
    data, encoder = record.get("data", {}), record["encoder"]["qualified_name"]
    return Prediction(run_dir, p.pattern.source, encoder, record["hierarchy"]["name"], scores, levels,
                      disagreements, p.coverage, warnings, config.input, config.input.grid.values, p.profile,
                      Path(data["path"]) if data.get("path") else None, data.get("key"), p.wavelength_note,
                      p.background_note, alternatives, model_name, reading_notes=p.pattern.notes)


def _at_run_wavelength(pattern: MeasuredPattern, stated: str | float | None, record: dict,
                       run_dir: Path) -> tuple[MeasuredPattern, str, bool]:
    """The pattern at the wavelength of the run's data, a line saying what was done, and whether it
    was moved from another wavelength."""
    given = None if stated is None else parse_wavelength(stated)
    if given is not None and pattern.wavelength is not None and abs(given - pattern.wavelength) > 1e-4:
        raise PatternError(f"{pattern.source}: the file states {pattern.wavelength:g} Å, the command says {given:g} Å")
    own = pattern.wavelength if pattern.wavelength is not None else given
    run = record.get("wavelength")
    if own is None:
        where = f"{run:g} Å" if run is not None else "its wavelength (not recorded by this run)"
        return pattern, f"not stated; taken to be the run's data's {where} (--wavelength to say otherwise)", False
    source = "from the file" if pattern.wavelength is not None else "as given"
    if run is None:
        raise PatternError(f"{pattern.source}: the pattern is at {own:g} Å but {run_dir} does not record the "
                           "wavelength of its data (a run from before wavelengths were recorded); retrain it")
    if abs(own - run) <= 1e-4:
        return replace(pattern, wavelength=own), f"{own:g} Å ({source}), the run's data's", False
    return (at_wavelength(replace(pattern, wavelength=own), run),
            f"{own:g} Å ({source}), moved to the run's data's {run:g} Å (same d-spacings)", True)


def _load_once(run_dir: Path, device: str):
    """:func:`_load`, kept for the next pattern of a batch while the best checkpoint is unchanged."""
    best = run_dir / "checkpoints" / "best.safetensors"
    stamp = best.stat().st_mtime_ns if best.is_file() else None
    return _loaded(str(run_dir.resolve()), device, stamp)


@functools.lru_cache(maxsize=2)
def _loaded(run_dir: str, device: str, stamp: int | None):
    return _load(Path(run_dir), device)


def _load(run_dir: Path, device: str):
    """load_run, after refusing runs on peak lists and naming an unfinished run as such."""
    try:
        kind = json.loads((run_dir / "config.json").read_text())["config"].get("input", {}).get("kind")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        kind = None  # load_run says what is wrong with the directory
    if kind == "images":
        raise RunError(f"{run_dir}: the run's encoder takes simulated diffraction images ('images' inputs), "
                       "not a measured powder profile: only runs on 'profile' inputs can predict")
    try:
        return load_run(run_dir, "best", device)
    except CheckpointError:
        if (run_dir / "checkpoints" / "best.safetensors").exists():
            raise
        raise RunError(f"{run_dir}: unfinished run, no checkpoints/best.safetensors yet (written after the "
                       "first epoch); train or resume it first") from None


def _covered(two_theta: np.ndarray, measured: tuple[float, float], step: float) -> np.ndarray:
    """Grid points within half a step of the measured range: those ``resample`` does not set to 0."""
    return (two_theta >= measured[0] - step / 2) & (two_theta <= measured[1] + step / 2)


def _coverage_warnings(coverage: Coverage, two_theta: np.ndarray, profile: np.ndarray,
                       step: float) -> list[str]:
    warnings = []
    (low, high), (first, last) = coverage.measured, coverage.grid
    if coverage.fraction < MIN_COVERAGE:
        warnings.append(f"the measurement covers only {coverage.fraction:.0%} of the model's 2θ grid; the "
                        "rest is 0, unlike any training pattern, so expect a poorer answer")
    strongest = float(two_theta[np.argmax(profile)])
    if low > first + step / 2 and strongest - low < EDGE_WINDOW:
        warnings.append(f"the measured intensity is highest at {strongest:.2f}°, where the measurement "
                        f"starts: the strongest peaks may lie below {low:.2f}°, which was not measured")
    if high < last - step / 2 and high - strongest < EDGE_WINDOW:
        warnings.append(f"the measured intensity is highest at {strongest:.2f}°, where the measurement ends: "
                        f"the strongest peaks may lie above {high:.2f}°, which was not measured")
    return warnings


def _class(name: str) -> str:
    """A class name, bracketed when it lists several symbols (extinction classes)."""
    return f"[{name}]" if ", " in name else name


def nearest_reference(p: Prediction, number: int | None = None) -> tuple[Reference | None, str | None]:
    """The training structure of space group ``number`` (default: the top-1 prediction) nearest to the
    measured profile, rendered as in training; or None and why there is none."""
    number = p.space_groups[0].number if number is None else number
    symbol = space_group(number).symbol
    if p.data_path is None:
        return None, "the run does not record its training data"
    if not p.data_path.exists():
        return None, f"the run's training data {p.data_path} no longer exists"
    try:
        cache = PeakCache(p.data_path)
    except CacheError as exc:
        return None, f"the run's training data cannot be used ({exc})"
    if p.data_key is not None and cache.manifest.get("key") != p.data_key:
        return None, f"{p.data_path} now holds other data than the run was trained on"
    train = cache.indices("train")
    rows = train[cache.space_groups[train] == number]
    if not len(rows):
        return None, f"no training structure in {p.data_path} has space group {symbol} (No. {number})"
    mask = _covered(p.two_theta, p.coverage.measured, p.input.grid.step)
    measured = p.profile[mask].astype(np.float64)
    best: tuple[float, int, np.ndarray] | None = None
    for start in range(0, len(rows), RENDER_BATCH):
        chunk = rows[start:start + RENDER_BATCH]
        peaks = PeakBatch.from_peak_lists([cache.peaks(int(i)) for i in chunk])
        profiles = replace(p.input, intensity="linear").make(peaks).cpu().numpy()  # as p.profile
        part = profiles[:, mask].astype(np.float64)
        norms = np.linalg.norm(part, axis=1) * np.linalg.norm(measured)
        similarity = np.divide(part @ measured, norms, out=np.zeros(len(chunk)), where=norms > 0)
        j = int(np.argmax(similarity))
        if best is None or similarity[j] > best[0]:
            best = (float(similarity[j]), int(chunk[j]), profiles[j])
    similarity, index, profile = best
    formula = cache.structure(index).composition.reduced_formula
    return Reference(index, cache.ids[index], formula, number, similarity, len(rows), profile), None


def plot_prediction(p: Prediction, path: str | Path) -> Reference | None:
    """Save a PNG of the measured profile as the model saw it, mirrored below by the simulated profile
    of the nearest training structure of the top-1 space group where the training data is at hand;
    records that reference (or why there is none) in ``p`` and returns it."""
    from matplotlib.figure import Figure

    p.reference, p.reference_note = nearest_reference(p)
    best, reference = p.space_groups[0], p.reference
    fig = Figure(figsize=(10, 4.5), dpi=120)
    ax = fig.add_subplot()
    (low, high), (first, last) = p.coverage.measured, p.coverage.grid
    for start, stop in ((first, low), (high, last)):
        if stop > start:
            ax.axvspan(start, stop, color="0.92", lw=0)
    ax.plot(p.two_theta, p.profile, lw=0.8, color="#1f4e79", label=_plain(f"measured: {p.pattern.name}"))
    title = f"{p.pattern.name}: top space group {best.symbol} (No. {best.number}), p = {best.probability:.2f}"
    if reference is not None:
        ax.plot(p.two_theta, -reference.profile, lw=0.8, color="#c55a11",
                label=_plain(f"simulated: {reference.id} {reference.formula}"))
        ax.axhline(0, color="black", lw=0.5)
        title += (f"\nnearest training structure of {best.symbol}: {reference.id} {reference.formula}, "
                  f"cosine similarity {reference.similarity:.2f} ({reference.candidates} compared)")
    else:
        title += f"\nmeasured pattern only: {p.reference_note}"
    ax.set_xlabel("2θ (degrees)" + ("; grey: not measured, set to 0" if p.coverage.fraction < 1 else ""))
    ax.set_ylabel("relative intensity" + (" (reference mirrored)" if reference is not None else ""))
    ax.set_xlim(first, last)
    ax.set_ylim(-1.1 if reference is not None else 0, 1.15)
    ax.set_title(_plain("\n".join(textwrap.fill(line, 120) for line in title.splitlines())), fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return reference


def _plain(text: str) -> str:
    """Text shown as written: matplotlib reads $...$ as mathematics."""
    return text.replace("$", r"\$")


#: extensions a folder given to ``xrdcore predict`` is searched for
PATTERN_SUFFIXES = (".xy", ".xye", ".csv", ".txt", ".dat", ".cif")


def pattern_files(specs: Sequence[str]) -> list[Path]:
    """Files from command-line arguments: files as given, folders' pattern files (sorted), and globs."""
    files: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files += sorted(f for f in path.iterdir() if f.suffix.lower() in PATTERN_SUFFIXES and f.is_file())
        elif any(c in spec for c in "*?[") and not path.exists():
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=True))
            if not matches:
                raise PatternError(f"{spec}: no file matches")
            files += matches
        else:
            files.append(path)
    return files


def prediction_row(p: Prediction) -> dict[str, Any]:
    """One pattern's answer as a flat row (CSV/JSON of a batch)."""
    row: dict[str, Any] = {"file": str(p.pattern), "status": "ok", "error": "", "wavelength": p.wavelength_note,
                           "coverage": round(p.coverage.fraction, 4)}
    for k, score in enumerate(p.space_groups, 1):
        row[f"space_group_{k}"], row[f"symbol_{k}"], row[f"probability_{k}"] = (score.number, score.symbol,
                                                                               round(score.probability, 6))
    row["background"] = p.background_note
    row["read"] = "; ".join(p.reading_notes)
    row["same_absences"] = " ".join(f"{s.symbol}({s.number})" for s in p.alternatives)
    for lv in p.levels:
        if lv.level != "space_group":
            row[lv.level] = lv.predicted
            row[f"{lv.level}_agrees"] = lv.agrees
    return row


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """A batch's rows as CSV (columns: the union, in first-seen order) or JSON, by the file's suffix."""
    from xrdcore.storage import atomic_write_json, atomic_write_text

    if path.suffix.lower() == ".json":
        atomic_write_json(path, rows)
        return
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: write results as .csv or .json")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def format_prediction(p: Prediction) -> str:
    """The printout of ``xrdcore predict``."""
    best, coverage = p.space_groups[0], p.coverage
    (low, high), (first, last) = coverage.measured, coverage.grid
    source = f"model:    {p.model} ({p.encoder}, hierarchy {p.hierarchy})" if p.model else \
        f"run:      {p.run_dir} ({p.encoder}, hierarchy {p.hierarchy})"
    lines = [source,
             f"pattern:  {p.pattern}",
             *(f"read:     {note}" for note in p.reading_notes),
             f"wavelength: {p.wavelength_note}",
             f"background: {p.background_note}",
             f"coverage: {coverage.fraction:.0%} of the model's 2θ grid {first:.2f}-{last:.2f}° (measured "
             f"{low:.2f}-{high:.2f}°" + ("; unmeasured points set to 0)" if coverage.fraction < 1 else ")")]
    lines += [f"warning:  {w}" for w in p.warnings]
    lines.append(f"top {len(p.space_groups)} space groups:")
    lines += [f"  {k:>3}. {s.symbol:<12} No. {s.number:<4} {s.probability:.3f}"
              for k, s in enumerate(p.space_groups, 1)]
    if p.alternatives:
        lines.append(f"same lattice and absences as {best.symbol} (a powder pattern's absences cannot tell "
                     "them apart): " + ", ".join(f"{s.symbol} ({s.probability:.3f})" for s in p.alternatives))
    own = [f"{_short(row.predicted)} ({row.probability:.2f})" + ("" if row.head else " Σ") for row in p.levels]
    width, own_width = max(len(row.level) for row in p.levels), max(len(text) for text in own)
    lines.append(f"each level's own prediction (Σ: summed over the space groups; the model has no head for it), "
                 f"and the class of the top space group {best.symbol} where it differs:")
    for row, text in zip(p.levels, own):
        line = f"  {row.level:<{width}}  {text:<{own_width}}"
        if not row.agrees:
            line += f"  differs: {_short(row.of_top_space_group)} ({row.top_space_group_probability:.2f})"
        lines.append(line.rstrip())
    if p.disagreements:
        lines.append("disagreements:")
        lines += [f"  - {d}" for d in p.disagreements]
    else:
        lines.append(f"every level agrees with the top space group {best.symbol}")
    if p.reference is not None:
        r = p.reference
        lines.append(f"reference: {r.id} {r.formula}, the nearest of {r.candidates} training structures of "
                     f"{best.symbol} (cosine similarity {r.similarity:.2f} on the measured range)")
    elif p.reference_note is not None:
        lines.append(f"reference: none, {p.reference_note}")
    return "\n".join(lines)


def _short(name: str, width: int = 40) -> str:
    return name if len(name) <= width else name[:width - 1] + "…"
