"""Session fixture for the xrd-xtalnet tests: a tiny CPCP model trained on the MP-20 sample
(``mp20_cache``, from the repository's conftest.py)."""

import pytest

from xrd_xtalnet.plugin import TINY_CPCP


@pytest.fixture(scope="session")
def cpcp_run(mp20_cache, tmp_path_factory):
    """A finished CPCP run: tiny encoders, structures of at most 20 atoms, a few epochs."""
    from xrd_xtalnet.cpcp import CPCPConfig, train_cpcp

    out = tmp_path_factory.mktemp("cpcp") / "run"
    config = CPCPConfig(**TINY_CPCP, max_atoms=20, epochs=3, batch_size=8, lr=1e-3)
    results = train_cpcp(mp20_cache, out, config)
    return out, results
