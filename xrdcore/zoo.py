"""Pretrained models: a trained run packaged with its model card, shipped as package data of an
installable distribution and registered through the ``register_models`` hook, like any component.

A packaged model is a folder: ``config.json`` and ``metrics.json`` of the run it came from,
``checkpoints/best.safetensors`` (weights only, loaded without unpickling anything), ``model.json``
(the card's facts: task, training data and split hash, test metrics with 95% intervals, input
geometry and wavelength, licence, size, sha256 of the weights) and ``card.md`` (the card to read).
The weights are checked against the sha256 every time the model is created. A third party publishes
a model the same way: :func:`package_run` on their run, the folder in their distribution's package
data, and ``register("name", xrdcore.zoo.packaged("their_package", "models/name"))``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from xrdcore.storage import atomic_write_json, atomic_write_text
from xrdcore.train.checkpoint import save_checkpoint
from xrdcore.validate import is_real

MODEL_FORMAT = "xrdcore-model/1"
CARD = "model.json"
CARD_TEXT = "card.md"
WEIGHTS = Path("checkpoints") / "best.safetensors"
#: the test scores `xrdcore models` prints (with their intervals), checked on every card
SUMMARY_SCORES = ("top1", "crystal_system")


class ModelError(ValueError):
    """A packaged model that cannot be used: missing files, a foreign card, weights that fail their
    sha256."""


@dataclass
class PretrainedModel:
    """A packaged model folder and its card; :meth:`predict` answers for measured patterns."""

    name: str
    path: Path
    card: dict[str, Any] = field(repr=False)

    @classmethod
    def from_folder(cls, path: str | Path) -> PretrainedModel:
        """The model in ``path``; a clear :class:`ModelError` when it is not one, or when a field its
        users read (``xrdcore models``, predict) is missing or of the wrong kind."""
        path = Path(path)
        if not (path / CARD).is_file():
            raise ModelError(f"{path}: not a packaged model (no {CARD})")
        card = _read_json_object(path / CARD)
        if card.get("format") != MODEL_FORMAT:
            raise ModelError(f"{path / CARD}: not an xrdcore model card (format {card.get('format')!r}, "
                             f"expected {MODEL_FORMAT!r})")
        problem = _card_problem(card)
        if problem:
            raise ModelError(f"{path / CARD}: {problem}")
        return cls(str(card.get("name", path.name)), path, card)

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    def contract_errors(self) -> list[str]:
        """Missing files, or weights whose sha256 is not the card's (checked on every creation)."""
        missing = [str(p) for p in (CARD_TEXT, "config.json", WEIGHTS) if not (self.path / p).is_file()]
        if missing:
            return [f"{self.path}: missing {', '.join(missing)}"]
        from xrdcore.train.trainer import RunError, read_run_record

        try:
            read_run_record(self.path)
        except RunError as exc:
            return [str(exc)]
        digest = sha256(self.weights)
        if digest != self.card.get("sha256"):
            return [f"{self.weights}: sha256 {digest[:16]}… is not the card's {str(self.card.get('sha256'))[:16]}…; "
                    "the weights were changed or damaged: reinstall the distribution that ships them"]
        return []

    @property
    def card_text(self) -> str:
        return (self.path / CARD_TEXT).read_text()

    def load(self, device: str = "cpu"):
        """The trained torch model, its TrainConfig and its run record (``load_run``); a package whose
        run cannot be built (a damaged config.json, weights that do not fit) is a ModelError."""
        from xrdcore.train.trainer import load_run

        problems = self.contract_errors()  # the weights' sha256 right before they are read, however made
        if problems:
            raise ModelError(problems[0])
        try:
            return load_run(self.path, "best", device)
        except (ValueError, TypeError, KeyError) as exc:  # RunError, CheckpointError, ComponentError among them
            message = " ".join(str(exc).split())
            raise ModelError(message if message.startswith(str(self.path)) else
                             f"{self.path}: the packaged run cannot be built ({message[:300]})") from None

    def predict(self, pattern: str | Path, **options: Any):
        """:func:`xrdcore.predict.predict` with this model (``top``, ``wavelength``, ``background``…)."""
        from xrdcore.predict import predict

        return predict(self.path, pattern, model_name=self.name, **options)

    def summary(self) -> dict[str, Any]:
        """The line ``xrdcore models`` prints for this model."""
        card, test = self.card, self.card.get("metrics", {}).get("test", {})
        return {"name": self.name, "task": card.get("task"), "data": card.get("training_data", {}),
                "test": {k: test[k] for k in SUMMARY_SCORES if k in test},
                "input": card.get("input", {}), "licence": card.get("licence"),
                "size_bytes": card.get("size_bytes"), "sha256": card.get("sha256")}


def _read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or a one-line ModelError naming it."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelError(f"{path}: cannot be read as JSON ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: holds a JSON {type(data).__name__}, not an object")
    return data


