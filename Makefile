# Two commands on a fresh machine: `make demo` (set up + main job), `make test` (set up + tests).
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -m "not slow and not integration and not gpu"

.PHONY: setup demo test test-all lint bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup
	scripts/setup $(VENV)
	touch $@

demo: setup
	$(BIN)/genaiops demo

test: setup
	$(BIN)/pytest $(PYTEST_ARGS) --durations=25

test-all: setup
	$(BIN)/pytest -m "not integration and not gpu"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: setup
	$(BIN)/python bench/run_all.py
