"""read_pattern and resample on real lab files (PV-Lab thin films), on one hand-made file for each
refusal, and on random files written in random dialects, random garbage and random corruptions."""

import math
import os
import time
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from xrdcore.diffraction.grid import AngleGrid
from xrdcore.diffraction.readers import COLUMNS, MeasuredPattern, PatternError, at_wavelength, read_pattern, resample

PVLAB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pvlab_thinfilm_xy"
PVLAB_FILES = sorted(PVLAB.glob("*/*.xy")) if PVLAB.is_dir() else []
# Files whose exporter wrote fixed-width fields and lost the space when a number filled its field
# ("14.1185" + "1260" -> "14.11851260"): the split is ambiguous, so they must be refused, at the
# first such line. Measured by hand: these four, and only these, hold rows of one column.
PVLAB_FUSED = {f"{tin}% SnPerovskite at 0.5M 4to1 dmftodmso.xy": line
               for tin, line in (("100", 85), ("15", 84), ("50", 83), ("85", 84))}
NO_PVLAB = pytest.mark.skip(reason=f"shared data folder {PVLAB} is absent (PV-Lab thin-film .xy patterns)")


def pvlab_params(fused: bool):
    chosen = [p for p in PVLAB_FILES if (p.name in PVLAB_FUSED) == fused]
    if not chosen:
        return [pytest.param(None, marks=NO_PVLAB)]
    return [pytest.param(p, id=f"{p.parent.name}/{p.name}") for p in chosen]


