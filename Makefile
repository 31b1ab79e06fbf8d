# Everything runs from the project's own virtualenv (.venv) and node_modules; `make setup` creates both.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTHON ?= python3
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo test lint typecheck unit bench synth clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements/dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements/dev.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy executor lambdas infra app.py harness tests

unit: setup
	$(BIN)/pytest -q -n 2 --dist loadfile

test: lint typecheck unit

demo: setup
	$(PY) -m harness.local demo

bench: setup
	$(PY) -m harness.bench

synth: setup
	npx cdk synth --quiet

clean:
	rm -rf cdk.out .mypy_cache .ruff_cache .pytest_cache
