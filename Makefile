# The two commands of the README: `make demo` runs the system, `make test` runs every check.
# Both set themselves up: a .venv with the Python dependencies, and PostgreSQL for the tests.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest postgres clean

demo: $(INSTALLED)
	$(BIN)/opq demo

test: lint typecheck pytest

lint: $(INSTALLED)
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports

typecheck: $(INSTALLED)
	$(BIN)/mypy

pytest: $(INSTALLED) postgres
	$(BIN)/pytest

postgres:
	scripts/ensure-postgres.sh

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
