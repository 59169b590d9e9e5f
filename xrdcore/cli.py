"""The ``xrdcore`` command. Errors exit with status 2 and one line; ``--debug`` shows the traceback."""

from __future__ import annotations

import argparse
import json
import re
import sys
import traceback
from collections.abc import Sequence


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from xrdcore import __version__

    parser = _Parser(prog="xrdcore", description="Deep learning on diffraction data: plugins, "
                     "crystallographic labels, training and benchmarks.")
    parser.add_argument("--version", action="version", version=f"xrdcore {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = commands.add_parser("plugins", help="installed plugins, their status and components")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_plugins)

    p = commands.add_parser("list", help="components of one kind (encoders, hierarchies, ...)")
    p.add_argument("kind", help="encoders, hierarchies, schedulers, simulators, generators, datasets")
    p.add_argument("pattern", nargs="?", default="*", help="glob on names, e.g. '*mamba*'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_list)

    p = commands.add_parser("labels", help="every hierarchy level of one space group")
    p.add_argument("space_group", help="number (1-230) or Hermann-Mauguin symbol, e.g. 14, P2_1/c, P21/n")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_labels)

    p = commands.add_parser("simulate", help="powder pattern of a CIF: profile (xy) or peak list")
    p.add_argument("cif", help="a CIF file")
    p.add_argument("--wavelength", default="CuKa1", help="line name (CuKa1, MoKa, ...) or Å")
    p.add_argument("--range", nargs=3, type=float, default=(5.0, 90.0, 0.01), metavar=("START", "STOP", "STEP"),
                   help="2θ grid in degrees (default 5 90 0.01)")
    p.add_argument("--shape", default="gaussian", choices=["gaussian", "pseudo-voigt", "lorentzian", "stick"])
    p.add_argument("--peaks", action="store_true", help="write the peak list instead of the profile")
    p.add_argument("--out", help="file to write (default: standard output)")
    p.add_argument("--plot", help="also save a PNG of the profile with the strongest peaks labelled")
    p.add_argument("--images", metavar="PNG", help="save the views of an images simulator side by side instead "
                   "(e.g. xrd-msdn's zone-axis: shaped spot patterns along x, y, z)")
    p.add_argument("--simulator", help="images simulator (default: the one installed)")
    p.add_argument("--simulator-option", action="append", default=[], metavar="KEY=VALUE",
                   help="images simulator argument, e.g. size=224 or representation=spots (repeatable)")
    p.set_defaults(run=_simulate)

    data = commands.add_parser("data", help="build and inspect cached data sets").add_subparsers(
        dest="data_command", required=True, parser_class=_Parser)
    p = data.add_parser("build", help="read, label, de-duplicate, split and simulate a data set into DIR")
    p.add_argument("dataset", help="a registered data set (prototypes, coremof, ...), a folder of CIFs or a CSV file")
    p.add_argument("--out", required=True, help="cache directory (created; an interrupted build resumes)")
    p.add_argument("--limit", type=int, help="read at most N entries of the source")
    p.add_argument("--workers", type=int, default=1, help="processes for parsing and simulation")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="data-set argument, e.g. --option per_group=4 (repeatable)")
    p.add_argument("--symprec", type=float, default=0.1, help="spglib tolerance for labels, Å (default 0.1)")
    p.add_argument("--disorder", choices=["skip", "keep"], default="skip", help="partially occupied sites")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--wavelength", default="CuKa1")
    p.add_argument("--range", nargs=2, type=float, default=(5.0, 90.0), metavar=("START", "STOP"),
                   help="2θ range of the peak lists, degrees")
    p.add_argument("--chunk", type=int, default=256, help="structures per cache chunk")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_data_build)
    p = data.add_parser("export", help="a built cache's labels, split and peak lists in one compact file "
                        "(no structures; loads without pymatgen)")
    p.add_argument("dir", help="a complete cache directory")
    p.add_argument("file", help="the file to write, e.g. coremof.xrdexport")
    p.set_defaults(run=_data_export)
    p = data.add_parser("import", help="unpack a file of `xrdcore data export` into a new cache directory")
    p.add_argument("file")
    p.add_argument("dir", help="a new or empty directory")
    p.set_defaults(run=_data_import)
    p = data.add_parser("info", help="counts per space group and level, duplicates, split sizes and hash")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_data_info)

    p = commands.add_parser("train", help="train and score one encoder × hierarchy × scheduler")
    _data_arguments(p)
    p.add_argument("--encoder", required=True, help="a registered encoder, e.g. rcnet or xrd-mamba:mamba")
    p.add_argument("--hierarchy", default="flat", help="label hierarchy (default flat)")
    p.add_argument("--scheduler", default="sum", help="loss scheduler (default sum)")
    p.add_argument("--out", required=True, help="run directory (an interrupted run resumes from it)")
    _training_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    _size_argument(p, "the encoder")
    for kind in ("encoder", "hierarchy", "scheduler"):
        p.add_argument(f"--{kind}-option", action="append", default=[], metavar="KEY=VALUE",
                       help=f"{kind} argument, value read as JSON when it is JSON (repeatable)")
    p.set_defaults(run=_train)

    p = commands.add_parser("bench", help="train and score every valid combination of installed components")
    _data_arguments(p)
    p.add_argument("--plugins", default="all", help="'all' or plugin names, comma-separated (built-ins always run)")
    p.add_argument("--encoders", default="*", help="names or globs, comma-separated (default all)")
    p.add_argument("--hierarchies", default="*", help="names or globs, comma-separated (default all)")
    p.add_argument("--schedulers", default="*", help="names or globs, comma-separated (default all)")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=ENCODER[,KEY=VALUE...]",
                   help="an extra encoder under a new label, e.g. mamba-no-ssm=mamba,ssm=false (repeatable)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2; --quick: 0)")
    _size_argument(p, "every encoder")
    p.add_argument("--quick", action="store_true", help="tiny variants, 3 epochs: a smoke run of the "
                   "whole grid in minutes on a CPU")
    p.add_argument("--out", required=True, help="benchmark directory")
    p.add_argument("--resume", action="store_true", help="continue the benchmark in --out, skipping finished runs")
    p.add_argument("--shard", help="k/n: run only every n-th run of the grid, starting at k (0 <= k < n)")
    p.add_argument("--task", choices=["all", "classification", "generation"], default="all",
                   help="space-group classification (encoders × hierarchies × schedulers), pattern-conditioned "
                   "generation (generators: retrieval and match rate, in OUT/generation), or both (default)")
    _training_arguments(p)
    _generation_arguments(p)
    p.set_defaults(run=_bench)

    p = commands.add_parser("train-generator", help="fit one pattern-conditioned structure generator")
    _data_arguments(p)
    p.add_argument("generator", help="a registered generator, e.g. xtalnet or pyxtal-random")
    p.add_argument("--out", required=True, help="generator run directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="the generator's registered tiny variant")
    p.add_argument("--generator-option", action="append", default=[], metavar="KEY=VALUE",
                   help="generator argument, value read as JSON when it is JSON (repeatable)")
    p.set_defaults(run=_train_generator)

    p = commands.add_parser("generate", help="candidate structures for a measured pattern from a generator run")
    p.add_argument("run_dir", help="a generator run directory (xrdcore train-generator, or bench runs/)")
    p.add_argument("pattern", help="measured pattern: 2θ in degrees and intensity (.xy, .xye, .csv, .txt, .dat)")
    p.add_argument("--composition", required=True, help="the cell content, e.g. Zn4O13C24H12")
    p.add_argument("-n", type=int, default=20, help="candidates to draw (default 20)")
    p.add_argument("--out", required=True, help="new directory for the ranked CIFs and ranking.json")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.set_defaults(run=_generate)

    p = commands.add_parser("predict", help="space group of a measured pattern from a pretrained model or a "
                            "trained run", usage="xrdcore predict (--model NAME | RUN_DIR) PATTERN [PATTERN ...] "
                            "[options]")
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
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.set_defaults(run=_predict)

    p = commands.add_parser("models", help="pretrained models installed: task, data, test metrics, input, "
                            "licence, size, sha256; 'show NAME' prints a model card")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="the model to show")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=_models)

    p = commands.add_parser("levels", help="the hierarchy levels, or the classes of one level")
    p.add_argument("level", nargs="?", help="e.g. extinction_class; omit for all levels")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_levels)
    return parser


