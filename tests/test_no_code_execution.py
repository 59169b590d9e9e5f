"""Artefacts cannot run code: no source file of xrdcore or of a plugin reads anything through pickle
(or its relatives), ``torch.load`` without ``weights_only=True``, TorchScript, ``allow_pickle=True``
or the ``eval``/``exec`` builtins; read from the syntax tree, so that the words in comments and
docstrings ("nothing is unpickled") are no finding and an alias (``import torch as t``, ``from
torch import load``) is one. Files that claim sizes they do not have are refused before anything is
allocated: a checkpoint or an export whose header claims 100 GB, an export array declared larger
than the limit or lying beyond the end of the file. An import writes only inside its directory,
whatever ids and paths a forged export holds.
"""

from __future__ import annotations

import ast
import json
import struct
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: modules whose loading runs code stored in the data
PICKLING = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}


def sources() -> list[Path]:
    files = sorted((REPO / "xrdcore").rglob("*.py"))
    files += sorted(p for plugin in sorted((REPO / "plugins").iterdir()) for p in (plugin / "src").rglob("*.py"))
    return files


def findings(source: str, name: str = "<source>") -> list[str]:
    """Every place in ``source`` that can load code from data, as ``name:line: what``."""
    tree = ast.parse(source, name)
    torch_names = {"torch"}  # names bound to the torch module
    loaders = set()  # names bound to torch.load / torch.jit.load
    found = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{name}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PICKLING:
                    report(node, f"imports {alias.name}")
                if alias.name == "torch":
                    torch_names.add(alias.asname or "torch")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PICKLING:
                report(node, f"imports from {node.module}")
            if node.module in ("torch", "torch.serialization", "torch.jit"):
                loaders |= {alias.asname or alias.name for alias in node.names if alias.name == "load"}
            if node.module == "pandas" and any(alias.name == "read_pickle" for alias in node.names):
                report(node, "imports pandas.read_pickle")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("read_pickle", "load_pickle"):
            report(node, f"uses .{node.attr}")
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg == "allow_pickle" and not (isinstance(keyword.value, ast.Constant)
                                                      and keyword.value.value is False):
                report(node, "allow_pickle is not False")
        function = node.func
        dotted = ast.unparse(function)
        head = dotted.split(".")[0]
        names_pickling = any(isinstance(a, ast.Constant) and str(a.value).split(".")[0] in PICKLING
                             for a in node.args)
        if isinstance(function, ast.Name) and function.id in ("eval", "exec"):
            report(node, f"calls {function.id}")
        if names_pickling and (dotted == "__import__" or dotted.endswith("import_module")):
            report(node, "imports a pickling module by name")
        is_torch_load = (dotted in loaders or (head in torch_names and dotted.split(".", 1)[-1] in
                                               ("load", "serialization.load")))
        if head in torch_names and dotted.split(".", 1)[-1] == "jit.load":
            report(node, "loads TorchScript (code)")
        elif is_torch_load and not any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
                                       and k.value.value is True for k in node.keywords):
            report(node, f"calls {dotted} without weights_only=True")
    return found


def test_no_source_file_loads_code_from_data():
    files = sources()
    assert len(files) > 100 and any("plugins" in str(f) for f in files)
    problems = [finding for f in files for finding in findings(f.read_text(encoding="utf-8"), str(f.relative_to(REPO)))]
    assert problems == []


@pytest.mark.parametrize("snippet", [
    "import pickle\n", "import cloudpickle as cp\n", "from pickle import loads\n", "import dill, json\n",
    "import torch\nm = torch.load('w.pt')\n", "import torch as t\nt.load(f, weights_only=False)\n",
    "from torch import load\nload(f)\n", "from torch import load as read\nread(f, map_location='cpu')\n",
    "import torch\ntorch.jit.load('m.pt')\n", "import numpy as np\nnp.load(f, allow_pickle=True)\n",
    "import pandas as pd\npd.read_pickle(f)\n", "eval(text)\n", "exec(code)\n", "__import__('pickle')\n",
    "import importlib\nimportlib.import_module('pickle')\n", "import marshal\n",
])
def test_the_scan_finds_every_way_in(snippet):
    assert findings(snippet)


@pytest.mark.parametrize("snippet", [
    '"""Nothing is unpickled: no pickle, no torch.load, allow_pickle=True never."""\n',
    "# pickle is not used; torch.load(f) would be\n", "import torch\ntorch.load(f, weights_only=True)\n",
    "import numpy as np\nnp.load(f, allow_pickle=False)\nnp.load(f)\n", "model.eval()\nnet.load(state)\n",
    "import json\njson.loads(text)\n",
])
def test_the_scan_passes_what_runs_no_code(snippet):
    assert findings(snippet) == []


