# The few commands a newcomer runs. See README.md.
PYTHON ?= $(shell pyenv which python3.12 2>/dev/null || command -v python3.12 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Each install is pinned and hashed (requirements/*.txt, from `make lock`) and
# has a stamp of its own: `make run` installs only what running needs, `make
# setup` (and test, lint) adds the test and lint tools, the bench targets add
# the plots. Each lock holds the same pins as the next larger one.
RUN_STAMP := $(VENV)/.installed-production
DEV_STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: setup run test test-postgres test-sqlite lint lock migrate bench-smoke bench-small bench-large clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# install LOCK: everything in the lock (pip and setuptools too) with
# --require-hashes, then the project itself, editable, with no dependencies and
# built by the locked setuptools (whose warning that folders of the working
# directory shadow the installed packages is moot: they are those packages).
define install
	$(PIP) install --quiet --require-hashes -r $(1)
	PYTHONWARNINGS=ignore::UserWarning $(PIP) install --quiet --no-deps --no-build-isolation -e .
endef

$(RUN_STAMP): requirements/production.txt pyproject.toml | $(BIN)/python
	$(call install,requirements/production.txt)
	touch $@

# dev.txt holds production.txt's pins, so the run install is done too.
$(DEV_STAMP): requirements/dev.txt pyproject.toml | $(BIN)/python
	$(call install,requirements/dev.txt)
	touch $@ $(RUN_STAMP)

$(BENCH_STAMP): requirements/bench.txt pyproject.toml | $(BIN)/python
	$(call install,requirements/bench.txt)
	touch $@ $(DEV_STAMP) $(RUN_STAMP)

setup: $(DEV_STAMP)

## Set up and run the site on the embedded default (SQLite, no broker) with demo data.
## Ctrl-C or SIGTERM to make stops the server and the projector loop.
PORT ?= 8000
RUN_ARGS ?=
run: $(RUN_STAMP)
	exec $(BIN)/python scripts/run_local.py --port $(PORT) $(RUN_ARGS)

## Set up and run the whole test suite: PostgreSQL + Redis, then the SQLite default.
test: $(DEV_STAMP)
	scripts/test.sh

test-postgres: $(DEV_STAMP)
	scripts/test.sh postgres

test-sqlite: $(DEV_STAMP)
	scripts/test.sh sqlite

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports --no-cache

## Regenerate the pinned, hashed requirements from pyproject.toml with pip-tools
## (after changing a dependency; UPGRADE=1 moves every pin to the newest release
## allowed). The largest set is resolved first and each smaller one keeps its
## pins, so production runs the versions the tests ran against.
## tests/config/test_lock_files.py fails while a lock is stale.
LOCK_VENV := .venv-lock
PIP_TOOLS := pip-tools>=7.4,<8
COMPILE = $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade)
lock:
	test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet "$(PIP_TOOLS)"
	$(COMPILE) --extra test --extra lint --extra bench -o requirements/bench.txt \
		pyproject.toml requirements/installer.in
	$(COMPILE) --extra test --extra lint -c requirements/bench.txt -o requirements/dev.txt \
		pyproject.toml requirements/installer.in
	$(COMPILE) -c requirements/dev.txt -o requirements/production.txt \
		pyproject.toml requirements/installer.in

## CI's smoke check: every section of the suite on small data, the shortest runs
## (it fails on errors, never on speed; its figures are too short to quote).
bench-smoke: $(BENCH_STAMP)
	$(BIN)/python -m bench all --size smoke

## The benchmark suite on small data (a few minutes): bench/results/small/report.md.
## Needs PostgreSQL, Redis and wrk (apt-get install -y wrk); see README "Benchmarks".
bench-small: $(BENCH_STAMP)
	$(BIN)/python -m bench all --size small

## The large run behind the README's figures (10K products, 2M reviews; about 35 minutes).
bench-large: $(BENCH_STAMP)
	$(BIN)/python -m bench all --size large

## Migrate both databases (write and read) for the current environment.
migrate: $(RUN_STAMP)
	$(BIN)/python manage.py migrate_all

clean:
	rm -rf $(VENV) var/*.sqlite3*
