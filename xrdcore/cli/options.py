"""Options shared by several commands, declared once, and the parsing of their values."""

from __future__ import annotations

import argparse
import json
import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

PEAK_SHAPES = ("gaussian", "pseudo-voigt", "lorentzian", "stick")


def parse_option(text: str) -> tuple[str, object]:
    """``key=value`` with the value read as JSON when it is JSON (numbers, true, lists), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--option needs KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_options(texts: list[str]) -> dict[str, object]:
    return dict(parse_option(t) for t in texts)


def parse_variant(text: str) -> tuple[str, tuple[str, dict]]:
    """``LABEL=ENCODER[,KEY=VALUE...]`` as (label, (encoder, options)); the encoder may be qualified
    (``xrd-mamba:mamba``) and a value may be JSON with commas (``channels=[8,16]``): items are split
    only before ``KEY=``."""
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise ValueError(f"--variant needs LABEL=ENCODER[,KEY=VALUE...], got {text!r}")
    encoder, *options = re.split(r",(?=[A-Za-z_][\w.]*=)", rest)
    return label, (encoder, parse_options(options))


def json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def device_argument(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument("--device", default=default, help=f"cpu, cuda or auto (the GPU if there is one; default {default})")


def component_options(p: argparse.ArgumentParser, kind: str, example: str = "") -> None:
    """``--KIND-option KEY=VALUE``, repeatable: a keyword argument of the component's factory."""
    p.add_argument(f"--{kind}-option", action="append", default=[], metavar="KEY=VALUE",
                   help=f"{kind} argument, value read as JSON when it is JSON{example} (repeatable)")


def simulator_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--simulator", help="images simulator (default: the one installed, e.g. xrd-msdn's zone-axis)")
    component_options(p, "simulator", ", e.g. size=64 or representation=spots")


def grid_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """``--two-theta START STOP STEP`` and ``--step``: one 2θ grid (an AngleGrid), changed in part."""
    p.add_argument("--two-theta", nargs=3, type=float, metavar=("START", "STOP", "STEP"), help=f"{what}, degrees")
    p.add_argument("--step", type=float, help="only the grid's step, degrees (the range unchanged)")


def grid(args, base):
    """The AngleGrid of ``--two-theta``/``--step`` over ``base``."""
    from dataclasses import replace

    changes = dict(zip(("start", "stop", "step"), args.two_theta or ()))
    if args.step is not None:
        changes["step"] = args.step
    return replace(base, **changes)


def size_argument(p: argparse.ArgumentParser, whose: str) -> None:
    p.add_argument("--size", choices=["tiny", "small", "full"], default=None,
                   help=f"{whose}'s registered size: tiny (tests, smoke runs), small (learns on a real data set "
                   "on a CPU in well under an hour), full (the published size; default, --quick: tiny)")


def data_arguments(p: argparse.ArgumentParser) -> None:
    """Where the data come from: a cache, a registered data set, CIFs (built and reused)."""
    p.add_argument("--dataset", default="prototypes", help="a cache directory, a registered data set "
                   "(prototypes, coremof, ...), a folder of CIFs or a CSV of CIFs (default prototypes)")
    p.add_argument("--data-dir", default="data", help="where data sets are built and reused (default ./data)")
    p.add_argument("--limit", type=int, help="build from at most N entries of the source")
    p.add_argument("--workers", type=int, default=2, help="processes for building the data (default 2)")
    device_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def open_data(args):
    from xrdcore.data.cache import open_dataset

    return open_dataset(args.dataset, args.data_dir, limit=args.limit, workers=args.workers,
                        progress=not args.quiet)


#: options of xrdcore.train.TrainConfig that the command line sets directly
TRAINING = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "optimizer", "patience", "precision",
            "heads", "balance", "label_smoothing", "train_limit", "time_budget")
#: options of the profile/peaks input (xrdcore.train.InputSpec)
INPUT = ("two_theta", "step", "shape", "caglioti", "intensity", "axis", "augment")


def training_arguments(p: argparse.ArgumentParser) -> None:
    """Training and input settings; one left out keeps the recipe of docs/training.md (TrainConfig's
    and InputSpec's defaults; --quick: 3 epochs)."""
    p.add_argument("--epochs", type=int, help="at most this many epochs (default 80)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (default 3e-3)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--warmup-epochs", type=float, help="linear warm-up before the cosine decay")
    p.add_argument("--optimizer", choices=["adamw", "adam"])
    p.add_argument("--patience", type=int,
                   help="stop after this many epochs without a better validation score (default 20)")
    p.add_argument("--balance", type=float, help="class-balanced loss: weight count^-B per class (0 off, 1 equal)")
    p.add_argument("--label-smoothing", type=float, help="label smoothing of the cross-entropy (default 0)")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="train for about this long: the epoch count is fitted after the first epoch")
    p.add_argument("--train-limit", type=int, help="train on N training structures (seeded subset; learning curves)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 autocast on CUDA, fp32 on the CPU")
    grid_arguments(p, "the input grid (default: the recipe's, docs/training.md)")
    p.add_argument("--shape", choices=PEAK_SHAPES, help="peak shape of the rendered profiles (default gaussian)")
    p.add_argument("--caglioti", nargs=3, type=float, metavar=("U", "V", "W"),
                   help="peak widths of the rendered profiles: FWHM² = U tan²θ + V tanθ + W, degrees² "
                   "(default: the recipe's, docs/training.md)")
    p.add_argument("--intensity", choices=["linear", "sqrt", "log"],
                   help="intensity scale the model sees (default linear)")
    p.add_argument("--axis", choices=["two_theta", "log_d"],
                   help="profile points uniform in 2θ or in ln(1/d) (a lattice strain is then a shift; default)")
    p.add_argument("--augment", choices=["none", "laboratory", "lattice"],
                   help="augment training profiles: laboratory (measured-like, rendered per batch) or lattice "
                   "(strain and zero shift of profiles rendered once; default)")
    simulator_arguments(p)
    p.add_argument("--heads", choices=["shared", "per-view"],
                   help="per-view: a head per view of a multistream encoder, losses summed (MSDN)")
    p.add_argument("--holdout-space-groups", metavar="N|SG,SG,...",
                   help="keep N space groups (or these) out of training; score them against reference embeddings")


def training_settings(args) -> dict[str, Any]:
    """The keyword arguments of :func:`xrdcore.train.run_config` that the command line sets:
    ``training``, ``input`` (profile/peaks) and ``images`` settings, only those given."""
    training = {n: getattr(args, n) for n in TRAINING if getattr(args, n) is not None}
    if args.holdout_space_groups:
        try:
            held = [int(v) for v in args.holdout_space_groups.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--holdout-space-groups takes a count or space-group numbers, "
                             f"got {args.holdout_space_groups!r}") from None
        training["holdout_space_groups"] = held[0] if "," not in args.holdout_space_groups else held
    inputs = {n: getattr(args, n) for n in INPUT if getattr(args, n) is not None}
    inputs.update({n: tuple(inputs[n]) for n in ("two_theta", "caglioti") if n in inputs})
    images = parse_options(args.simulator_option)
    if args.simulator:
        images["simulator"] = args.simulator
    return {"training": training, "input": inputs, "images": images}
