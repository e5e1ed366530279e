# The front door. Two commands on a fresh machine:
#   make demo   -- build .venv from the lock, run the whole pipeline on a synthetic county
#   make test   -- build .venv from the lock, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHILDREN ?= 20000
UV_VERSION := 0.13.8

.PHONY: setup demo run test test-fast lint bench clean

setup: $(VENV)/.installed

# Exactly the locked set (hash-checked), then the project itself without dependencies.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	touch $@

demo: setup
	$(BIN)/joinedup demo --children $(CHILDREN)

run: setup
	$(BIN)/joinedup run

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python bench/bench_pipeline.py --children $(CHILDREN)

clean:
	rm -rf var