def _size_argument(p: argparse.ArgumentParser, whose: str) -> None:
    p.add_argument("--size", choices=["tiny", "small", "full"], default=None,
                   help=f"{whose}'s registered size: tiny (tests, smoke runs), small (learns on a real data set "
                   "on a CPU in well under an hour), full (the published size; default, --quick: tiny)")


def _data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="prototypes", help="a cache directory, a registered data set "
                   "(prototypes, coremof, ...), a folder of CIFs or a CSV of CIFs (default prototypes)")
    p.add_argument("--data-dir", default="data", help="where data sets are built and reused (default ./data)")
    p.add_argument("--limit", type=int, help="build from at most N entries of the source")
    p.add_argument("--workers", type=int, default=2, help="processes for building the data (default 2)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: the GPU if there is one)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _training_arguments(p: argparse.ArgumentParser) -> None:
    """Training settings; one left out keeps the recipe of docs/training.md (TrainConfig's and
    InputSpec's defaults; --quick: 3 epochs)."""
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
    p.add_argument("--two-theta", nargs=3, type=float, metavar=("START", "STOP", "STEP"),
                   help="input grid in degrees (default 5 90 0.1)")
    p.add_argument("--shape", choices=["gaussian", "pseudo-voigt", "lorentzian", "stick"],
                   help="peak shape of the rendered profiles (default gaussian)")
    p.add_argument("--caglioti", nargs=3, type=float, metavar=("U", "V", "W"),
                   help="peak widths of the rendered profiles: FWHM² = U tan²θ + V tanθ + W, degrees² "
                   "(default 0.01 -0.002 0.03)")
    p.add_argument("--intensity", choices=["linear", "sqrt", "log"], help="intensity scale the model sees (default linear)")
    p.add_argument("--axis", choices=["two_theta", "log_d"],
                   help="profile points uniform in 2θ or in ln(1/d) (a lattice strain is then a shift; default)")
    p.add_argument("--augment", choices=["none", "laboratory", "lattice"],
                   help="augment training profiles: laboratory (measured-like, rendered per batch) or lattice "
                   "(strain and zero shift of profiles rendered once; default)")
    p.add_argument("--simulator", help="images simulator for encoders that take images (default: the one installed)")
    p.add_argument("--simulator-option", action="append", default=[], metavar="KEY=VALUE",
                   help="images simulator argument, e.g. size=64 or representation=spots (repeatable)")
    p.add_argument("--heads", choices=["shared", "per-view"],
                   help="per-view: a head per view of a multistream encoder, losses summed (MSDN)")
    p.add_argument("--holdout-space-groups", metavar="N|SG,SG,...",
                   help="keep N space groups (or these) out of training; score them against reference embeddings")


def _generation_arguments(p: argparse.ArgumentParser) -> None:
    """Settings of the generation task (xrdcore.bench.generation.GenerationSettings)."""
    p.add_argument("--generators", default="*", help="names or globs, comma-separated (default all)")
    p.add_argument("--candidates", type=int, help="candidates per test pattern (default 10)")
    p.add_argument("--max-atoms", type=int, help="score test structures with at most this many atoms (default 20)")
    p.add_argument("--limit-patterns", type=int, help="score only the first N test patterns (--quick: 20)")
    p.add_argument("--generator-option", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="an argument of one generator, e.g. xtalnet.steps=100 (repeatable)")


def _generation_settings(args, seeds: tuple[int, ...]):
    from xrdcore.bench.generation import GenerationSettings

    options: dict[str, dict] = {}
    for text in args.generator_option:
        name, dot, rest = text.partition(".")
        if not dot or "=" not in rest:
            raise ValueError(f"--generator-option needs NAME.KEY=VALUE, got {text!r}")
        options.setdefault(name, {}).update([parse_option(rest)])
    chosen = {"candidates": args.candidates, "max_atoms": args.max_atoms,
              "limit": args.limit_patterns if args.limit_patterns is not None else (20 if args.quick else None)}
    if args.candidates is not None:  # top-k of 1, 5, 10 that fit, and all the candidates
        if args.candidates < 1:
            raise ValueError(f"--candidates must be positive, got {args.candidates}")
        chosen["ks"] = tuple(sorted({k for k in (1, 5, 10) if k < args.candidates} | {args.candidates}))
    return GenerationSettings(generators=args.generators, plugins=args.plugins, seeds=seeds, quick=args.quick,
                              options=options, **{k: v for k, v in chosen.items() if v is not None})


def _training_settings(args) -> tuple[dict, dict, dict]:
    """Training settings, profile/peaks input settings, and images settings (simulator, options)."""
    names = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "optimizer", "patience", "precision",
             "heads", "balance", "label_smoothing", "train_limit", "time_budget")
    training = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.holdout_space_groups:
        try:
            held = [int(v) for v in args.holdout_space_groups.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--holdout-space-groups takes a count or space-group numbers, "
                             f"got {args.holdout_space_groups!r}") from None
        training["holdout_space_groups"] = held[0] if "," not in args.holdout_space_groups else held
    inputs = {"two_theta": tuple(args.two_theta) if args.two_theta else None, "shape": args.shape,
              "augment": args.augment, "intensity": args.intensity, "axis": args.axis,
              "caglioti": tuple(args.caglioti) if args.caglioti else None}
    images = dict(parse_option(o) for o in args.simulator_option)
    if args.simulator:
        images["simulator"] = args.simulator
    return training, {k: v for k, v in inputs.items() if v is not None}, images


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
    except BrokenPipeError:  # e.g. `xrdcore levels | head`
        return 0
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"xrdcore: error: {message}", file=sys.stderr)
        return 2
    return status or 0


