# The two commands that matter: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .venv-tools
UV := $(TOOLS)/bin/uv
RUN := $(UV) run --frozen

.PHONY: install airflow demo up test check lint format chaos bench models clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

install: .venv/.synced ## install every dependency from uv.lock into .venv

# Airflow lives in its own venv (pinned in airflow/requirements.txt) so the main install stays
# light; tests/airflow runs the DAG import check with it.
.venv-airflow/.synced: $(UV) airflow/requirements.txt
	$(UV) venv --quiet --allow-existing --python $(PYTHON) .venv-airflow
	$(UV) pip sync --quiet --python .venv-airflow/bin/python airflow/requirements.txt
	@touch $@

airflow: .venv-airflow/.synced ## install Airflow into .venv-airflow (for the DAG tests)

demo: install ## start the platform (embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL), run `test`
	$(RUN) python -m launcher demo

up: install ## run the whole platform in the foreground until Ctrl-C
	$(RUN) python -m launcher up

test: install airflow ## the whole test suite against real PostgreSQL and Redis
	$(RUN) pytest -q -p no:cacheprovider --durations=15

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy .
	$(RUN) lint-imports

check: lint test ## ruff, ruff format --check, mypy, then the tests

format: install
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

chaos: install ## the fault harness at full size: kills, outages, restarts; prints the counts
	$(RUN) python bench/chaos.py

models: install ## train, evaluate and register the five models in MLflow; writes ml/README.md
	$(RUN) python -m ml.train

bench: install ## throughput benchmark (prints figures; not a test)
	$(RUN) python bench/throughput.py

clean:
	rm -rf var .venv .venv-airflow $(TOOLS)
