# The two entry points of the README: `make demo` and `make test`. Both set everything up first:
# a virtual environment, the CPU build of torch, the core, every plugin under plugins/ and the
# example plugin under examples/ in editable mode with their test dependencies.

VENV ?= .venv
PY := $(VENV)/bin/python
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
# the example plugin of docs/writing-a-plugin.md: installed and tested like the shipped plugins
EXAMPLE_DIRS := examples/hkt-tabular
STAMP := $(VENV)/.hkt-installed

.PHONY: setup demo test

setup: $(STAMP)

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGIN_DIRS) $(EXAMPLE_DIRS))
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77"
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,plots,onnx]" $(foreach p,$(PLUGIN_DIRS) $(EXAMPLE_DIRS),-e "$(p)[test]")
	touch $@

demo: $(STAMP)
	$(VENV)/bin/hkt demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 -p no:cacheprovider
