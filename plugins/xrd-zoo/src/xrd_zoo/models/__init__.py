"""One factory per model folder beside this file (``benchmarks/zoo_models.py`` writes them)."""

from xrdcore.zoo import packaged

inorganic = packaged(__name__, "inorganic")
mof = packaged(__name__, "mof")
