"""``train`` one encoder × hierarchy × scheduler, or ``bench`` every valid combination; both build
their runs with :func:`xrdcore.train.run_config`."""

from __future__ import annotations

import sys
from pathlib import Path

from xrdcore import validate
from xrdcore.cli.options import (component_options, data_arguments, open_data, parse_options, parse_variant,
                                 size_argument, training_arguments, training_settings)


#: the commands of this module and their one-line help (also what `xrdcore --help` lists)
COMMANDS = {
    "train": "train and score one encoder × hierarchy × scheduler",
    "bench": "train and score every valid combination of installed components",
}


def add_commands(commands) -> None:
    p = commands.add_parser("train", help=COMMANDS["train"])
    data_arguments(p)
    p.add_argument("--encoder", required=True, help="a registered encoder, e.g. rcnet or xrd-mamba:mamba")
    p.add_argument("--hierarchy", help="label hierarchy (default: the registry's, flat)")
    p.add_argument("--scheduler", help="loss scheduler (default: the registry's, sum)")
    p.add_argument("--out", required=True, help="run directory (an interrupted run resumes from it)")
    training_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    size_argument(p, "the encoder")
    for kind in ("encoder", "hierarchy", "scheduler"):
        component_options(p, kind)
    p.set_defaults(run=_train)

    p = commands.add_parser("bench", help=COMMANDS["bench"])
    data_arguments(p)
    p.add_argument("--plugins", default="all", help="'all' or plugin names, comma-separated (built-ins always run)")
    for kinds in ("encoders", "hierarchies", "schedulers"):
        p.add_argument(f"--{kinds}", default="*", help="names or globs, comma-separated (default all)")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=ENCODER[,KEY=VALUE...]",
                   help="an extra encoder under a new label, e.g. mamba-no-ssm=mamba,ssm=false (repeatable)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2; --quick: 0)")
    size_argument(p, "every encoder")
    p.add_argument("--quick", action="store_true", help="tiny variants, 3 epochs: a smoke run of the "
                   "whole grid in minutes on a CPU")
    p.add_argument("--out", required=True, help="benchmark directory")
    p.add_argument("--resume", action="store_true", help="continue the benchmark in --out, skipping finished runs")
    p.add_argument("--shard", help="k/n: run only every n-th run of the grid, starting at k (0 <= k < n)")
    p.add_argument("--task", choices=["all", "classification", "generation"], default="all",
                   help="space-group classification (encoders × hierarchies × schedulers), pattern-conditioned "
                   "generation (generators: retrieval and match rate, in OUT/generation), or both (default)")
    training_arguments(p)
    from xrdcore.cli.generate import generation_arguments

    generation_arguments(p)
    p.set_defaults(run=_bench)


def _train(args) -> None:
    from xrdcore.train import run_config, train

    config = run_config(args.encoder, hierarchy=args.hierarchy, scheduler=args.scheduler, size=args.size or "full",
                        encoder_options=parse_options(args.encoder_option),
                        hierarchy_options=parse_options(args.hierarchy_option),
                        scheduler_options=parse_options(args.scheduler_option), seed=args.seed,
                        **training_settings(args))
    result = train(config, open_data(args), args.out, device=args.device, progress=not args.quiet)
    test = result["test"]
    print(f"{args.out}: best epoch {result['best_epoch']} of {result['epochs_run']}; test top-1 {test['top1']:.3f}, "
          f"top-5 {test['top5']:.3f}, macro-F1 {test['macro_f1']:.3f} ({test['n']} structures); "
          f"{result['samples_per_s']:.0f} samples/s; metrics in {args.out}/metrics.json")


def _seeds(args) -> tuple[int, ...]:
    seeds = args.seeds if not (args.quick and args.seeds == "0,1,2") else "0"
    try:
        return validate.seeds(tuple(int(s) for s in seeds.split(",") if s.strip()), "--seeds")
    except ValueError:
        raise ValueError(f"--seeds must be distinct comma-separated integers >= 0, got {args.seeds!r}") from None


def _bench(args) -> None:
    from xrdcore.bench.harness import BenchSettings, run_bench
    from xrdcore.bench.report import leaderboard

    seeds, cache = _seeds(args), open_data(args)
    if args.task in ("all", "classification"):
        settings = BenchSettings(plugins=args.plugins, encoders=args.encoders, hierarchies=args.hierarchies,
                                 schedulers=args.schedulers, variants=dict(parse_variant(v) for v in args.variant),
                                 seeds=seeds, quick=args.quick, size=args.size or "full", **training_settings(args))
        results = run_bench(cache, args.out, settings, device=args.device, resume=args.resume,
                            shard=args.shard, progress=not args.quiet, command=sys.argv)
        board = leaderboard(results)
        failed = sum(r["status"] == "failed" for r in results["runs"])
        print(Path(args.out, "results.md").read_text() if board else "no finished runs")
        print(f"{len(results['runs'])} combinations ({failed} failed, {len(results['skipped'])} skipped); "
              f"results in {args.out}/results.json, results.md and plots/")
    if args.task in ("all", "generation"):
        from xrdcore.cli.generate import generation_bench

        generation_bench(args, cache, seeds)
