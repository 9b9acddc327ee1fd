# remote_guard: every target bootstraps its own virtual environment in .venv/.
# Run `make help` to list the targets.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
            command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help demo test lint typecheck pytest screenshots bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "remote_guard needs Python 3.11 or newer on PATH (python3.11, python3.12 or python3)." >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: $(STAMP) ## Run the demo: a simulated school tenant over HTTPS, polled into SQLite under var/demo/
	$(BIN)/remote-guard demo

test: $(STAMP) lint typecheck pytest ## Run the whole test suite (lint, types, unit, end-to-end)

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP) ## mypy --strict over src/
	$(BIN)/mypy

pytest: $(STAMP) ## pytest on SQLite, then the tests that store data again on PostgreSQL
	$(BIN)/pytest -n 2
	REMOTE_GUARD_TEST_DATABASE=postgresql $(BIN)/pytest -n 2

screenshots: $(STAMP) ## Regenerate docs/screenshots/*.png from the browser tests (needs chromium)
	REMOTE_GUARD_SCREENSHOTS=1 $(BIN)/pytest -q -m browser -k screenshot tests/web

bench: $(STAMP) ## Benchmarks (long; not part of make test)
	$(BIN)/python -m bench

clean: ## Remove the virtual environment and local state
	rm -rf $(VENV) var/demo .pytest_cache .mypy_cache .ruff_cache