def refusal(path: Path) -> str:
    """The message of the PatternError that reading ``path`` raises; it must start with the path."""
    with pytest.raises(PatternError) as caught:
        read_pattern(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message


# --- the PV-Lab measured patterns -------------------------------------------------------------------

@pytest.mark.parametrize("path", pvlab_params(fused=False))
def test_pvlab_pattern_reads_and_resamples(path):
    pattern = read_pattern(path)
    x, y = pattern.two_theta, pattern.intensity
    assert pattern.source == path and pattern.sigma is None
    assert x.dtype == np.float64 and len(x) == len(y) > 100
    assert (np.diff(x) > 0).all() and 0 < x[0] and x[-1] < 180 and (y >= 0).all()
    if x[-1] - x[0] > 4:
        grid = AngleGrid(math.ceil(x[0]) + 1, math.floor(x[-1]) - 1, 0.02)
    else:  # the 14° close-ups span 0.65°, at 0.005° steps: the averaging path
        grid = AngleGrid(x[0] + 0.1, x[-1] - 0.1, 0.02)
    values = resample(pattern, grid)
    assert values.dtype == np.float32 and values.shape == (grid.length,)
    assert np.isfinite(values).all() and values.max() == 1 and values.min() >= 0
    if np.median(np.diff(x)) >= grid.step:  # as coarse as the grid: plain linear interpolation
        expected = np.interp(grid.values, x, y)
        np.testing.assert_allclose(values, expected / expected.max(), rtol=1e-6)


@pytest.mark.parametrize("path", pvlab_params(fused=True))
def test_pvlab_fused_columns_are_refused_at_their_first_line(path):
    message = refusal(path)
    assert f"line {PVLAB_FUSED[path.name]} has 1 column, expected 2" in message


@pytest.mark.skipif(not PVLAB_FILES, reason=f"shared data folder {PVLAB} is absent")
@pytest.mark.parametrize("name", ["Fm-3m/CsAgBiBr_285_2-Theta.xy",
                                  "I4Imcm/0% Sn 100%Pb Perovskite at 0.5M 4to1 dmftodmso.xy"])
def test_pvlab_values_equal_a_manual_parse(name):
    path = PVLAB / name
    table = np.loadtxt(path)  # CRLF, leading and trailing spaces; plain numbers otherwise
    pattern = read_pattern(path)
    np.testing.assert_array_equal(pattern.two_theta, table[:, 0])
    np.testing.assert_array_equal(pattern.intensity, table[:, 1])


@pytest.mark.skipif(not PVLAB_FILES, reason=f"shared data folder {PVLAB} is absent")
def test_pvlab_film_from_10_degrees_on_the_published_grid():
    path = PVLAB / "I4Imcm" / "0% Sn 100%Pb Perovskite at 0.5M 4to1 dmftodmso.xy"
    pattern = read_pattern(path)
    needs = "covers 10.00-80.01 deg 2theta, the model's grid needs 5.00-89.99"
    with pytest.raises(PatternError, match=needs):
        resample(pattern, AngleGrid())
    values = resample(pattern, AngleGrid(), outside="zero")
    angles = AngleGrid().values
    assert (values[angles < 10 - 0.005] == 0).all() and (values[angles > 80.014 + 0.005] == 0).all()
    assert values.max() == 1 and (values[(angles > 10) & (angles < 80)] > 0).all()


# --- one file for each refusal ------------------------------------------------------------------------

REFUSED = [
    # (file name, content, words the message must hold)
    ("empty.xy", b"", ["file is empty"]),
    ("blank.xy", b"  \r\n\n\t\n", ["file is empty"]),
    ("binary.xy", bytes(range(256)) * 4, ["not a text file", "0x00", "line 1"]),
    ("gzipped.xy", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcb\x48\xcd\xc9", ["not a text file", "0x1f"]),
    ("late_nul.csv", b"10,5\n11,6\n12\x00,7\n", ["not a text file", "0x00", "line 3"]),
    ("comments.xy", b"# Bruker export\n! nothing else\n\n% ; \n", ["no data rows"]),
    ("header_only.csv", b"2theta,intensity\n", ["no data rows"]),
    ("one_row.xy", b"Angle Intensity\n10.0 5\n", ["only one data row", "line 2"]),
    ("three.xy", b"10 5\n11 6 0.1\n12 7\n", ["line 2 has 3 columns, expected 2", "'11 6 0.1'"]),
    ("three_first.xy", b"10 5 1\n11 6 1\n", ["line 1 has 3 columns, expected 2"]),
    ("two.xye", b"10 5\n11 6\n", ["line 1 has 2 columns, expected 3"]),
    ("four.csv", b"2theta,I,sigma,bg\n10,5,1,2\n11,6,1,2\n", ["line 2 has 4 columns, expected 2 or 3"]),
    ("ragged.csv", b"10,5\n11,6\n12,7,1\n", ["line 3 has 3 columns, expected 2 like line 1"]),
    ("fused.xy", b"14.0688 659\n14.11851260\n14.1681 465\n",
     ["line 2 has 1 column, expected 2", "14.11851260"]),
    ("word.txt", b"# scan\n10 5\n11 abc\n12 7\n", ["line 3", "non-numeric", "'abc'"]),
    ("late_header.csv", b"10,5\n11,6\n2theta,I\n", ["line 3", "non-numeric", "'2theta'"]),
    ("decimal_comma.csv", b"10,5;100\n11,5;200\n", ["line 1", "'10,5'", "decimal comma"]),
    ("empty_field.csv", b"10,5\n11,,\n", ["line 2 has 3 columns"]),
    ("empty_value.csv", b"10,5,1\n11,,1\n", ["line 2 has an empty value"]),
    ("nan.xy", b"10 5\n11 nan\n12 7\n", ["line 2", "non-finite", "nan"]),
    ("inf.xy", b"10 5\n11 6\n12 -inf\n", ["line 3", "non-finite", "inf"]),
    ("overflow.xy", b"10 5\n11 1e999\n", ["line 2", "non-finite"]),
    ("nan_sigma.xye", b"10 5 1\n11 6 NaN\n", ["line 2", "non-finite"]),
    ("negative.dat", b"10 5\n11 -1\n12 7\n13 -2.5\n", ["2 negative intensities", "first on line 2", "-1"]),
    ("negative_sigma.xye", b"10 5 1\n11 6 -1\n", ["1 negative sigma values", "line 2"]),
    ("constant.xy", b"10 5\n11 5\n12 5\n", ["all 3 intensities are equal", "(5)"]),
    ("zeros.xy", b"10 0\n11 0\n", ["all 2 intensities are equal", "(0)"]),
    ("decreasing.xy", b"10 5\n12 6\n11 7\n13 8\n", ["2θ decreases at line 3", "11 after 12 deg on line 2",
                                                       "otherwise ascending"]),
    ("rising.xy", b"13 5\n12 6\n12.5 7\n11 8\n", ["2θ increases at line 3", "otherwise descending"]),
    ("one_angle.xy", b"10 5\n10 6\n10 7\n", ["all 3 rows have the same 2θ (10 deg)"]),
    ("zero_angle.xy", b"0 5\n1 6\n", ["line 1", "2θ = 0 deg is outside (0, 180)"]),
    ("negative_angle.xy", b"-1 5\n1 6\n", ["line 1", "outside (0, 180)"]),
    ("beyond_180.xy", b"# radians? no\n170 5\n180 6\n190 7\n", ["line 3", "2θ = 180 deg", "(2 such lines)"]),
    ("pattern.raw", b"10 5\n11 6\n", ["extension '.raw'", ".xy"]),
    ("no_extension", b"10 5\n11 6\n", ["no extension"]),
    ("bad_utf16.xy", b"\xff\xfe1\x00 \x002", ["UTF-16"]),  # an odd number of bytes
]


@pytest.mark.parametrize("name, content, words", REFUSED, ids=[case[0] for case in REFUSED])
def test_refusal_names_the_file_and_the_problem(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    message = refusal(path)
    for word in words:
        assert word in message, (word, message)


def test_missing_file(tmp_path):
    assert "no such file" in refusal(tmp_path / "nowhere.xy")


def test_directory(tmp_path):
    (tmp_path / "scan.xy").mkdir()
    assert "is a directory" in refusal(tmp_path / "scan.xy")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="running as root (or without POSIX modes): every file is readable")
def test_unreadable_file(tmp_path):
    path = tmp_path / "locked.xy"
    path.write_bytes(b"10 5\n11 6\n")
    path.chmod(0)
    try:
        assert "permission denied" in refusal(path)
    finally:
        path.chmod(0o600)


# --- dialects that must be read -----------------------------------------------------------------------

@pytest.mark.parametrize("name, content", [
    ("comma.csv", b"2theta,intensity\r\n10.0,5\r\n10.5,6\r\n"),
    ("words.txt", b"Angle Intensity\n10.0\t5\n10.5\t6\n"),
    ("semicolon.dat", b"\xef\xbb\xbf% exported\n10.0; 5\n\n10.5; 6\n"),
    ("old_mac.xy", b"# scan\r10.0 5\r10.5 6\r"),
    ("latin1 header.xy", "Angle (°) Intensität\n10.0 5\n10.5 6\n".encode("latin-1")),
    ("utf16.xy", "2θ I\r\n10.0 5\r\n10.5 6\r\n".encode("utf-16")),
    ("a b%c.xy", b"  10.0   5  \n  10.5   6  \n"),
])
def test_dialects_read_the_same_numbers(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    pattern = read_pattern(path)
    assert pattern.two_theta.tolist() == [10.0, 10.5] and pattern.intensity.tolist() == [5.0, 6.0]
    assert pattern.sigma is None and pattern.source == path


def test_third_column_is_sigma(tmp_path):
    for name, text in (("a.xye", "10 5 0.5\n10.5 6 .25\n"), ("a.csv", "10.0,5,0.5\n10.5,6,0.25\n")):
        (tmp_path / name).write_text(text)
        assert read_pattern(tmp_path / name).sigma.tolist() == [0.5, 0.25]


def test_a_descending_scan_is_read_in_ascending_order_and_says_so(tmp_path):
    path = tmp_path / "down.xye"
    path.write_text("# from a diffractometer that scans downwards\n13 5 1\n12 6 2\n11 7 3\n")
    pattern = read_pattern(path)
    assert pattern.two_theta.tolist() == [11, 12, 13] and pattern.intensity.tolist() == [7, 6, 5]
    assert pattern.sigma.tolist() == [3, 2, 1]
    assert pattern.notes == ("the file runs from high to low angle (13 to 11 deg 2θ); read in ascending order",)


def test_repeated_angles_are_averaged_and_said_so(tmp_path):
    path = tmp_path / "restart.xye"
    path.write_text("10 5 3\n10.5 6 1\n10.5 8 1\n10.5 10 1\n11 8 2\n")
    pattern = read_pattern(path)
    assert pattern.two_theta.tolist() == [10, 10.5, 11] and pattern.intensity.tolist() == [5, 8, 8]
    assert pattern.sigma.tolist() == pytest.approx([3, np.sqrt(3) / 3, 2])  # sqrt(Σσ²)/n
    assert pattern.notes == ("1 angle appears more than once (the first, 10.5 deg, on lines 2 and 3); "
                             "the intensities of equal angles are averaged",)
    down = tmp_path / "down.xy"
    down.write_text("11 8\n10.5 6\n10.5 10\n10 5\n")
    pattern = read_pattern(down)
    assert pattern.two_theta.tolist() == [10, 10.5, 11] and pattern.intensity.tolist() == [5, 8, 8]
    assert len(pattern.notes) == 2 and "high to low" in pattern.notes[0] and "lines 2 and 3" in pattern.notes[1]


def test_a_file_as_written_has_no_notes(tmp_path):
    (tmp_path / "a.xy").write_text("10 5\n11 6\n")
    assert read_pattern(tmp_path / "a.xy").notes == ()


def test_pattern_is_frozen_and_read_only(tmp_path):
    (tmp_path / "a.xy").write_text("10 5\n11 6\n")
    pattern = read_pattern(tmp_path / "a.xy")
    with pytest.raises(FrozenInstanceError):
        pattern.source = Path("elsewhere.xy")
    with pytest.raises(ValueError, match="read-only"):
        pattern.intensity[0] = 100


def test_pattern_built_by_hand_is_checked():
    with pytest.raises(PatternError, match="hand.xy: 2θ must be finite and strictly increasing"):
        MeasuredPattern(np.array([12.0, 11.0]), np.array([1.0, 2.0]), None, Path("hand.xy"))
    with pytest.raises(PatternError, match="hand.xy: a pattern needs 1-D"):
        MeasuredPattern(np.array([11.0, 12.0]), np.array([1.0, 2.0, 3.0]), None, Path("hand.xy"))


def test_hundred_thousand_lines_read_quickly(tmp_path):
    angles = np.round(np.linspace(5, 90, 100_000), 5)
    counts = np.random.default_rng(0).poisson(200, angles.size)
    lines = [f"{a:.5f}\t{c}" for a, c in zip(angles, counts)]
    path = tmp_path / "long.xy"
    path.write_text("2theta counts\n" + "\n".join(lines) + "\n")
    start = time.perf_counter()
    pattern = read_pattern(path)
    elapsed = time.perf_counter() - start
    assert np.array_equal(pattern.two_theta, angles) and np.array_equal(pattern.intensity, counts)
    assert elapsed < 1.0, f"read 100k lines in {elapsed:.2f} s (about 0.07 s expected)"


# --- random files: round trips, garbage, corruptions ----------------------------------------------------

@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("random patterns")


SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
COMMENT_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=20)


@st.composite
def pattern_files(draw):
    """(file name, bytes, expected table): a valid pattern in a random dialect; the table holds the
    values of the written text, so it is what any correct reader returns."""
    n = draw(st.integers(2, 30))
    ticks = sorted(draw(st.lists(st.integers(1, 17_999_999), min_size=n, max_size=n, unique=True)))
    angle_format = draw(st.sampled_from(["{!r}", "{:.5f}", "{:.10e}"]))
    columns = [[angle_format.format(t / 1e5) for t in ticks]]
    width = draw(st.sampled_from([2, 3]))
    for _ in range(width - 1):
        number = st.one_of(st.integers(0, 10**7), st.floats(0, 1e7, allow_nan=False))
        number_format = draw(st.sampled_from(["{!r}", "{:.6g}", "{:.3f}"]))
        columns.append([number_format.format(v) for v in draw(st.lists(number, min_size=n, max_size=n))])
    expected = np.array([[float(v) for v in column] for column in columns]).T
    assume(expected[:, 1].min() != expected[:, 1].max())

    delimiter = draw(st.sampled_from([" ", "   ", "\t", ",", ", ", ";", " ; "]))
    indent = draw(st.sampled_from(["", " ", "\t"]))
    lines = [indent + delimiter.join(row) + draw(st.sampled_from(["", " "])) for row in zip(*columns)]
    header = draw(st.sampled_from([None, "2theta{}intensity", "Angle{}Intensity", "2θ (°){}counts"]))
    if header:
        lines.insert(0, header.format(delimiter) + (delimiter + "esd" if width == 3 else ""))
    for _ in range(draw(st.integers(0, 4))):  # comments and blank lines anywhere, before a header too
        comment = st.builds(lambda space, mark, text: space + mark + text,
                            st.sampled_from(["", " "]), st.sampled_from("#!;%"), COMMENT_TEXT)
        extra = draw(st.one_of(st.sampled_from(["", "  "]), comment))
        lines.insert(draw(st.integers(0, len(lines))), extra)
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    if draw(st.booleans()):
        text = "\ufeff" + text
    extension = draw(st.sampled_from([".xy" if width == 2 else ".xye", ".csv", ".txt", ".dat", ".CSV"]))
    return "random pattern 100%" + extension, text.encode("utf-8"), expected


@SETTINGS
@given(case=pattern_files())
def test_random_dialects_round_trip_exactly(scratch, case):
    name, content, expected = case
    path = scratch / name
    path.write_bytes(content)
    pattern = read_pattern(path)
    np.testing.assert_array_equal(pattern.two_theta, expected[:, 0])
    np.testing.assert_array_equal(pattern.intensity, expected[:, 1])
    if expected.shape[1] == 3:
        np.testing.assert_array_equal(pattern.sigma, expected[:, 2])
    else:
        assert pattern.sigma is None


def read_or_refuse(path: Path) -> None:
    """Read ``path``: a pattern that keeps its promises, or PatternError naming the file; never
    another exception. A pattern read is also put on a wide grid, which may only refuse the same way."""
    try:
        pattern = read_pattern(path)
    except PatternError as error:
        assert str(error).startswith(f"{path}: ")
        return
    assert (np.diff(pattern.two_theta) > 0).all() and (pattern.intensity >= 0).all()
    assert pattern.intensity.min() < pattern.intensity.max()
    try:
        values = resample(pattern, AngleGrid(0.0, 180.0, 0.5), outside="zero")
    except PatternError as error:
        assert str(error).startswith(f"{path}: ")
        return
    assert values.max() == 1 and np.isfinite(values).all()


NUMERIC_NOISE = st.text(st.sampled_from([*"0123456789.,;-+eE \t\n\r#%!naifNA_", "\ufeff", "°", "\x00"]),
                        max_size=200)


@SETTINGS
@given(content=st.one_of(st.binary(max_size=300), NUMERIC_NOISE.map(lambda t: t.encode("utf-8"))),
       extension=st.sampled_from(sorted(COLUMNS)))
def test_garbage_is_refused_only_with_pattern_error(scratch, content, extension):
    path = scratch / f"garbage 5%{extension}"
    path.write_bytes(content)
    read_or_refuse(path)


@st.composite
def corruptions(draw):
    name, content, _ = draw(pattern_files())
    data = bytearray(content)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "truncate", "duplicate line",
                                     "swap lines"]))
        if kind == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif kind == "insert":
            tokens = [b"-", b"nan", b"inf", b",", b";", b" ", b"\n", b"\r", b"e", b"1e400", b"#",
                      b"\xef\xbb\xbf", b"."]
            data[at:at] = draw(st.one_of(st.binary(min_size=1, max_size=6), st.sampled_from(tokens)))
        elif kind == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[at:]
        else:
            lines = bytes(data).split(b"\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if kind == "duplicate line":
                lines.insert(i, lines[j])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
    return name, bytes(data)


@SETTINGS
@given(case=corruptions())
def test_corrupted_files_are_refused_only_with_pattern_error(scratch, case):
    name, content = case
    path = scratch / ("corrupted " + name)
    path.write_bytes(content)
    read_or_refuse(path)


# --- resample ---------------------------------------------------------------------------------------------

def measured(x, y, name="synthetic.xy"):
    return MeasuredPattern(np.asarray(x, dtype=float), np.asarray(y, dtype=float), None, Path(name))


def test_gaussian_at_30_degrees_peaks_at_30_on_the_grid():
    x = np.arange(5, 90.0001, 0.02)
    y = 10 + 1000 * np.exp(-0.5 * ((x - 30) / 0.05) ** 2)
    grid = AngleGrid()
    values = resample(measured(x, y), grid)
    assert values.dtype == np.float32 and values.shape == (8500,)
    assert values.max() == 1 and abs(grid.values[np.argmax(values)] - 30) < 1e-9
    expected = np.interp(grid.values, x, y)
    np.testing.assert_allclose(values, expected / expected.max(), rtol=1e-6)
    assert values.min() == pytest.approx(10 / 1010, rel=1e-3)  # background kept, not subtracted


def test_grid_beyond_the_pattern_is_refused_with_both_ranges():
    pattern = measured(np.arange(10, 80.001, 0.05), np.arange(1401) % 7 + 1.0, "film 10%.xy")
    with pytest.raises(PatternError) as caught:
        resample(pattern, AngleGrid())
    assert str(caught.value).startswith(
        "film 10%.xy: pattern covers 10.00-80.00 deg 2theta, the model's grid needs 5.00-89.99")


def test_half_a_grid_step_of_slack_at_each_end():
    y = lambda x: 1 + np.sin(x)  # noqa: E731
    inside = np.linspace(5.004, 89.986, 3000)
    values = resample(measured(inside, y(inside)), AngleGrid())
    top = np.interp(AngleGrid().values, inside, y(inside)).max()
    assert values[0] == pytest.approx(y(5.004) / top, rel=1e-6)  # the end values carried out
    assert values[-1] == pytest.approx(y(89.986) / top, rel=1e-6)
    for short in (np.linspace(5.006, 89.986, 3000), np.linspace(5.004, 89.984, 3000)):
        with pytest.raises(PatternError, match="covers"):
            resample(measured(short, y(short)), AngleGrid())


def test_outside_zero_pads_with_zero():
    x = np.arange(10, 80.001, 0.05)
    y = 100 + 50 * np.cos(x)
    grid = AngleGrid()
    values = resample(measured(x, y), grid, outside="zero")
    angles = grid.values
    outside = (angles < 10 - 0.005) | (angles > 80 + 0.005)
    assert outside.sum() == 500 + 999 and (values[outside] == 0).all()
    expected = np.interp(angles[~outside], x, y)
    np.testing.assert_allclose(values[~outside], expected / expected.max(), rtol=1e-6)
    with pytest.raises(ValueError, match="'error' or 'zero'"):
        resample(measured(x, y), grid, outside="clip")


def test_nothing_on_the_grid_is_refused():
    x = np.arange(10, 60.001, 0.05)
    y = np.where(x > 40, 100.0, 0.0)
    message = "synthetic.xy: intensity is zero everywhere on the grid 5.00-29.99"
    with pytest.raises(PatternError, match=message):
        resample(measured(x, y), AngleGrid(5, 30, 0.01), outside="zero")


def test_fine_steps_are_averaged_per_grid_cell():
    # 10 readings per 0.01° cell, alternating +-80 counts on a peak: each grid point sits just before
    # a +80 reading, so interpolation reports the noise as signal; the cell mean cancels it
    x = 10.0001 + 0.001 * np.arange(5000)
    y = 100 + 80 * (-1.0) ** np.arange(5000) + 400 * np.exp(-0.5 * ((x - 12.5) / 0.2) ** 2)
    grid = AngleGrid(10.1, 14.9, 0.01)
    values = resample(measured(x, y), grid)
    cell_means = np.array([y[np.abs(x - g) < grid.step / 2].mean() for g in grid.values])
    np.testing.assert_allclose(values, cell_means / cell_means.max(), rtol=1e-5)
    smooth = 100 + 400 * np.exp(-0.5 * ((grid.values - 12.5) / 0.2) ** 2)
    np.testing.assert_allclose(values, smooth / smooth.max(), atol=0.01)
    interpolated = np.interp(grid.values, x, y)
    assert np.abs(interpolated / interpolated.max() - smooth / smooth.max()).max() > 0.05  # what it avoids


def test_two_points_per_step_are_still_interpolated():
    x = 10.0003 + 0.005 * np.arange(1000)
    y = 100 + 50 * (-1.0) ** np.arange(1000)
    grid = AngleGrid(10.1, 14.9, 0.01)
    expected = np.interp(grid.values, x, y)
    np.testing.assert_allclose(resample(measured(x, y), grid), expected / expected.max(), rtol=1e-6)


# --- powder CIFs and other wavelengths ----------------------------------------------------------

PDCIF_SCAN = """data_film
_diffrn_radiation_wavelength 0.70930
loop_
_pd_meas_2theta_scan
_pd_meas_counts_total
5.00 120(11)
5.02 130(11)
5.04 1250.5(35)
"""

PDCIF_RANGE = """data_pattern
_pd_meas_2theta_range_min 10.0
_pd_meas_2theta_range_max 10.4
_pd_meas_2theta_range_inc 0.1
loop_
_pd_proc_intensity_net
1 2 3 4 5
"""


def test_a_powder_cif_gives_its_scan_intensities_uncertainties_and_wavelength(tmp_path):
    path = tmp_path / "film.cif"
    path.write_text(PDCIF_SCAN)
    p = read_pattern(path)
    assert p.two_theta.tolist() == [5.0, 5.02, 5.04] and p.intensity.tolist() == [120, 130, 1250.5]
    assert p.sigma.tolist() == [11, 11, 3.5] and p.wavelength == 0.7093
    path = tmp_path / "range.cif"
    path.write_text(PDCIF_RANGE)
    p = read_pattern(path)
    assert np.allclose(p.two_theta, [10.0, 10.1, 10.2, 10.3, 10.4]) and p.intensity.tolist() == [1, 2, 3, 4, 5]
    assert p.sigma is None and p.wavelength is None  # the file does not say
    assert read_pattern(_write(tmp_path, "a.xy", "10 1\n11 2\n")).wavelength is None


@pytest.mark.parametrize("content, words", [
    ("data_x\n_cell_length_a 5.0\n", "no powder pattern in the CIF"),
    ("data_x\nloop_\n_pd_meas_counts_total\n1\n2\n", "no 2θ in the CIF"),
    ("data_x\n_pd_meas_2theta_range_min 10\n_pd_meas_2theta_range_max 11\n_pd_meas_2theta_range_inc 0.1\n"
     "loop_\n_pd_meas_counts_total\n1\n2\n", "end at 10.1, not at _pd_meas_2theta_range_max 11"),
    ("data_x\nloop_\n_pd_meas_2theta_scan\n_pd_meas_counts_total\n10 1\n11 abc\n", "'abc' is not a number"),
    ("data_x\nloop_\n_pd_meas_2theta_scan\n_pd_meas_counts_total\n10 1\n11\n", "not a readable CIF"),
    ("data_x\n_pd_meas_2theta_range_min 10\n_pd_meas_2theta_range_max 11\n_pd_meas_2theta_range_inc 0\n"
     "loop_\n_pd_meas_counts_total\n1\n2\n", "the step not 0"),
    ("data_x\nloop_\n_pd_meas_2theta_scan\n_pd_meas_counts_total\n10 1\n-1 2\n", "point 2: 2θ = -1 deg is outside"),
])
def test_a_bad_powder_cif_is_refused_naming_the_file(tmp_path, content, words):
    path = _write(tmp_path, "bad.cif", content)
    with pytest.raises(PatternError) as caught:
        read_pattern(path)
    assert str(caught.value).startswith(f"{path}: ") and words in str(caught.value)


def test_a_powder_cif_scanned_downwards_is_read_upwards(tmp_path):
    path = _write(tmp_path, "down.cif", PDCIF_RANGE.replace("min 10.0", "min 10.4").replace("max 10.4", "max 10.0")
                  .replace("inc 0.1", "inc -0.1"))
    p = read_pattern(path)
    assert np.allclose(p.two_theta, [10.0, 10.1, 10.2, 10.3, 10.4]) and p.intensity.tolist() == [5, 4, 3, 2, 1]
    assert "high to low" in p.notes[0]


def test_a_pattern_at_mo_ka1_becomes_the_same_crystal_at_cu_ka1():
    """NaCl simulated at both wavelengths: the Mo peaks moved to Cu Kα1 are the Cu peaks, positions and
    relative intensities (Lorentz-polarisation included)."""
    from pymatgen.core import Lattice, Structure

    from xrdcore.diffraction.pxrd import peak_list

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    mo = peak_list(nacl, wavelength="MoKa1", two_theta_range=(3.0, 60.0))
    cu = peak_list(nacl, wavelength="CuKa1", two_theta_range=(5.0, 140.0))
    pattern = MeasuredPattern(mo.two_theta, mo.intensity, None, Path("nacl-mo.cif"), wavelength=mo.wavelength)
    moved = at_wavelength(pattern, cu.wavelength)
    inside = (moved.two_theta >= 5.0) & (moved.two_theta <= 140.0)
    assert inside.sum() == len(cu) >= 10
    assert np.allclose(moved.two_theta[inside], cu.two_theta, atol=1e-6)
    relative = moved.intensity[inside] / moved.intensity[inside].max()
    assert np.allclose(relative, cu.intensity / cu.intensity.max(), rtol=1e-6)
    assert moved.wavelength == cu.wavelength
    with pytest.raises(PatternError, match="does not state its wavelength"):
        at_wavelength(MeasuredPattern(mo.two_theta, mo.intensity, None, Path("a.xy")), 1.54)


def _write(folder: Path, name: str, content: str) -> Path:
    path = folder / name
    path.write_text(content)
    return path
