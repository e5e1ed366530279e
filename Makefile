# The front door. Two commands on a fresh machine:
#   make demo   -- build .venv from the lock, run the whole pipeline on a synthetic county
#   make test   -- build .venv from the lock, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHILDREN ?= 20000
UV_VERSION := 0.13.8

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser-deps chromium demo run test test-fast lint bench clean

setup: $(VENV)/.installed

# Exactly the locked set (hash-checked), then the project itself without dependencies.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	touch $@

# The browser tests drive Debian's chromium (never a downloaded browser) and check pages with
# axe-core from the npm registry (locked in package-lock.json).
browser-deps: chromium node_modules/.installed

chromium:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
	  echo "installing Debian's chromium and chromium-driver for the browser tests"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

demo: setup
	$(BIN)/joinedup demo --children $(CHILDREN)

run: setup
	$(BIN)/joinedup run

test: setup browser-deps
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
