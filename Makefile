# make demo: set up .venv if missing, then run the notebook headless on the embedded demo dataset.
# make test: set up .venv if missing, then run the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_ARGS ?=

.PHONY: install demo test bench-tfrecord clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

demo: install
	$(PY) scripts/run_notebook.py $(DEMO_ARGS)

test: install
	$(PY) -m pytest -q -ra -n 2 --durations=15 tests

bench-tfrecord: install
	$(PY) benchmarks/tfrecord_throughput.py
