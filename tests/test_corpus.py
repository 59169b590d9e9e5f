"""The corpus of malformed and unusual inputs (tests/corpus/): every case of cases.toml through the
real command line, as a user meets it. A case is refused with exit status 2 and one line
"xrdcore: error: ..." matching its message, or accepted with its known answer (a CIF's spglib space
group, words of the printout); never a traceback, a signal or more time than the case allows.
Cases marked ``subprocess`` run in a child process, where a segmentation fault or an abort shows
as a signal; there is at least one per kind. Inputs are made by tests/corpus/make_corpus.py."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

CORPUS = Path(__file__).with_name("corpus")
CASES = tomllib.loads((CORPUS / "cases.toml").read_text())["case"]
KINDS = ("cifs", "patterns", "options", "runs", "models", "exports")
#: the one line of a refusal: the command's own error, or argparse's for an option it cannot parse
REFUSAL = re.compile(r"^xrdcore(?: [\w-]+)*: error: ")


def test_the_corpus_is_complete():
    """At least 80 cases, ids unique, of the known kinds, each kind with a subprocess case, and every
    input file of the corpus used by a case (a file nobody runs protects nothing)."""
    ids = [case["id"] for case in CASES]
    assert len(ids) >= 80 and len(set(ids)) == len(ids)
    assert {case["kind"] for case in CASES} == set(KINDS)
    for kind in KINDS:
        assert any(c.get("subprocess") for c in CASES if c["kind"] == kind), f"no subprocess case for {kind}"
    used = " ".join(" ".join(case.get("argv", [])) + " " + case.get("path", "") for case in CASES)
    for path in CORPUS.glob("*/*"):
        if path.parent.name in KINDS:
            assert f"{{corpus}}/{path.parent.name}/{path.name}" in used, f"{path} is used by no case"


def _expand(text: str, values: dict[str, str]) -> str:
    return text.format(**values)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_case(case, tmp_path, request, capsys):
    if case.get("pending"):
        pytest.xfail(f"pending: {case['pending']}")
    values = {"corpus": str(CORPUS), "tmp": str(tmp_path)}
    if any("{run}" in arg for arg in case.get("argv", [])):
        values["run"] = str(request.getfixturevalue("tiny_run"))
    started = time.perf_counter()
    if "api" in case:
        status, out, err = _api(case, values)
    else:
        argv = [_expand(arg, values) for arg in case["argv"]]
        status, out, err = _subprocess(argv, case) if case.get("subprocess") else _in_process(argv, capsys)
    seconds = time.perf_counter() - started
    described = f"{case['id']}: exit {status}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert "Traceback" not in out + err, described
    assert status == case["status"], described
    assert seconds <= case.get("max_seconds", 30), f"{case['id']} took {seconds:.1f} s"
    if case["status"] == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and REFUSAL.match(lines[0]), described
        assert re.search(case["message"], lines[0]), f"message {case['message']!r} not in: {lines[0]}"
    else:
        for key, text in (("stdout", out), ("stderr", err)):
            if key in case:
                assert re.search(case[key], text), f"{case['id']}: {case[key]!r} not in {key}:\n{text[-3000:]}"
    if "space_group" in case:
        _check_space_group(case, values)


def _in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    from xrdcore.cli import main

    try:
        status = main(argv)
    except SystemExit as exc:  # argparse
        status = exc.code if isinstance(exc.code, int) else 2
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _subprocess(argv: list[str], case: dict) -> tuple[int, str, str]:
    """The command in a child process: a crash in a C extension is a negative status (the signal)."""
    command = [sys.executable, "-m", "xrdcore", *argv] if "api" not in case else argv
    result = subprocess.run(command, capture_output=True, text=True, timeout=case.get("max_seconds", 30) + 30)
    assert result.returncode >= 0, f"killed by signal {-result.returncode}: {shlex.join(command)}\n{result.stderr}"
    return result.returncode, result.stdout, result.stderr


def _api(case: dict, values: dict[str, str]) -> tuple[int, str, str]:
    """Inputs without a command of their own (a model package folder), through their Python API,
    in process or in a child process (this file run as a script), reported like the command line."""
    path = _expand(case["path"], values)
    if case.get("subprocess"):
        return _subprocess([sys.executable, __file__, case["api"], path], case)
    return _run_api(case["api"], path)


def _run_api(api: str, path: str) -> tuple[int, str, str]:
    """``model``: what ``xrdcore models`` and ``predict --model`` do with a package folder: read the
    card, check its files and the weights' sha256, summarise it."""
    import json

    from xrdcore.zoo import PretrainedModel

    assert api == "model", api
    try:
        model = PretrainedModel.from_folder(path)
        problems = model.contract_errors()
        if problems:
            return 2, "", f"xrdcore: error: {problems[0]}\n"
        return 0, json.dumps(model.summary()) + "\n", ""
    except ValueError as exc:
        return 2, "", f"xrdcore: error: {str(exc).splitlines()[0]}\n"


def _check_space_group(case: dict, values: dict[str, str]) -> None:
    """The known answer of an accepted CIF: spglib's space group of the structure read."""
    from xrdcore.data.cif import read_structure
    from xrdcore.data.labels import space_group_number

    path = _expand(case["argv"][1], values)
    assert space_group_number(read_structure(path)) == case["space_group"], case["id"]


if __name__ == "__main__":  # the child process of an api case with subprocess = true
    status, out, err = _run_api(sys.argv[1], sys.argv[2])
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.exit(status)
