# Two commands do all the set-up on a fresh machine:
#   make demo   install, then run the built-in quickstart (examples/quickstart.yaml)
#   make test   install, then run the test suite (what CI runs; `make test-all` adds the
#               tests marked slow: benchmark smoke runs, duplicate variants, llama.cpp)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# glibc malloc otherwise page-faults ~140k times a training step (+20-26% at 4.7M params).
# They keep freed memory in the process: with the old whole-split tokenization that held a
# worker at 5.4 GB; tokenization now streams, and a cold-cache quickstart-shaped run peaks at
# the same RSS with and without them (README, "Corpora of any size"), so they stay.
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 68719476736

.PHONY: install demo test test-all lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch 2.13.0 first: it is the CPU build on local disk; the package's own torch range then
# is already met and pip never pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/scalelab run examples/quickstart.yaml
	$(BIN)/scalelab results examples/quickstart.yaml

test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-all: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/fit_speed.py

clean:
	rm -rf $(VENV) scalelab-results .pytest_cache
