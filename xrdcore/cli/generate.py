"""Pattern-conditioned structure generation: ``train-generator``, ``generate``, and the generation
task of ``bench``."""

from __future__ import annotations

import sys
from pathlib import Path

from xrdcore.cli.options import (component_options, data_arguments, device_argument, open_data, parse_option,
                                 parse_options)


#: the commands of this module and their one-line help (also what `xrdcore --help` lists)
COMMANDS = {
    "train-generator": "fit one pattern-conditioned structure generator",
    "generate": "candidate structures for a measured pattern from a generator run",
}


def add_commands(commands) -> None:
    p = commands.add_parser("train-generator", help=COMMANDS["train-generator"])
    data_arguments(p)
    p.add_argument("generator", help="a registered generator, e.g. xtalnet or pyxtal-random")
    p.add_argument("--out", required=True, help="generator run directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="the generator's registered tiny variant")
    component_options(p, "generator")
    p.set_defaults(run=_train_generator)

    p = commands.add_parser("generate", help=COMMANDS["generate"])
    p.add_argument("run_dir", help="a generator run directory (xrdcore train-generator, or bench runs/)")
    p.add_argument("pattern", help="measured pattern: 2θ in degrees and intensity (.xy, .xye, .csv, .txt, .dat)")
    p.add_argument("--composition", required=True, help="the cell content, e.g. Zn4O13C24H12")
    p.add_argument("-n", type=int, default=20, help="candidates to draw (default 20)")
    p.add_argument("--out", required=True, help="new directory for the ranked CIFs and ranking.json")
    device_argument(p, "cpu")
    p.set_defaults(run=_generate)


def generation_arguments(p) -> None:
    """Settings of the generation task of ``bench`` (xrdcore.bench.generation.GenerationSettings)."""
    p.add_argument("--generators", default="*", help="names or globs, comma-separated (default all)")
    p.add_argument("--candidates", type=int, help="candidates per test pattern (default 10)")
    p.add_argument("--max-atoms", type=int, help="score test structures with at most this many atoms (default 20)")
    p.add_argument("--limit-patterns", type=int, help="score only the first N test patterns (--quick: 20)")
    p.add_argument("--generator-option", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="an argument of one generator, e.g. xtalnet.steps=100 (repeatable)")


def generation_settings(args, seeds: tuple[int, ...]):
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


def generation_bench(args, cache, seeds: tuple[int, ...]) -> None:
    """The generation task of ``xrdcore bench``, in OUT/generation with ``--task all``."""
    from xrdcore import get_registry
    from xrdcore.bench.generation import run_generation_bench

    if args.task == "all" and not get_registry().names("generator"):
        print("generation: no generators installed (e.g. pip install xrd-xtalnet); skipped")
        return
    out = Path(args.out) / "generation" if args.task == "all" else Path(args.out)
    generation = run_generation_bench(cache, out, generation_settings(args, seeds), device=args.device,
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
                            parse_options(args.generator_option))
    fit_generator(args.generator, open_data(args), args.out, options=options, seed=args.seed, device=args.device,
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