def _card_problem(card: Mapping[str, Any]) -> str | None:
    """What is wrong with the fields a card's readers use, or None (a card written by
    :func:`package_run` has them all)."""
    for key in ("name", "task", "licence", "encoder", "hierarchy"):
        if key in card and not isinstance(card[key], str):
            return f"{key} must be text, got {card[key]!r}"
    if not isinstance(card.get("sha256"), str) or len(card["sha256"]) != 64:
        return f"sha256 must be the 64 hex digits of the weights' sha256, got {card.get('sha256')!r}"
    if "size_bytes" in card and (isinstance(card["size_bytes"], bool) or not isinstance(card["size_bytes"], int)
                                 or card["size_bytes"] < 0):
        return f"size_bytes must be a non-negative integer, got {card['size_bytes']!r}"
    for key in ("training_data", "input", "metrics"):
        if key in card and not isinstance(card[key], dict):
            return f"{key} must be an object, got {card[key]!r}"
    geometry = card.get("input", {})
    grid = geometry.get("two_theta")
    if grid is not None and not (isinstance(grid, list) and len(grid) == 3 and all(map(is_real, grid))):
        return f"input.two_theta must be [start, stop, step] in degrees, got {grid!r}"
    if geometry.get("wavelength") is not None and not is_real(geometry["wavelength"]):
        return f"input.wavelength must be a number of Å, got {geometry['wavelength']!r}"
    test = card.get("metrics", {}).get("test", {})
    if not isinstance(test, dict):
        return f"metrics.test must be an object, got {test!r}"
    for name, score in test.items():
        # the scores `xrdcore models` prints with their intervals, and any other score that has one
        if name not in SUMMARY_SCORES and not (isinstance(score, dict) and "ci95" in score):
            continue
        ci95 = score.get("ci95") if isinstance(score, dict) else None
        if not (isinstance(score, dict) and is_real(score.get("value")) and isinstance(ci95, list)
                and len(ci95) == 2 and all(map(is_real, ci95))):
            return f"metrics.test.{name} must be {{value, ci95: [low, high]}}, got {score!r}"
    return None


def packaged(package: str, folder: str) -> Callable[[], PretrainedModel]:
    """The factory to register for a model folder shipped as package data of ``package``."""

    def factory() -> PretrainedModel:
        return PretrainedModel.from_folder(Path(str(resources.files(package).joinpath(folder))))

    factory.__doc__ = f"the model in {package}/{folder}"
    return factory


def load_model(name: str, registry: Any | None = None) -> PretrainedModel:
    """A pretrained model by name (``xrdcore.load_model("mof")``), checked against its sha256; from
    the process-wide registry unless one is given (training and predict load from that one too)."""
    from xrdcore import get_registry

    return (registry or get_registry()).create("model", name)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_run(run_dir: str | Path, out: str | Path, *, card: Mapping[str, Any], card_text: str,
                half: bool = False) -> PretrainedModel:
    """Package the best weights of ``run_dir`` as a model folder ``out`` with the given card facts
    (``name``, ``task``, ``licence``, ``training_data``, ``metrics`` …) and card text. The run's
    local data path is dropped; ``half`` stores float16 weights (half the size; score the packaged
    model, not the run, for its card). Input geometry, wavelength, encoder, parameters, size and
    sha256 are filled in here."""
    from xrdcore.train.trainer import load_run

    run_dir, out = Path(run_dir), Path(out)
    model, config, record = load_run(run_dir, "best")
    record = json.loads(json.dumps(record))
    data = record.get("data") if isinstance(record.get("data"), dict) else {}
    if record.get("wavelength") is None and data.get("path"):  # runs from before runs recorded it
        from xrdcore.data.cache import PeakCache
        from xrdcore.train.trainer import data_wavelength

        record["wavelength"] = data_wavelength(PeakCache(data["path"]))
    if data:
        data["path"] = None  # a local path, meaningless where the model is installed
    if half:
        model = model.half()
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / WEIGHTS, model, {"packaged_from": run_dir.name})
    atomic_write_json(out / "config.json", record)
    if (run_dir / "metrics.json").is_file():
        shutil.copyfile(run_dir / "metrics.json", out / "metrics.json")
    grid = config.input.grid
    facts = {"format": MODEL_FORMAT, **card,
             "encoder": record["encoder"]["qualified_name"], "size": record["config"].get("encoder_options"),
             "hierarchy": record["hierarchy"]["name"],
             "parameters": sum(p.numel() for p in model.parameters()),
             "input": {"kind": config.input.kind, "two_theta": [grid.start, grid.stop, grid.step],
                       "axis": grid.axis, "intensity": config.input.intensity,
                       "wavelength": record.get("wavelength")},
             "weights_dtype": "float16" if half else "float32",
             "size_bytes": (out / WEIGHTS).stat().st_size, "sha256": sha256(out / WEIGHTS)}
    atomic_write_json(out / CARD, facts)
    atomic_write_text(out / CARD_TEXT, card_text)
    return PretrainedModel.from_folder(out)


__all__ = ["ModelError", "PretrainedModel", "load_model", "package_run", "packaged", "sha256"]