def _plugins(args) -> None:
    from xrdcore import get_registry

    registry = get_registry()
    if args.json:
        print(json.dumps({"plugins": [p.to_dict() for p in registry.plugins.values()],
                          "warnings": registry.warnings}, indent=2))
        return
    for plugin in registry.plugins.values():
        tag = " (built-in)" if plugin.builtin else ""
        print(f"{plugin.name} {plugin.version or '?'}{tag}: {plugin.status}")
        kinds: dict[str, list[str]] = {}
        for c in plugin.components:
            kinds.setdefault(c.kind, []).append(registry.public_name(c))
        for kind, names in kinds.items():
            print(f"  {kind}: {', '.join(names)}")
        for error in plugin.errors:
            print(f"  error: {error}")
        for note in plugin.notes:
            print(f"  note: {note}")
        if args.debug:
            for tb in plugin.tracebacks:
                print("  " + tb.rstrip().replace("\n", "\n  "))
    for warning in registry.warnings:
        print(f"warning: {warning}")


def _list(args) -> None:
    from xrdcore import get_registry

    registry = get_registry()
    names = registry.names(args.kind, args.pattern)
    rows = [registry.get(args.kind, n) for n in names]
    if args.json:
        print(json.dumps([{"name": n, "qualified_name": c.qualified_name, "plugin": c.plugin,
                           "builtin": c.builtin, "description": c.description}
                          for n, c in zip(names, rows)], indent=2))
        return
    if not names:
        print(f"no {args.kind} match {args.pattern!r}" if args.pattern != "*" else f"no {args.kind} installed")
        return
    width = max(len(n) for n in names)
    for name, c in zip(names, rows):
        print(f"{name:<{width}}  [{c.plugin}]  {c.description}".rstrip())


