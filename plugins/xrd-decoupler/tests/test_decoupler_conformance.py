"""xrd-decoupler through the core's test kit: the checks every component passes (xrdcore.testing)."""

import xrdcore.testing as kit


def test_decoupler_encoder_conforms():
    kit.check_encoder("xrd-decoupler:decoupler")


def test_superclass_hierarchy_conforms():
    kit.check_hierarchy("xrd-decoupler:superclass")


def test_mgda_scheduler_conforms():
    kit.check_scheduler("xrd-decoupler:mgda")
