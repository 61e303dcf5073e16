# contactsync — every target installs what it needs, idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CHROMIUM := /usr/bin/chromium
DEMO ?= 1
LAYER ?= build/layer

.DEFAULT_GOAL := help
.PHONY: help install run test lint typecheck cfn-lint unit integration e2e browser bench chaos fuzz package clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt layers/core/requirements.txt layers/core/pyproject.toml cli/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e layers/core
	$(BIN)/pip install --quiet --no-deps -e cli
	touch $@

$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP) $(NODE_STAMP) ## Create the virtualenv and install Python and Node dependencies

# The browser tests drive Debian's Chromium through playwright (browser downloads do not work
# everywhere; the distribution's package does).
$(CHROMIUM):
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium

run: install ## Start the whole service locally (DEMO=0: no demo connection)
	$(BIN)/python -m local.run --demo $(DEMO)

lint: $(STAMP) ## ruff lint and format check, and the layering contracts (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

typecheck: $(STAMP) ## mypy strict on the core layer, the handlers, the local stack and the CLI
	$(BIN)/mypy

cfn-lint: $(STAMP) ## Lint the SAM template
	$(BIN)/cfn-lint template.yaml

test: install $(CHROMIUM) lint typecheck cfn-lint ## Lint, type-check and run every test (chaos and fuzz in their short settings)
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=25 tests

unit: $(STAMP) ## Only the unit tests (no sockets)
	$(BIN)/python -m pytest tests/unit

integration: install ## Only the integration tests (sandboxes and emulators on loopback)
	$(BIN)/python -m pytest -n 2 --dist loadfile tests/integration tests/security

e2e: install ## Only the end-to-end tests (the whole local stack)
	$(BIN)/python -m pytest -n 2 --dist loadfile tests/e2e

browser: install $(CHROMIUM) ## Only the browser tests (Chromium on the local stack; screenshots in .local/screenshots)
	$(BIN)/python -m pytest tests/browser

chaos: install ## The long chaos run (CHAOS_OPS operations, CHAOS_SEED to replay a seed)
	CHAOS_OPS=$${CHAOS_OPS:-3000} CHAOS_SEED=$${CHAOS_SEED:-$$RANDOM} \
	  $(BIN)/python -m pytest -s -q tests/chaos/test_chaos.py

fuzz: install ## The long fuzz run of the webhooks and the admin API (FUZZ_EXAMPLES each)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-2000} $(BIN)/python -m pytest -s -q tests/fuzz

bench: install ## Run the benchmarks and print their figures
	$(BIN)/python -m bench

package: ## Build the Lambda artifacts without Docker (Linux wheels for python3.12; LAYER=folder)
	rm -rf $(LAYER) && mkdir -p $(LAYER)/python
	$(PYTHON) -m pip install --quiet --target $(LAYER)/python --platform manylinux2014_x86_64 \
	  --implementation cp --python-version 3.12 --only-binary=:all: -r layers/core/requirements.txt
	cp -r layers/core/contactsync $(LAYER)/python/
	@echo "layer built in $(LAYER); sam deploy uses template.yaml"

clean: ## Remove the virtualenv, node packages and local state
	rm -rf $(VENV) node_modules .local build