def _labels(args) -> None:
    from xrdcore.crystal import level, level_names, space_group

    sg = space_group(args.space_group)
    rows = [(name, int(level(name).table[sg.number - 1]), level(name).classes[level(name).table[sg.number - 1]])
            for name in level_names()]
    if args.json:
        print(json.dumps({"number": sg.number, "symbol": sg.symbol, "full_symbol": sg.full_symbol,
                          "schoenflies": sg.schoenflies, "hall_number": sg.hall_number,
                          "levels": {n: {"index": i, "class": c} for n, i, c in rows}}, indent=2))
        return
    print(f"space group {sg.number}: {sg.symbol}  ({sg.full_symbol}; {sg.schoenflies})")
    width = max(len(name) for name in level_names())
    for name, index, cls in rows:
        print(f"  {name:<{width}} {index:>4}  {cls}")


def _levels(args) -> None:
    from xrdcore.crystal import level, level_names, space_groups

    if args.level is None:
        if args.json:
            print(json.dumps({n: {"classes": len(level(n)), "description": level(n).description}
                              for n in level_names()}, indent=2))
            return
        width = max(len(name) for name in level_names())
        for name in level_names():
            print(f"{name:<{width}} {len(level(name)):>4}  {level(name).description}")
        return
    lv = level(args.level)
    symbols = [sg.symbol for sg in space_groups()]
    classes = [{"index": i, "class": c, "space_groups": lv.members(i)} for i, c in enumerate(lv.classes)]
    if args.json:
        print(json.dumps({"level": lv.name, "description": lv.description, "classes": classes}, indent=2))
        return
    print(f"{lv.name}: {len(lv)} classes, {lv.description}")
    for row in classes:
        members = ", ".join(f"{n} {symbols[n - 1]}" for n in row["space_groups"])
        print(f"  {row['index']:>3}  {row['class']:<24} {members}")


