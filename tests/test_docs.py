"""Every code block of docs/ and README.md runs here, so the documentation cannot drift from the code.

* ``python`` blocks run in order, one namespace per page (as a reader would paste them), in a
  subprocess whose working directory is a scratch folder, with the example plugin of
  docs/examples/xrd-example visible as an installed distribution (its ``src`` on the path and
  a ``.dist-info`` with its entry points: how an editable install looks to the registry).
* ``console`` and ``bash`` blocks: every ``xrdcore`` command is parsed by the real parser and
  its component names are looked up in the registry; the commands that are quick on any machine
  (listing, labels, levels, models, help) also run and must exit 0. Long commands (training on
  CoRE MOF, GPU runs) are not run here: the features behind them have their own tests.
  ``pip install -e PATH`` must name a folder of this repository, ``python FILE`` a file, and
  ``make TARGET`` a target of the Makefile.
* ``toml`` blocks must parse; unlabelled blocks are folder layouts and printed output, not code.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
EXAMPLE = ROOT / "docs" / "examples" / "xrd-example"
BLOCK = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```", re.S | re.M)
#: xrdcore commands that finish in seconds anywhere: run, not only parsed
QUICK = {"labels", "levels", "list", "plugins", "models"}


def blocks(path: Path, language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(path.read_text()) if lang == language]


def shell_lines(body: str, prompts: bool = False) -> list[list[str]]:
    """The commands of a shell block: with ``prompts`` (console blocks) the ``$ `` lines, the rest
    being printed output; else every line. Comments and continuation backslashes are handled as a
    shell would."""
    lines, pending = [], ""
    for raw in body.splitlines():
        line = raw.rstrip()
        if pending:
            pass
        elif prompts and not line.startswith("$ "):
            continue
        line = line[2:] if line.startswith("$ ") and not pending else line
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        words = shlex.split(pending + line, comments=True)
        pending = ""
        if words:
            lines.append(words)
    return lines


def pages_with(language: str) -> list[Path]:
    return [p for p in DOCS if blocks(p, language)]


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture(scope="module")
def example_installed(tmp_path_factory) -> dict[str, str]:
    """An environment in which the example plugin is installed the way ``pip install -e`` does
    it: its sources importable and a ``.dist-info`` with its metadata and entry points."""
    site = tmp_path_factory.mktemp("site")
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    groups = project.get("entry-points", {})
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) + "\n" for group, points in groups.items()))
    path = os.pathsep.join([str(site), str(EXAMPLE / "src"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "XRDCORE_STRICT": "1"}


@pytest.mark.parametrize("page", pages_with("python"), ids=_name)
def test_python_blocks_run(page, example_installed, tmp_path):
    script = "\n\n".join(textwrap.dedent(b) for b in blocks(page, "python"))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=example_installed,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{_name(page)}: a python block failed:\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def registry():
    """The installed components plus the example plugin's, as the docs' readers have them."""
    import importlib

    from xrdcore.registry import Registry

    sys.path.insert(0, str(EXAMPLE / "src"))
    try:
        registry = Registry()
        registry.add_plugin("xrd-example", importlib.import_module("xrd_example.plugin"))
    finally:
        sys.path.remove(str(EXAMPLE / "src"))
    return registry


def _check_xrdcore(words: list[str], page: Path, registry, tmp_path: Path, env: dict[str, str]) -> None:
    from xrdcore.cli import _command, build_parser

    try:
        args = build_parser(_command(words)).parse_args(words)
    except SystemExit:
        pytest.fail(f"{_name(page)}: `xrdcore {shlex.join(words)}` is not a valid command (see above)")
    names = {"encoder": [getattr(args, "encoder", None)], "label_hierarchy": [getattr(args, "hierarchy", None)],
             "loss_scheduler": [getattr(args, "scheduler", None)]}
    if args.command == "bench":
        for kind, option in (("encoder", "encoders"), ("label_hierarchy", "hierarchies"),
                             ("loss_scheduler", "schedulers")):
            names[kind] += [n for n in getattr(args, option).split(",") if not any(c in n for c in "*?[")]
    for kind, listed in names.items():
        for name in filter(None, listed):
            registry.get(kind, name)  # an unknown name fails with its close matches
    if args.command in QUICK:
        done = subprocess.run([sys.executable, "-m", "xrdcore", *words], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{_name(page)}: `xrdcore {shlex.join(words)}` failed: {done.stderr[-2000:]}"


@pytest.mark.parametrize("page", [p for p in DOCS if blocks(p, "console") or blocks(p, "bash")], ids=_name)
def test_commands_are_valid(page, registry, example_installed, tmp_path):
    makefile = (ROOT / "Makefile").read_text()
    for body, prompts in [(b, True) for b in blocks(page, "console")] + [(b, False) for b in blocks(page, "bash")]:
        for words in shell_lines(body, prompts):
            while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value cmd
                words = words[1:]
            program, rest = Path(words[0]).name, words[1:]
            if program == "xrdcore":
                _check_xrdcore(rest, page, registry, tmp_path, example_installed)
            elif program in ("python", "python3") and rest and rest[0].endswith(".py"):
                assert (ROOT / rest[0]).is_file(), f"{_name(page)}: no file {rest[0]}"
            elif program == "pip" and rest[:2] == ["install", "-e"]:
                target = rest[2].split("[")[0]
                assert target == "." or (ROOT / target).is_dir(), f"{_name(page)}: no folder {target}"
            elif program == "make":
                for target in rest:
                    assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{_name(page)}: no make {target}"


@pytest.mark.parametrize("page", pages_with("toml"), ids=_name)
def test_toml_blocks_parse(page):
    for body in blocks(page, "toml"):
        tomllib.loads(body)


def test_shell_lines_reads_prompts_comments_and_continuations():
    body = "$ xrdcore list encoders   # all of them\n  cnn  [xrdcore] ...\n$ xrdcore train \\\n  --encoder mlp\n"
    assert shell_lines(body, prompts=True) == [["xrdcore", "list", "encoders"], ["xrdcore", "train", "--encoder", "mlp"]]
