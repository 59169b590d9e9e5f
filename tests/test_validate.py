"""The shared argument checks: what they accept, and errors that name the argument."""

import math

import pytest

from xrdcore.bench.generation import GenerationSettings
from xrdcore.bench.harness import BenchSettings
from xrdcore.cli import main
from xrdcore.validate import fraction, int_tuple, positive_float, positive_int, seeds


def test_positive_int_accepts_ints_from_one_and_names_the_argument_otherwise():
    assert positive_int("blocks", 3) == 3
    for bad in (0, -2, 1.0, True, "3", None):
        with pytest.raises(ValueError, match=rf"blocks must be a positive int, got {bad!r}"):
            positive_int("blocks", bad)


def test_int_tuple_takes_one_int_or_a_sequence_of_them():
    assert int_tuple("hidden", 8) == (8,)
    assert int_tuple("hidden", [64, 32]) == (64, 32)
    assert int_tuple("channels", (), allow_empty=True) == ()
    with pytest.raises(ValueError, match="hidden must not be empty"):
        int_tuple("hidden", ())
    with pytest.raises(ValueError, match="each of hidden must be a positive int, got 0"):
        int_tuple("hidden", (8, 0))
    for bad in ("64", 2.5, None):
        with pytest.raises(ValueError, match="hidden must be a sequence of positive ints"):
            int_tuple("hidden", bad)


def test_seeds_are_one_or_more_distinct_non_negative_ints_and_never_a_string():
    assert seeds(3) == (3,) and seeds([0, 1, 2]) == (0, 1, 2)
    for bad in ("0,1", b"0", 1.0, None):
        with pytest.raises(ValueError, match="seeds must be a sequence of ints >= 0"):
            seeds(bad)
    for bad in ((), (0, 0)):
        with pytest.raises(ValueError, match="seeds must be one or more distinct seeds"):
            seeds(bad)
    with pytest.raises(ValueError, match="each of seeds must be a non-negative int"):
        seeds((0, -1))
    # the benchmarks' settings check theirs on construction: "0,1" was once run as the seeds "0", ",", "1"
    for settings in (BenchSettings, GenerationSettings):
        assert settings(seeds=[2, 1]).seeds == (2, 1)
        with pytest.raises(ValueError, match="seeds must be a sequence"):
            settings(seeds="0,1")


def test_bad_seeds_on_the_command_line_fail_before_any_data_is_read(tmp_path, capsys):
    for text in ("0,0", "", "-1", "a"):
        assert main(["bench", "--seeds", text, "--dataset", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
        assert f"--seeds must be distinct comma-separated integers >= 0, got {text!r}" in capsys.readouterr().err


def test_fraction_is_zero_up_to_one_excluded():
    assert fraction("dropout", 0) == 0.0 and fraction("dropout", 0.5) == 0.5
    for bad in (1, 1.5, -0.1, math.nan, True, "0.1"):
        with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\)"):
            fraction("dropout", bad)


def test_positive_float_names_the_unit():
    assert positive_float("goniometer_radius", 240, "mm") == 240.0
    with pytest.raises(ValueError, match="goniometer_radius must be a positive finite number in mm, got 0"):
        positive_float("goniometer_radius", 0, "mm")
    for bad in (-1.0, math.inf, math.nan, False):
        with pytest.raises(ValueError, match="scherrer_constant must be a positive finite number, got"):
            positive_float("scherrer_constant", bad)
