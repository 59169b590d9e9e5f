import xrdcore.testing as kit
def test_encoder(): kit.check_encoder("xrd-example:example-conv")
def test_hierarchy(): kit.check_hierarchy("xrd-example:lattice")
