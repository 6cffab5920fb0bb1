#!/usr/bin/env bash
# Runs the test suite on PostgreSQL + Redis (this machine's local services by
# default), then the rebuild, verify, repair, engine and consistency tests
# again on PostgreSQL with psycopg's connection pool (DATABASE_POOL=true),
# and, at the same time, the whole suite on the embedded SQLite default.
# `scripts/test.sh postgres`, `scripts/test.sh pool`
# or `scripts/test.sh sqlite` runs one of them. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
which="${1:-all}"
[ $# -gt 0 ] && shift
case "$which" in
  all | postgres | pool | sqlite) ;;
  *)
    echo "usage: scripts/test.sh [all|postgres|pool|sqlite] [pytest arguments]" >&2
    exit 2
    ;;
esac

run_pytest() {
  # pytest exits 5 when it ran no test: that is a failure here.
  set +e
  "$BIN/pytest" "$@"
  status=$?
  set -e
  if [ "$status" -eq 5 ]; then
    echo "pytest ran no tests" >&2
    return 1
  fi
  return "$status"
}

on_postgres() {
  DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/storefront}" \
  READ_DATABASE_URL="${READ_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/storefront_read}" \
  CELERY_BROKER_URL="${CELERY_BROKER_URL:-redis://127.0.0.1:6379/15}" \
    "$@"
}

pool_pass() {
  # What a pooled connection carries from one borrower to the next (search
  # path, settings, the pool per alias) is theirs to get right: the tests that
  # borrow and hand back connections in ways of their own run again with the
  # pool on (not the engine's property test, pure batch arithmetic, nor the
  # rebuilds killed by SIGKILL, whose connections die with their process);
  # about a minute.
  echo "== rebuild, verify, repair, engine, consistency and resize tests on PostgreSQL with DATABASE_POOL=true"
  DATABASE_POOL=true on_postgres run_pytest \
    tests/projections/test_rebuild.py tests/projections/test_repair.py \
    tests/projections/test_engine.py tests/api/test_consistency.py \
    tests/projections/test_resize.py \
    -k "not test_batches_of_any_size_equal and not test_a_rebuild_killed_half_way" "$@"
}

sqlite_pass() {
  echo "== test suite on the SQLite default"
  (
    unset DATABASE_URL READ_DATABASE_URL CELERY_BROKER_URL DATABASE_POOL
    STOREFRONT_VAR_DIR="$(mktemp -d)"
    export STOREFRONT_VAR_DIR
    run_pytest "$@"
  )
}

if [ "$which" = all ] || [ "$which" = postgres ]; then
  echo "== test suite on PostgreSQL + Redis"
  on_postgres run_pytest "$@"
fi
case "$which" in
  pool) pool_pass "$@" ;;
  sqlite) sqlite_pass "$@" ;;
  all)
    # The pool pass and the SQLite run share nothing (other databases, no
    # Redis) and each leaves a core mostly idle: run them at once. The pool
    # pass's output follows the SQLite run's.
    pool_log="$(mktemp)"
    pool_pass "$@" >"$pool_log" 2>&1 &
    pool_pid=$!
    set +e
    sqlite_pass "$@"
    sqlite_status=$?
    wait "$pool_pid"
    pool_status=$?
    set -e
    cat "$pool_log"
    rm -f "$pool_log"
    if [ "$sqlite_status" -ne 0 ] || [ "$pool_status" -ne 0 ]; then
      echo "failed: SQLite run $sqlite_status, pool pass $pool_status" >&2
      exit 1
    fi
    ;;
esac
