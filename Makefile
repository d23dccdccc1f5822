# Set-up and the two front doors. `make fit` and `make test` work on a fresh clone of a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
DATA := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data fit test test-fast bench docs docs-serve clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch/torchvision are pinned in setup.cfg; pip takes them from this machine's disk
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed data

data:
	@if [ -f $(DATA) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' (Debian) or pass --data-dir"; fi

fit: setup
	$(PY) -m moga_lab.fit --variant small

test: setup
	$(PY) -m pytest -q

# the unit tests alone (no training, subprocesses, notebooks or GPU): the quick loop while editing
test-fast: setup
	$(PY) -m pytest -q -m 'not slow and not cuda' tests

# the documentation site, strict (broken links and docstring errors fail), into site/
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

docs-serve: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

bench: setup
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) build *.egg-info site .cache
