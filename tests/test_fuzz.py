"""Fuzzing of every reader with damaged versions of real files: truncated, bits flipped, bytes
replaced or inserted, lines inserted, deleted, repeated and reordered. Each reader must either read
the file (and what it returns keeps the reader's promises) or refuse it with its own documented
error, one line starting with the file's name; never another exception, never a hang.

The budget here is small (a few seconds per reader); ``make fuzz`` runs a long one
(``XRDCORE_FUZZ_EXAMPLES=2000``). Readers: CIF (``read_structure``, and ``parse_cif`` as data builds
use it), measured patterns (.xy, .xye, .csv, pdCIF), data exports (``read_export``, ``import_cache``),
checkpoints (``load_checkpoint``), model packages (``model.json`` and ``config.json``)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DATA = Path(__file__).with_name("data")
EXAMPLES = int(os.environ.get("XRDCORE_FUZZ_EXAMPLES", "15"))
#: a reader that takes longer than this on a file of a few kB hangs
HANG_SECONDS = 60
SETTINGS = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=HANG_SECONDS),
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

#: bytes that mean something to one of the formats, inserted by the fuzzer
TOKENS = [b"\n", b"\r", b" ", b"\t", b"-", b"+", b",", b";", b"'", b'"', b"#", b"?", b".", b"nan", b"inf",
          b"1e400", b"-1", b"0", b"9" * 20, b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"loop_\n", b"data_x\n",
          b"_cell_length_a -5\n", b"_symmetry_space_group_name_H-M 'Q 1'\n", b"'x,y,q'\n", b"{", b"}", b"[",
          b"]", b":", b"null", b"true", b'"format"', b"\\u0000", b"_space_group_name_Hall '-P 2ybc'\n",
          b"_space_group_IT_number 14\n", b"_space_group_symop.operation_xyz\n", b"'-x,-y,-z'\n", b"'x+1/2,y,z'\n",
          b"_atom_site_occupancy\n", b"_cell_angle_gamma 120\n", b"_SYMMETRY_EQUIV_POS_AS_XYZ\n", b"2.5(3)"]


@st.composite
def damaged(draw, original: bytes, hot: int = 0) -> bytes:
    """``original`` with 1-4 kinds of damage; with ``hot`` (a header's length) half of the positions
    fall in the first ``hot`` bytes, where binary formats keep what their readers interpret."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "replace", "insert", "delete", "delete line",
                                     "insert line", "duplicate line", "swap lines"]))
        end = min(hot, len(data)) if hot and draw(st.booleans()) else len(data)
        at = draw(st.integers(0, max(end - 1, 0)))
        if kind == "truncate":
            del data[at:]
        elif kind in ("flip", "replace") and data:
            data[at] = data[at] ^ (1 << draw(st.integers(0, 7))) if kind == "flip" else draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from(TOKENS)))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif kind.endswith("line"):
            lines = bytes(data).split(b"\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if kind == "delete line":
                del lines[i]
            elif kind == "insert line":
                lines.insert(i, draw(st.sampled_from(TOKENS)).rstrip(b"\n"))
            else:
                lines.insert(i, lines[j])
        else:
            lines = bytes(data).split(b"\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        if kind.endswith("line") or kind == "swap lines":
            data = bytearray(b"\n".join(lines))
    return bytes(data)


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                        st.text(max_size=12), st.just([]), st.just({}), st.just([1, 2]), st.just({"a": None}))


@st.composite
def reshaped(draw, value):
    """A JSON document with one value replaced (by another of any kind) or one key or item removed:
    damage that keeps it JSON, so that what reads its fields is tested, not only the JSON parser."""
    path, node = [], value
    while isinstance(node, (dict, list)) and node and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        path.append(key)
        node = node[key]
    copy = json.loads(json.dumps(value))
    if not path:
        return draw(JSON_VALUES)
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(JSON_VALUES)
    return copy


@st.composite
def damaged_json(draw, original: bytes) -> bytes:
    """Half the time bytes damage, half the time :func:`reshaped` damage of a JSON file."""
    if draw(st.booleans()):
        return draw(damaged(original))
    return json.dumps(draw(reshaped(json.loads(original)))).encode()


@contextlib.contextmanager
def no_hang(seconds: int = HANG_SECONDS):
    """Fail (TimeoutError) instead of hanging: Hypothesis' deadline only judges calls that return."""
    def expired(*_):
        raise TimeoutError(f"the reader ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def refused_in_one_line(error: BaseException, path: Path) -> None:
    message = str(error)
    assert message.startswith(str(path)), message
    assert "\n" not in message.strip() and "Traceback" not in message, message


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# --- CIF ----------------------------------------------------------------------------------------------

def cif_seeds() -> list[tuple[str, bytes]]:
    """Real CIFs of every path through the reader: a symbol without operations (NaCl), plain P1
    (MP-20, the fast path), symbol with operations (pymatgen's CifWriter in the space group)."""
    from pymatgen.core import Structure
    from pymatgen.io.cif import CifWriter

    with (DATA / "mp20_sample.csv").open(newline="") as handle:
        rows = [row["cif"] for _, row in zip(range(3), csv.DictReader(handle))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        symmetric = str(CifWriter(Structure.from_str(rows[1], fmt="cif"), symprec=0.01))
    return [("NaCl.cif", (DATA / "NaCl.cif").read_bytes()), ("p1.cif", rows[0].encode()),
            ("symmetric.cif", symmetric.encode())]


CIF_SEEDS = cif_seeds()


@SETTINGS
@given(case=st.sampled_from(CIF_SEEDS).flatmap(lambda seed: st.tuples(st.just(seed[0]), damaged(seed[1]))))
def test_cif_reader(scratch, case):
    from xrdcore.data.cif import UnreadableCIF, parse_cif, read_structure
    from xrdcore.data.sources import decode

    name, content = case
    path = scratch / name
    path.write_bytes(content)
    with no_hang():
        try:
            structure = read_structure(path)
        except UnreadableCIF as error:
            refused_in_one_line(error, path)
        else:
            assert len(structure) > 0 and np.isfinite(structure.lattice.matrix).all()
            assert min(structure.lattice.abc) > 0
        try:  # as the data build reads it: several blocks allowed, structures not yet validated
            parse_cif(decode(content), str(path))
        except UnreadableCIF as error:
            refused_in_one_line(error, path)


# --- measured patterns ----------------------------------------------------------------------------------

def pattern_seeds() -> list[tuple[str, bytes]]:
    angles = np.round(np.arange(10, 40, 0.25), 2)
    counts = (100 + 900 * np.exp(-((angles - 25) / 0.3) ** 2)).round(1)
    rows = [f"{a:.2f} {c:g}" for a, c in zip(angles, counts)]
    xy = "# a scan\n2theta counts\n" + "\n".join(rows) + "\n"
    xye = "\n".join(f"{r} {np.sqrt(c):.2f}" for r, c in zip(rows, counts)) + "\n"
    csv_text = "angle,intensity\r\n" + "\r\n".join(r.replace(" ", ",") for r in rows) + "\r\n"
    scan = ("data_film\n_diffrn_radiation_wavelength 1.54056\nloop_\n_pd_meas_2theta_scan\n_pd_meas_counts_total\n"
            + "\n".join(f"{a:.2f} {c:g}(3)" for a, c in zip(angles, counts)) + "\n")
    ranged = ("data_range\n_pd_meas_2theta_range_min 10.0\n_pd_meas_2theta_range_max 39.75\n"
              "_pd_meas_2theta_range_inc 0.25\nloop_\n_pd_proc_intensity_net\n"
              + "\n".join(f"{c:g}" for c in counts) + "\n")
    return [("scan.xy", xy.encode()), ("scan.xye", xye.encode()), ("scan.csv", csv_text.encode()),
            ("scan.cif", scan.encode()), ("range.cif", ranged.encode())]


@SETTINGS
@given(case=st.sampled_from(pattern_seeds()).flatmap(lambda seed: st.tuples(st.just(seed[0]), damaged(seed[1]))))
def test_pattern_reader(scratch, case):
    from xrdcore.diffraction.grid import AngleGrid
    from xrdcore.diffraction.readers import PatternError, read_pattern, resample

    name, content = case
    path = scratch / name
    path.write_bytes(content)
    with no_hang():
        try:
            pattern = read_pattern(path)
        except PatternError as error:
            refused_in_one_line(error, path)
            return
        assert (np.diff(pattern.two_theta) > 0).all() and np.isfinite(pattern.intensity).all()
        assert (pattern.intensity >= 0).all() and all(isinstance(note, str) for note in pattern.notes)
        try:
            values = resample(pattern, AngleGrid(0.0, 180.0, 0.5), outside="zero")
        except PatternError as error:
            refused_in_one_line(error, path)
        else:
            assert values.max() == 1 and np.isfinite(values).all()


# --- data exports -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def export_file(mp20_cache, tmp_path_factory):
    from xrdcore.data.export import export_cache

    path = tmp_path_factory.mktemp("export") / "mp20.xrdexport"
    export_cache(mp20_cache.path, path)
    return path


@SETTINGS
@given(data=st.data())
def test_export_reader(scratch, export_file, data):
    from xrdcore.data.cache import CacheError
    from xrdcore.data.export import MAGIC, ExportError, import_cache, read_export

    original = export_file.read_bytes()
    length = int.from_bytes(original[len(MAGIC):len(MAGIC) + 8], "little")
    header = len(MAGIC) + 8 + length
    if data.draw(st.booleans()):
        content = data.draw(damaged(original, hot=header))
    else:  # the header's JSON reshaped, its length kept right: what import_cache reads of it
        text = json.dumps(data.draw(reshaped(json.loads(original[len(MAGIC) + 8:header])))).encode()
        content = MAGIC + len(text).to_bytes(8, "little") + text + original[header:]
    path = scratch / "damaged.xrdexport"
    path.write_bytes(content)
    out = scratch / "imported"
    shutil.rmtree(out, ignore_errors=True)
    with no_hang():
        try:
            read_export(path)
            cache = import_cache(path, out)
        except (ExportError, CacheError) as error:
            refused_in_one_line(error, path if str(error).startswith(str(path)) else out)
            return
    assert len(cache.ids) == len(cache.space_groups) and all(1 <= g <= 230 for g in cache.space_groups)
    for i in range(len(cache)):
        if cache.simulated[i]:
            peaks = cache.peaks(i)
            assert np.isfinite(peaks.two_theta).all() and np.isfinite(peaks.intensity).all()


# --- checkpoints ------------------------------------------------------------------------------------------

def _small_model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory):
    import torch

    from xrdcore.train.checkpoint import save_checkpoint

    model = _small_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    return save_checkpoint(tmp_path_factory.mktemp("checkpoint") / "last.safetensors", model,
                           {"epoch": 1, "history": [{"loss": 1.5}]}, optimizer)


@SETTINGS
@given(data=st.data())
def test_checkpoint_reader(scratch, checkpoint_file, data):
    import torch

    from xrdcore.train.checkpoint import CheckpointError, load_checkpoint

    original = checkpoint_file.read_bytes()
    header = 8 + int.from_bytes(original[:8], "little")
    path = scratch / "damaged.safetensors"
    if data.draw(st.booleans()):
        path.write_bytes(data.draw(damaged(original, hot=header)))
    else:  # the JSON state in the metadata reshaped: what load_checkpoint reads of it
        from safetensors.torch import load, save

        meta = json.loads(original[8:header])["__metadata__"]
        meta["state"] = json.dumps(data.draw(reshaped(json.loads(meta["state"]))))
        path.write_bytes(save(load(original), metadata=meta))
    model = _small_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with no_hang():
        try:
            state = load_checkpoint(path, model, optimizer)
        except CheckpointError as error:
            refused_in_one_line(error, path)
            return
    assert isinstance(state, dict)


# --- model packages ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_folder(tiny_run, tmp_path_factory):
    from xrdcore.zoo import package_run

    card = {"name": "tiny", "task": "space group (fuzzing)", "licence": "CC0",
            "training_data": {"dataset": "mp20-sample"}}
    return package_run(tiny_run, tmp_path_factory.mktemp("zoo") / "tiny", card=card, card_text="# tiny\n").path


@SETTINGS
@given(which=st.sampled_from(["model.json", "config.json"]), data=st.data())
def test_model_package_reader(scratch, model_folder, which, data):
    """What ``xrdcore models`` and ``predict --model`` do with a package: read the card, check the
    files and the weights' sha256, summarise, load the model."""
    from xrdcore.train.trainer import RunError
    from xrdcore.zoo import ModelError, PretrainedModel

    folder = scratch / "package"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(model_folder, folder)
    (folder / which).write_bytes(data.draw(damaged_json((model_folder / which).read_bytes())))
    with no_hang():
        try:
            model = PretrainedModel.from_folder(folder)
            problems = model.contract_errors()
            if problems:
                assert all(p.startswith(str(folder)) for p in problems)
                return
            json.dumps(model.summary())
            model.load()
        except (ModelError, RunError) as error:
            refused_in_one_line(error, folder)