# --- sizes before allocation -------------------------------------------------------------------


def test_a_checkpoint_claiming_a_100_gb_header_is_refused_before_reading_it(tmp_path):
    import torch

    from xrdcore.train.checkpoint import CheckpointError, load_checkpoint

    model = torch.nn.Linear(2, 2)
    for name, content in {"huge": struct.pack("<Q", 100 * 2**30) + b'{"__metadata__":{}}' + b" " * 64,
                          "short": b"\x01\x02", "beyond": struct.pack("<Q", 1000) + b"{}"}.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match="does not fit the file|shorter than") as error:
            load_checkpoint(path, model)
        assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def rewrite_export(source: Path, target: Path, change) -> Path:
    """``source`` with its JSON header changed by ``change(header)`` (the arrays as they were)."""
    from xrdcore.data.export import MAGIC

    data = source.read_bytes()
    (length,) = struct.unpack("<Q", data[len(MAGIC):len(MAGIC) + 8])
    header = json.loads(data[len(MAGIC) + 8:len(MAGIC) + 8 + length])
    change(header)
    text = json.dumps(header).encode()
    target.write_bytes(MAGIC + struct.pack("<Q", len(text)) + text + data[len(MAGIC) + 8 + length:])
    return target


@pytest.fixture(scope="module")
def export_file(mp20_cache, tmp_path_factory) -> Path:
    from xrdcore.data.export import export_cache

    file = tmp_path_factory.mktemp("export") / "mp20.xrdexport"
    export_cache(mp20_cache.path, file)
    return file


def test_export_sizes_are_checked_before_anything_is_allocated(export_file, tmp_path):
    from xrdcore.data.export import MAGIC, ExportError, read_export

    data = export_file.read_bytes()
    huge = tmp_path / "huge-header.xrdexport"
    huge.write_bytes(MAGIC + struct.pack("<Q", 100 * 2**30) + data[len(MAGIC) + 8:])

    def declare(name, **fields):
        return lambda header: header["arrays"][name].update(fields)

    cases = {
        huge: "does not fit the file",
        rewrite_export(export_file, tmp_path / "bomb.xrdexport", declare("counts", shape=[2**40])): "limit",
        rewrite_export(export_file, tmp_path / "overflow.xrdexport", declare("lattice", shape=[2**62, 2**62, 9])):
            "limit",
        rewrite_export(export_file, tmp_path / "beyond.xrdexport", declare("ok", offset=10**9)): "outside the file",
        rewrite_export(export_file, tmp_path / "long.xrdexport", declare("ok", length=10**12)): "outside the file",
    }
    for path, message in cases.items():
        with pytest.raises(ExportError, match=message) as error:
            read_export(path)
        assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_an_import_writes_only_inside_its_directory(export_file, tmp_path):
    """The export names no files: whatever its ids, paths and names say, the import writes the
    fixed names of a cache under DIR; nothing appears beside or above it."""
    from xrdcore.data.export import import_cache
    from xrdcore.data.splits import split_hash

    def forge(header):
        renamed = {header["entries"][0]["id"]: "../../escaped", header["entries"][1]["id"]: "/tmp/absolute-escape"}
        for entry in header["entries"][:2]:
            entry["id"] = renamed[entry["id"]]
        for split_ids in header["split"]["ids"].values():
            split_ids[:] = [renamed.get(value, value) for value in split_ids]
        header["split"]["hash"] = header["manifest"]["split_hash"] = split_hash(header["split"]["ids"])  # a forger's
        header["manifest"]["spec"]["options"]["path"] = "../../../etc"
        header["manifest"]["spec"]["dataset"] = "../../x"

    forged = rewrite_export(export_file, tmp_path / "forged.xrdexport", forge)
    root = tmp_path / "a" / "b"
    root.mkdir(parents=True)
    before = sorted(p for p in tmp_path.rglob("*"))
    cache = import_cache(forged, root / "out")
    assert "../../escaped" in cache.ids and "/tmp/absolute-escape" in cache.ids  # ids are data, never paths
    after = sorted(p for p in tmp_path.rglob("*"))
    new = [p for p in after if p not in before]
    assert all(root / "out" in p.parents or p == root / "out" for p in new), new
    assert not Path("/tmp/absolute-escape").exists()
    assert all(p.name in ("manifest.json", "index.json", "split.json", "report.json", "peaks") or "peaks" in p.parts
               for p in new if p != root / "out"), new
