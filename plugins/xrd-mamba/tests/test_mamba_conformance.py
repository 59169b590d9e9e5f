"""xrd-mamba through the core's test kit: the checks every encoder passes (xrdcore.testing)."""

import xrdcore.testing as kit


def test_mamba_conforms():
    kit.check_encoder("xrd-mamba:mamba")
