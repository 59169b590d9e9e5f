"""pytest plugin of :mod:`xrdcore.testing` (entry point ``pytest11``: pytest loads it wherever
xrdcore is installed): session fixtures of the packaged real data, for a plugin's own tests.

* ``xrd_structures``: 46 MP-20 structures (pymatgen ``Structure``; shared by the session, copy
  one before changing it);
* ``xrd_space_groups``: their spglib space-group numbers (numpy int64, in the same order);
* ``xrd_peaks``: their powder peak lists (``PeakList``, Cu Kα1, 2θ 5-90°);
* ``xrd_cache``: a :class:`~xrdcore.data.cache.PeakCache` of them with the default split,
  built once per session in a temporary directory (a few seconds; what generators fit on).

Importing this module imports neither torch nor pymatgen: every pytest run in the environment
loads it.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def xrd_structures() -> list[Any]:
    """46 MP-20 structures (pymatgen; shared by the session: copy one before changing it)."""
    from xrdcore.testing import data

    return data.structures()


@pytest.fixture(scope="session")
def xrd_space_groups() -> Any:
    """spglib space-group numbers of ``xrd_structures``, in order (numpy int64)."""
    from xrdcore.testing import data

    return data.space_groups()


@pytest.fixture(scope="session")
def xrd_peaks() -> list[Any]:
    """Powder peak lists of ``xrd_structures``, in order (Cu Kα1, 2θ 5-90°)."""
    from xrdcore.testing import data

    return data.peak_lists()


@pytest.fixture(scope="session")
def xrd_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A peak cache of ``xrd_structures`` with the default split, built once per session."""
    from xrdcore.testing import data

    return data.build_cache(tmp_path_factory.mktemp("xrd-cache") / "cache")