def _simulate(args) -> None:
    from xrdcore.builtin.pxrd import PXRDSimulator
    from xrdcore.data.cif import read_structure
    from xrdcore.diffraction.pxrd import StructureError
    from xrdcore.storage import atomic_write_text

    structure = read_structure(args.cif)
    if args.images:
        _simulate_images(args, structure)
        if not (args.out or args.plot or args.peaks):
            return
    simulator = PXRDSimulator(wavelength=args.wavelength, two_theta=args.range, shape=args.shape)
    try:
        (peaks,) = simulator.peaks([structure])
    except StructureError as exc:
        raise StructureError(f"{args.cif}: {exc}") from None
    profile = simulator.render([peaks])[0].cpu().numpy()
    header = (f"# {structure.composition.reduced_formula} from {args.cif}; wavelength {simulator.wavelength} Å; "
              f"xrdcore pxrd\n")
    if args.peaks:
        lines = ["# 2theta_deg d_A intensity h k l multiplicity"]
        lines += [f"{t:.5f} {d:.5f} {i:.3f} {h} {k} {l} {m}"
                  for t, d, i, (h, k, l), m in zip(peaks.two_theta, peaks.d, peaks.intensity, peaks.hkl,
                                                   peaks.multiplicity)]
    else:
        lines = ["# 2theta_deg intensity"] + [f"{t:.4f} {y:.6g}" for t, y in zip(simulator.grid.values, profile)]
    text = header + "\n".join(lines) + "\n"
    if args.out:
        atomic_write_text(args.out, text)
    else:
        sys.stdout.write(text)
    if args.plot:
        from xrdcore.diffraction.plot import plot_profile

        plot_profile(args.plot, simulator.grid.values, profile, peaks,
                     title=f"{structure.composition.reduced_formula}, {simulator.wavelength:.5f} Å")


def _simulate_images(args, structure) -> None:
    from xrdcore import get_registry
    from xrdcore.diffraction.plot import plot_images
    from xrdcore.train.inputs import images_input

    images = dict(parse_option(o) for o in args.simulator_option)
    if args.simulator:
        images["simulator"] = args.simulator
    spec = images_input(get_registry(), images)
    simulator = spec.create_simulator()
    try:
        (views,) = simulator.simulate([structure])
    except Exception as exc:
        raise ValueError(f"{args.cif}: simulator {spec.simulator!r} failed: {exc}") from exc
    titles = getattr(simulator, "view_titles", None) or [f"view {v + 1}" for v in range(len(views))]
    plot_images(args.images, views.cpu().numpy() if hasattr(views, "cpu") else views, titles=list(titles),
                title=f"{structure.composition.reduced_formula}: {spec.simulator} "
                      + ", ".join(f"{k}={v}" for k, v in spec.simulator_options))
    print(f"images: {args.images}")


