"""xrd-msdn through the core's test kit: the checks every component passes (xrdcore.testing)."""

import pytest
import xrdcore.testing as kit


@pytest.mark.parametrize("name", ["xrd-msdn:msdn", "xrd-msdn:densenet"])
def test_encoders_conform(name):
    report = kit.check_encoder(name)
    assert ("training per-view heads" in report.passed) == name.endswith(":msdn")  # three views vs one


def test_zone_axis_simulator_conforms():
    kit.check_simulator("xrd-msdn:zone-axis")
