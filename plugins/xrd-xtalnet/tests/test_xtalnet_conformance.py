"""xrd-xtalnet through the core's test kit: the checks every component passes (xrdcore.testing)."""

import pytest
import xrdcore.testing as kit


def test_pxrd_encoder_conforms():
    kit.check_encoder("xrd-xtalnet:xtalnet-pxrd")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["xrd-xtalnet:xtalnet", "xrd-xtalnet:pyxtal-random"])
def test_generators_conform(name, xrd_cache):
    kit.check_generator(name, cache=xrd_cache)
