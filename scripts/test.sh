#!/usr/bin/env bash
# Runs the test suite on PostgreSQL + Redis (this machine's local services by
# default), then the rebuild, verify, repair, engine and consistency tests
# again on PostgreSQL with psycopg's connection pool (DATABASE_POOL=true),
# then the whole suite on the embedded SQLite default. `scripts/test.sh postgres`, `scripts/test.sh pool`
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

if [ "$which" = all ] || [ "$which" = postgres ]; then
  echo "== test suite on PostgreSQL + Redis"
  on_postgres run_pytest "$@"
fi
if [ "$which" = all ] || [ "$which" = pool ]; then
  # What a pooled connection carries from one borrower to the next (search
  # path, settings, the pool per alias) is theirs to get right: the tests that
  # borrow and hand back connections in ways of their own run again with the
  # pool on (not the engine's property test, pure batch arithmetic, nor the
  # rebuilds killed by SIGKILL, whose connections die with their process);
  # about two minutes.
  echo "== rebuild, verify, repair, engine and consistency tests on PostgreSQL with DATABASE_POOL=true"
  DATABASE_POOL=true on_postgres run_pytest \
    tests/projections/test_rebuild.py tests/projections/test_repair.py \
    tests/projections/test_engine.py tests/api/test_consistency.py \
    -k "not test_batches_of_any_size_equal and not test_a_rebuild_killed_half_way" "$@"
fi
if [ "$which" = all ] || [ "$which" = sqlite ]; then
  echo "== test suite on the SQLite default"
  (
    unset DATABASE_URL READ_DATABASE_URL CELERY_BROKER_URL DATABASE_POOL
    STOREFRONT_VAR_DIR="$(mktemp -d)"
    export STOREFRONT_VAR_DIR
    run_pytest "$@"
  )
fi
