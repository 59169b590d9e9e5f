"""Answers for measured patterns: ``predict`` with a pretrained model or a run, and ``models``, the
pretrained models installed."""

from __future__ import annotations

import json
import sys

from xrdcore.cli.options import device_argument, json_flag


#: the commands of this module and their one-line help (also what `xrdcore --help` lists)
COMMANDS = {
    "predict": "space group of a measured pattern from a pretrained model or a trained run",
    "models": "pretrained models installed: task, data, test metrics, input, licence, size, sha256; "
              "'show NAME' prints a model card",
}


def add_commands(commands) -> None:
    p = commands.add_parser("predict", help=COMMANDS["predict"],
                            usage="xrdcore predict (--model NAME | RUN_DIR) PATTERN [PATTERN ...] [options]")
    p.add_argument("patterns", nargs="+", metavar="PATTERN", help="measured patterns: files (2θ in degrees and "
                   "intensity: .xy, .xye, .csv, .txt, .dat, or a powder CIF), folders of them, or globs; without "
                   "--model the first argument is a training run directory (its best checkpoint is used)")
    p.add_argument("--model", metavar="NAME", help="a pretrained model (xrdcore models lists them)")
    p.add_argument("--background", choices=["auto", "none"], default="auto",
                   help="auto: subtract a SNIP background first (default); none: use the intensities as measured")
    p.add_argument("--out", metavar="PATH", help="also write every pattern's answer to a .csv or .json file")
    p.add_argument("--wavelength", help="the pattern's wavelength, a line name (MoKa1) or Å, where the file does not "
                   "state it; the pattern is moved to the run's wavelength (default: taken to be the run's)")
    p.add_argument("--top", type=int, default=5, help="space groups to list (default 5)")
    p.add_argument("--outside", choices=["zero", "error"], default="zero",
                   help="grid points the measurement does not reach: 0 (default) or refuse the pattern")
    p.add_argument("--plot", metavar="PATH", help="also save a PNG of the pattern and the simulated pattern of "
                   "the nearest training structure of the top space group")
    device_argument(p, "cpu")
    p.set_defaults(run=_predict)

    p = commands.add_parser("models", help=COMMANDS["models"])
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="the model to show")
    json_flag(p)
    p.set_defaults(run=_models)


def _models(args) -> int:
    """The installed pretrained models, a line each, or one model's card."""
    from xrdcore import get_registry
    from xrdcore.zoo import load_model

    registry = get_registry()
    if args.action == "show":
        if not args.name:
            raise ValueError("models show needs a model name (xrdcore models lists them)")
        model = load_model(args.name, registry)
        print(json.dumps(model.card, indent=2) if args.json else model.card_text.rstrip())
        if not args.json:
            print(f"\nfiles: {model.path}\nsha256 of the weights: {model.card['sha256']} (checked)")
        return 0
    summaries, broken = [], 0
    for component in registry.components("model"):
        name = registry.public_name(component)
        try:
            summaries.append(registry.create("model", name).summary())
        except (ValueError, TypeError, OSError) as exc:  # one damaged model does not hide the others
            broken += 1
            summaries.append({"name": name, "error": " ".join(str(exc).split())})
    if args.json:
        print(json.dumps(summaries, indent=2))
    elif not summaries:
        print("no pretrained models installed (plugins/xrd-zoo ships them: pip install -e plugins/xrd-zoo)")
    for s in [] if args.json else summaries:
        print(f"{s['name']}: unusable: {s['error']}" if "error" in s else _model_line(s))
    return 1 if broken else 0


def _model_line(s: dict) -> str:
    """One model of ``xrdcore models``: what it does, on what data, how well, for which input."""
    data, test, geometry = s["data"], s["test"], s["input"]
    scores = ", ".join(f"{k.replace('_', ' ')} {v['value']:.1%} ({v['ci95'][0]:.1%}-{v['ci95'][1]:.1%})"
                       for k, v in test.items())
    counts = data.get("split_counts", {})
    return (f"{s['name']}: {s['task']}\n"
            f"  data:    {data.get('name', data.get('dataset'))}\n"
            f"           train {counts.get('train')}, test {counts.get('test')}, split "
            f"{str(data.get('split_hash', ''))[:19]}…\n"
            f"  test:    {scores}\n"
            f"  input:   {geometry.get('kind')}, 2θ {_grid_text(geometry.get('two_theta'))} at "
            f"{geometry.get('wavelength')} Å\n"
            f"  licence: {s['licence']}; {s['size_bytes'] / 2**20:.1f} MiB; sha256 {s['sha256'][:16]}…")


def _grid_text(grid) -> str:
    return f"{grid[0]:g}-{grid[1]:g}° step {grid[2]:g}°" if isinstance(grid, list) and len(grid) == 3 else str(grid)


def _predict(args) -> int:
    """One pattern: the whole printout. Several: a line each; a file that fails is reported and
    skipped, and the exit status is 1 if any failed."""
    from pathlib import Path

    from xrdcore.predict import (
        PATTERN_SUFFIXES,
        format_prediction,
        pattern_files,
        plot_prediction,
        predict,
        predict_many,
        prediction_row,
        write_rows,
    )
    from xrdcore.zoo import load_model

    if args.model:
        model = load_model(args.model)
        run_dir, specs = model.path, args.patterns
    elif len(args.patterns) < 2:
        raise ValueError("predict needs a pretrained model (--model NAME; xrdcore models lists them) or a run "
                         "directory, then one or more patterns")
    else:
        run_dir, specs = args.patterns[0], args.patterns[1:]
    files = pattern_files(specs)
    if not files:
        raise ValueError(f"no pattern files in {', '.join(specs)} (looked for "
                         f"{', '.join(PATTERN_SUFFIXES)})")
    if args.plot and len(files) != 1:
        raise ValueError(f"--plot draws one pattern; {len(files)} were given")
    if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"{args.out}: --out writes .csv or .json")
    options = dict(top=args.top, outside=args.outside, device=args.device, wavelength=args.wavelength,
                   background=args.background, model_name=args.model)
    if len(files) == 1 and not args.out:
        prediction = predict(run_dir, files[0], **options)
        if args.plot:
            plot_prediction(prediction, args.plot)  # first, so the printout names the reference it drew
        print(format_prediction(prediction))
        if args.plot:
            print(f"plot: {args.plot}")
        return 0
    rows, failed = [], 0
    for path, p in zip(files, predict_many(run_dir, files, **options)):
        if isinstance(p, Exception):  # a file that cannot be answered: report it, go on
            failed += 1
            message = str(p).splitlines()[0]
            print(f"xrdcore: error: {message}", file=sys.stderr)
            rows.append({"file": str(path), "status": "failed", "error": message})
            continue
        rows.append(prediction_row(p))
        top = p.space_groups[0]
        print(f"{path}: {top.symbol} (No. {top.number}, {top.probability:.3f}); wavelength {p.wavelength_note}")
    if args.out:
        write_rows(rows, Path(args.out))
        print(f"{len(rows) - failed} of {len(rows)} patterns answered; results in {args.out}")
    else:
        print(f"{len(rows) - failed} of {len(rows)} patterns answered")
    return 1 if failed else 0
