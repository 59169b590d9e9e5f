# `make bench` runs the main job, `make test` the test suite. Both first set up .venv: a CPU
# build of torch (unless the venv already has a torch), xrdcore with its test extras, and
# every plugin distribution under plugins/, all editable.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*/pyproject.toml)

.PHONY: bench test install fuzz

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(PLUGINS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[test]" $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $@

# the main job: every valid encoder × hierarchy × scheduler of the installed plugins, tiny variants,
# on the embedded default data (built into data/ on first use); rerunning continues or reuses it
bench: install
	$(BIN)/xrdcore bench --plugins all --quick --out bench-quick --resume

test: install
	$(BIN)/python -m pytest -q

# every reader (CIF, patterns, pdCIF, exports, checkpoints, model packages) fed 2,000 damaged files
# each; the test suite runs the same tests on a short budget (XRDCORE_FUZZ_EXAMPLES sets it)
fuzz: install
	XRDCORE_FUZZ_EXAMPLES=$${XRDCORE_FUZZ_EXAMPLES:-2000} $(BIN)/python -m pytest -q tests/test_fuzz.py

# the git-ignored folder a call on a lent GPU carries (benchmarks/gpu/prepare.sh: the CoRE MOF export
# and the spglib wheel for the GPU's Python 3.12), checked against the 64 MiB a call carries;
# COREMOF_CACHE=DIR names a built CoRE MOF cache (default: the newest data/coremof-*)
.PHONY: gpu-carry
gpu-carry: install
	PYTHON=$(BIN)/python bash benchmarks/gpu/prepare.sh $(COREMOF_CACHE)
