# Everything runs from the project's own virtualenv (.venv) and node_modules; `make setup` creates both.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTHON ?= python3
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo test lint typecheck unit bench synth clean test-compat compat-lock

# Supported Airflow versions (airflow_compat.SUPPORTED_AIRFLOW_RANGE): each gets its own virtualenv under .compat/,
# made from requirements/airflow-X.Y.lock (pip-frozen real installs), and runs the tests marked `compat`.
AIRFLOW_VERSIONS ?= 2.11 3.1 3.2 3.3
# `make test` runs the matrix without 3.3: the dev virtualenv (requirements/dev.lock) is 3.3 and `unit` ran it.
CI_AIRFLOW_VERSIONS := 2.11 3.1 3.2
AIRFLOW_PIN_2.11 := 2.11.2
AIRFLOW_PIN_3.1 := 3.1.8
AIRFLOW_PIN_3.2 := 3.2.2
AIRFLOW_PIN_3.3 := 3.3.2
# 2.11 refuses SQLite beside a parallel executor: its local mode (make demo AIRFLOW=2.11) runs an embedded PostgreSQL.
# 3.x moved the standard operators into a provider; 2.11 ships them in core.
AIRFLOW_LOCK_EXTRA_2.11 := psycopg2-binary pgserver
AIRFLOW_LOCK_EXTRA_3.1 := apache-airflow-providers-standard
AIRFLOW_LOCK_EXTRA_3.2 := apache-airflow-providers-standard
AIRFLOW_LOCK_EXTRA_3.3 := apache-airflow-providers-standard
COMPAT := .compat
# Where the compat tests live: the compat virtualenvs have no CDK, so the rest of tests/ is not even collected.
COMPAT_TESTS := tests/executor

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

# tests/e2e/test_demo_dag_airflow2.py runs the demo on the Airflow 2.11 virtualenv: made here, before pytest starts.
unit: setup $(COMPAT)/airflow-2.11/.installed
	$(BIN)/pytest -q -n 2 --dist loadfile

test: lint typecheck unit
	$(MAKE) test-compat AIRFLOW_VERSIONS="$(CI_AIRFLOW_VERSIONS)"

$(COMPAT)/airflow-%/.installed: requirements/airflow-%.lock pyproject.toml
	rm -rf $(COMPAT)/airflow-$*
	$(PYTHON) -m venv $(COMPAT)/airflow-$*
	$(COMPAT)/airflow-$*/bin/pip install -q --upgrade pip
	$(COMPAT)/airflow-$*/bin/pip install -q -r requirements/airflow-$*.lock
	$(COMPAT)/airflow-$*/bin/pip install -q --no-deps -e .
	touch $@

# One run per version; every version runs even if one fails, and the make fails if any did.
test-compat: $(foreach v,$(AIRFLOW_VERSIONS),$(COMPAT)/airflow-$(v)/.installed)
	@failed=""; for v in $(AIRFLOW_VERSIONS); do \
		echo "== Airflow $$v: $$($(COMPAT)/airflow-$$v/bin/python -c 'import airflow; print(airflow.__version__)')"; \
		$(COMPAT)/airflow-$$v/bin/pytest -q -m compat -n 2 --dist loadfile -p no:cacheprovider $(COMPAT_TESTS) || failed="$$failed $$v"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-compat failed on Airflow$$failed"; exit 1; fi

# Regenerate one version's lock from requirements/compat.in and that Airflow release: make compat-lock AIRFLOW=3.2
compat-lock:
	@test -n "$(AIRFLOW_PIN_$(AIRFLOW))" || { echo "AIRFLOW must be one of: $(AIRFLOW_VERSIONS)"; exit 1; }
	rm -rf $(COMPAT)/lock-$(AIRFLOW)
	$(PYTHON) -m venv $(COMPAT)/lock-$(AIRFLOW)
	$(COMPAT)/lock-$(AIRFLOW)/bin/pip install -q --upgrade pip
	$(COMPAT)/lock-$(AIRFLOW)/bin/pip install -q "apache-airflow==$(AIRFLOW_PIN_$(AIRFLOW))" \
		$(AIRFLOW_LOCK_EXTRA_$(AIRFLOW)) -r requirements/compat.in
	{ echo "# Airflow $(AIRFLOW) test environment for make test-compat: pip freeze of requirements/compat.in +" \
		"apache-airflow==$(AIRFLOW_PIN_$(AIRFLOW)) $(AIRFLOW_LOCK_EXTRA_$(AIRFLOW)) (make compat-lock AIRFLOW=$(AIRFLOW))."; \
		$(COMPAT)/lock-$(AIRFLOW)/bin/pip freeze; } > requirements/airflow-$(AIRFLOW).lock
	rm -rf $(COMPAT)/lock-$(AIRFLOW)

# make demo AIRFLOW=2.11 (or 3.1, 3.2, 3.3): the demo on that Airflow's virtualenv (made from its lock if missing).
demo: setup $(if $(AIRFLOW),$(COMPAT)/airflow-$(AIRFLOW)/.installed)
	$(PY) -m harness.local demo $(if $(AIRFLOW),--airflow-venv $(COMPAT)/airflow-$(AIRFLOW))

bench: setup
	$(PY) -m harness.bench

synth: setup
	npx cdk synth --quiet

clean:
	rm -rf cdk.out .mypy_cache .ruff_cache .pytest_cache $(COMPAT)
