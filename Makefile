# The few commands a newcomer runs. See README.md.
PYTHON ?= $(shell pyenv which python3.12 2>/dev/null || command -v python3.12 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-postgres test-sqlite lint migrate bench-smoke bench-small bench-large clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

## Set up and run the site on the embedded default (SQLite, no broker) with demo data.
## Ctrl-C or SIGTERM to make stops the server and the projector loop.
PORT ?= 8000
RUN_ARGS ?=
run: $(STAMP)
	exec $(BIN)/python scripts/run_local.py --port $(PORT) $(RUN_ARGS)

## Set up and run the whole test suite: PostgreSQL + Redis, then the SQLite default.
test: $(STAMP)
	scripts/test.sh

test-postgres: $(STAMP)
	scripts/test.sh postgres

test-sqlite: $(STAMP)
	scripts/test.sh sqlite

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports --no-cache

## CI's smoke check: every section of the suite on small data, the shortest runs
## (it fails on errors, never on speed; its figures are too short to quote).
bench-smoke: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m bench all --size smoke

## The benchmark suite on small data (a few minutes): bench/results/small/report.md.
## Needs PostgreSQL, Redis and wrk (apt-get install -y wrk); see README "Benchmarks".
bench-small: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m bench all --size small

## The large run behind the README's figures (10K products, 2M reviews; about 35 minutes).
bench-large: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m bench all --size large

## Migrate both databases (write and read) for the current environment.
migrate: $(STAMP)
	$(BIN)/python manage.py migrate_all

clean:
	rm -rf $(VENV) var/*.sqlite3*