def _data_build(args) -> None:
    from pathlib import Path

    from xrdcore.data.cache import BuildSpec, build_cache, resolve_dataset, summarise

    name, options = resolve_dataset(args.dataset, dict(parse_option(o) for o in args.option))
    spec = BuildSpec(name, options, limit=args.limit, symprec=args.symprec, disorder=args.disorder,
                     seed=args.seed, wavelength=args.wavelength, two_theta_range=tuple(args.range))
    cache = build_cache(args.out, spec, workers=args.workers, chunk_size=args.chunk, progress=not args.quiet)
    info = summarise(cache)
    print(f"{args.out}: {info['structures']} structures of {info['dataset']} "
          f"(train {info['splits']['train']}, val {info['splits']['val']}, test {info['splits']['test']}); "
          f"{info['rejected']} rejected, {info['duplicates_removed']} duplicates removed, "
          f"{info['simulation_failures']} simulation failures; split {info['split_hash'][:19]}...; "
          f"report in {Path(args.out) / 'report.json'}")


def _data_export(args) -> None:
    from xrdcore.data.export import export_cache

    summary = export_cache(args.dir, args.file)
    print(f"{args.file}: {summary['structures']} structures, {summary['peaks']:,} peaks, "
          f"{summary['bytes'] / 2**20:.1f} MiB (sha256 {summary['sha256'][:16]}...)")


def _data_import(args) -> None:
    from xrdcore.data.export import import_cache

    cache = import_cache(args.file, args.dir)
    counts = cache.describe()["split_counts"]
    print(f"{args.dir}: {len(cache)} structures of {cache.manifest['spec']['dataset']} (train {counts['train']}, "
          f"val {counts['val']}, test {counts['test']}); split {cache.manifest['split_hash'][:19]}...")


