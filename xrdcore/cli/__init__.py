"""The ``xrdcore`` command: one module per group of commands, each adding its subcommands with
:func:`add_commands`. Errors exit with status 2 and one line; ``--debug`` shows the traceback.

Modules import only argparse at start-up; what a command needs is imported when it runs, so
``xrdcore list`` and ``--help`` stay fast."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from xrdcore.cli import components, data, generate, predict, simulate, train

#: the command groups, in the order ``xrdcore --help`` lists them
GROUPS = (components, simulate, data, train, generate, predict)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from xrdcore import __version__

    parser = _Parser(prog="xrdcore", description="Deep learning on diffraction data: plugins, "
                     "crystallographic labels, training and benchmarks.")
    parser.add_argument("--version", action="version", version=f"xrdcore {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--no-plugin", action="append", default=[], metavar="NAME",
                        help="do not load this plugin (repeatable; also XRDCORE_DISABLE=a,b)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in GROUPS:
        group.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.no_plugin:  # read by the registry when it is first loaded, as if set by the user
            disabled = [n for n in os.environ.get("XRDCORE_DISABLE", "").split(",") if n.strip()]
            os.environ["XRDCORE_DISABLE"] = ",".join(disabled + args.no_plugin)
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
