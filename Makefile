# Frontline: `make demo` sets up a virtualenv and runs the demo on the embedded broker;
# `make test` sets it up and runs the whole test suite (what CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/frontline demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/pipeline_bench.py
	$(BIN)/python bench/ledger_bench.py
	$(BIN)/python bench/takeover_bench.py
	$(BIN)/python bench/decision_quality.py

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check models agents streams tests bench

clean:
	rm -rf $(VENV) frontline-data .pytest_cache