def parse_option(text: str) -> tuple[str, object]:
    """``key=value`` with the value read as JSON when it is JSON (numbers, true, lists), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--option needs KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _data_info(args) -> None:
    from xrdcore.data.cache import PeakCache, summarise

    info = summarise(PeakCache(args.dir))
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"{info['path']}: {info['structures']} structures of {info['dataset']}")
    print("  splits: " + ", ".join(f"{k} {v}" for k, v in info["splits"].items()) + f"  ({info['split_hash']})")
    print(f"  rejected {info['rejected']}, duplicates removed {info['duplicates_removed']}, "
          f"simulation failures {info['simulation_failures']}")
    for name in ("crystal_system", "bravais", "point_group"):
        print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in info[name].items()))
    print("  space groups: " + ", ".join(f"{k} ({v})" for k, v in info["space_groups"].items()))


def _open_data(args):
    from xrdcore.data.cache import open_dataset

    return open_dataset(args.dataset, args.data_dir, limit=args.limit, workers=args.workers,
                        progress=not args.quiet)


def _train(args) -> None:
    from xrdcore import get_registry
    from xrdcore.train import InputSpec, TrainConfig, train
    from xrdcore.train.inputs import images_input

    training, inputs, images = _training_settings(args)
    registry = get_registry()
    encoder_options = {**registry.get("encoder", args.encoder).size_options(args.size or "full"),
                       **dict(parse_option(o) for o in args.encoder_option)}
    kind = getattr(registry.get("encoder", args.encoder).load(), "input_kind", "profile")
    spec = images_input(registry, images) if kind == "images" else InputSpec(kind=kind, **inputs)
    config = TrainConfig(args.encoder, hierarchy=args.hierarchy, scheduler=args.scheduler,
                         encoder_options=encoder_options,
                         hierarchy_options=dict(parse_option(o) for o in args.hierarchy_option),
                         scheduler_options=dict(parse_option(o) for o in args.scheduler_option),
                         input=spec, seed=args.seed, **training)
    result = train(config, _open_data(args), args.out, device=args.device, progress=not args.quiet)
    test = result["test"]
    print(f"{args.out}: best epoch {result['best_epoch']} of {result['epochs_run']}; test top-1 {test['top1']:.3f}, "
          f"top-5 {test['top5']:.3f}, macro-F1 {test['macro_f1']:.3f} ({test['n']} structures); "
          f"{result['samples_per_s']:.0f} samples/s; metrics in {args.out}/metrics.json")


def parse_variant(text: str) -> tuple[str, tuple[str, dict]]:
    """``LABEL=ENCODER[,KEY=VALUE...]`` as (label, (encoder, options)); the encoder may be qualified
    (``xrd-mamba:mamba``) and a value may be JSON with commas (``channels=[8,16]``): items are split
    only before ``KEY=``."""
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise ValueError(f"--variant needs LABEL=ENCODER[,KEY=VALUE...], got {text!r}")
    encoder, *options = re.split(r",(?=[A-Za-z_][\w.]*=)", rest)
    return label, (encoder, dict(parse_option(o) for o in options))


def _bench(args) -> None:
    from pathlib import Path

    from xrdcore import get_registry
    from xrdcore.bench.harness import BenchSettings, run_bench
    from xrdcore.bench.report import leaderboard

    training, inputs, images = _training_settings(args)
    seeds = args.seeds if not (args.quick and args.seeds == "0,1,2") else "0"
    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    cache = _open_data(args)
    if args.task in ("all", "classification"):
        settings = BenchSettings(plugins=args.plugins, encoders=args.encoders, hierarchies=args.hierarchies,
                                 schedulers=args.schedulers, variants=dict(parse_variant(v) for v in args.variant),
                                 seeds=seed_list, quick=args.quick, size=args.size or "full", training=training,
                                 input=inputs, images=images)
        results = run_bench(cache, args.out, settings, device=args.device, resume=args.resume,
                            shard=args.shard, progress=not args.quiet, command=sys.argv)
        board = leaderboard(results)
        failed = sum(r["status"] == "failed" for r in results["runs"])
        print(Path(args.out, "results.md").read_text() if board else "no finished runs")
        print(f"{len(results['runs'])} combinations ({failed} failed, {len(results['skipped'])} skipped); "
              f"results in {args.out}/results.json, results.md and plots/")
    if args.task in ("all", "generation"):
        from xrdcore.bench.generation import run_generation_bench

        registry = get_registry()
        if args.task == "all" and not registry.names("generator"):
            print("generation: no generators installed (e.g. pip install xrd-xtalnet); skipped")
            return
        out = Path(args.out) / "generation" if args.task == "all" else Path(args.out)
        generation = run_generation_bench(cache, out, _generation_settings(args, seed_list), device=args.device,
                                          resume=args.resume, progress=not args.quiet, command=sys.argv)
        failed = sum(s["status"] == "failed" for r in generation["runs"] for s in r["seeds"].values())
        print((out / "results.md").read_text())
        print(f"{len(generation['runs'])} generators ({failed} failed runs); results in {out}/results.json and "
              f"results.md")


def _train_generator(args) -> None:
    from xrdcore import get_registry
    from xrdcore.bench.generation import merge_options
    from xrdcore.generation import fit_generator

    registry = get_registry()
    options = merge_options(registry.get("generator", args.generator).tiny if args.tiny else {},
                            dict(parse_option(o) for o in args.generator_option))
    fit_generator(args.generator, _open_data(args), args.out, options=options, seed=args.seed, device=args.device,
                  progress=not args.quiet, registry=registry)
    print(f"{args.out}: generator {args.generator} fitted; use it with xrdcore generate {args.out} PATTERN "
          f"--composition FORMULA --out DIR")


def _generate(args) -> None:
    from xrdcore.generation import generate

    rows = generate(args.run_dir, args.pattern, args.composition, args.n, args.out, device=args.device)
    valid = [r for r in rows if r["valid"]]
    print(f"{len(valid)} of {len(rows)} candidates are valid crystals; ranked CIFs and ranking.json in {args.out}")
    for row in valid[:10]:
        print(f"  {row['rank']:3d}  score {row['score']:.3f}  space group {row['space_group']:3d}  {row['file']}")


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
