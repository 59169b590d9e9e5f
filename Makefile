# `make bench` runs the main job, `make test` the test suite. Both first set up .venv: a CPU
# build of torch (unless the venv already has a torch), xrdcore with its test extras, and
# every plugin distribution under plugins/, all editable.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*/pyproject.toml)

.PHONY: bench test install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(PLUGINS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[test]" $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $@

# the benchmark harness (`xrdcore bench --plugins all --quick`) lands with the training issue;
# until then the main job shows the installed plugins and label levels, and builds the default data
bench: install
	$(BIN)/xrdcore plugins
	$(BIN)/xrdcore levels
	$(BIN)/xrdcore data build prototypes --out data/prototypes --workers 2
	$(BIN)/xrdcore data info data/prototypes

test: install
	$(BIN)/python -m pytest -q
