"""The ``xrdcore`` command: one module per group of commands, each adding its subcommands with
:func:`add_commands`. Errors exit with status 2 and one line; ``--debug`` shows the traceback.

Modules import only argparse at start-up; what a command needs is imported when it runs, so
``xrdcore list`` and ``--help`` stay fast."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from xrdcore.cli import components, data, generate, predict, simulate, train

#: the command groups, in the order ``xrdcore --help`` lists them
GROUPS = (components, simulate, data, train, generate, predict)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """``--version``, looked up only when asked for."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        import xrdcore

        parser.exit(message=f"xrdcore {xrdcore.__version__}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command``, only the group of that command (a start-up of a few
    milliseconds less), and with ``""`` every command's name and help but no options (``--help``,
    or an unknown command's error)."""
    parser = _Parser(prog="xrdcore", description="Deep learning on diffraction data: plugins, "
                     "crystallographic labels, training and benchmarks.")
    parser.add_argument("--version", action=_Version)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--no-plugin", action="append", default=[], metavar="NAME",
                        help="do not load this plugin (repeatable; also XRDCORE_DISABLE=a,b)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    chosen = [g for g in GROUPS if command is None or command in g.COMMANDS]
    for group in GROUPS:
        if group in chosen:
            group.add_commands(commands)
        elif not chosen:
            for name, text in group.COMMANDS.items():
                commands.add_parser(name, help=text)
    return parser


def _command(argv: Sequence[str]) -> str:
    """The command word of ``argv`` ("" if there is none, e.g. ``xrdcore --help``)."""
    words = iter(argv)
    for word in words:
        if word == "--no-plugin":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)
    try:
        if args.no_plugin:  # read by the registry when it is first loaded, as if set by the user
            disabled = [n for n in os.environ.get("XRDCORE_DISABLE", "").split(",") if n.strip()]
            os.environ["XRDCORE_DISABLE"] = ",".join(disabled + args.no_plugin)
        status = args.run(args)
    except BrokenPipeError:  # e.g. `xrdcore levels | head`
        return 0
    except Exception as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"xrdcore: error: {message}", file=sys.stderr)
        return 2
    return status or 0
