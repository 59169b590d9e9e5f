"""``data build|export|import|info``: cached data sets (labelled, de-duplicated, split, simulated)."""

from __future__ import annotations

import json

from xrdcore.cli.options import json_flag, parse_options


#: the commands of this module and their one-line help (also what `xrdcore --help` lists)
COMMANDS = {
    "data": "build and inspect cached data sets",
}


def add_commands(commands) -> None:
    from xrdcore.cli import _Parser

    data = commands.add_parser("data", help=COMMANDS["data"]).add_subparsers(
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
    p.add_argument("--range", nargs=2, type=float, metavar=("START", "STOP"),
                   help="2θ range of the peak lists, degrees (default: the default grid's)")
    p.add_argument("--chunk", type=int, default=256, help="structures per cache chunk")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_data_build)
    p = data.add_parser("export", help="a built cache's labels, split and peak lists in one compact file "
                        "(no structures; loads without pymatgen)")
    p.add_argument("dir", help="a complete cache directory")
    p.add_argument("file", help="the file to write, e.g. coremof.xrdexport")
    p.add_argument("--min-intensity", type=float, metavar="PERCENT", help="leave out peaks weaker than this "
                   "percentage of each pattern's strongest (a smaller file of other data: its key says so)")
    p.set_defaults(run=_data_export)
    p = data.add_parser("import", help="unpack a file of `xrdcore data export` into a new cache directory")
    p.add_argument("file")
    p.add_argument("dir", help="a new or empty directory")
    p.set_defaults(run=_data_import)
    p = data.add_parser("info", help="counts per space group and level, duplicates, split sizes and hash")
    p.add_argument("dir")
    json_flag(p)
    p.set_defaults(run=_data_info)


def _data_build(args) -> None:
    from pathlib import Path

    from xrdcore.data.cache import BuildSpec, build_cache, resolve_dataset, summarise

    from xrdcore import validate

    # named as the user typed them; BuildSpec and build_cache check the same for the Python API
    validate.optional_positive_int("--limit", args.limit)
    validate.workers(args.workers, "--workers")
    validate.positive_int("--chunk", args.chunk)
    validate.symprec(args.symprec, "--symprec")
    validate.seed(args.seed, "--seed")
    name, options = resolve_dataset(args.dataset, parse_options(args.option))
    spec = BuildSpec(name, options, limit=args.limit, symprec=args.symprec, disorder=args.disorder,
                     seed=args.seed, wavelength=args.wavelength,
                     **({"two_theta_range": tuple(args.range)} if args.range else {}))
    cache = build_cache(args.out, spec, workers=args.workers, chunk_size=args.chunk, progress=not args.quiet)
    info = summarise(cache)
    print(f"{args.out}: {info['structures']} structures of {info['dataset']} "
          f"(train {info['splits']['train']}, val {info['splits']['val']}, test {info['splits']['test']}); "
          f"{info['rejected']} rejected, {info['duplicates_removed']} duplicates removed, "
          f"{info['simulation_failures']} simulation failures; split {info['split_hash'][:19]}...; "
          f"report in {Path(args.out) / 'report.json'}")


def _data_export(args) -> None:
    from xrdcore.data.export import export_cache

    summary = export_cache(args.dir, args.file, min_intensity=args.min_intensity)
    print(f"{args.file}: {summary['structures']} structures, {summary['peaks']:,} peaks, "
          f"{summary['bytes'] / 2**20:.1f} MiB (sha256 {summary['sha256'][:16]}...)")


def _data_import(args) -> None:
    from xrdcore.data.export import import_cache

    cache = import_cache(args.file, args.dir)
    counts = cache.describe()["split_counts"]
    print(f"{args.dir}: {len(cache)} structures of {cache.manifest['spec']['dataset']} (train {counts['train']}, "
          f"val {counts['val']}, test {counts['test']}); split {cache.manifest['split_hash'][:19]}...")


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
