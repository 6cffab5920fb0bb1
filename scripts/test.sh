#!/usr/bin/env bash
# Runs the test suite on PostgreSQL + Redis (this machine's local services by
# default) and then on the embedded SQLite default. `scripts/test.sh postgres`
# or `scripts/test.sh sqlite` runs one of them. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
which="${1:-all}"
[ $# -gt 0 ] && shift
case "$which" in
  all | postgres | sqlite) ;;
  *)
    echo "usage: scripts/test.sh [all|postgres|sqlite] [pytest arguments]" >&2
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

if [ "$which" = all ] || [ "$which" = postgres ]; then
  echo "== test suite on PostgreSQL + Redis"
  DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/storefront}" \
  READ_DATABASE_URL="${READ_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/storefront_read}" \
  CELERY_BROKER_URL="${CELERY_BROKER_URL:-redis://127.0.0.1:6379/15}" \
    run_pytest "$@"
fi
if [ "$which" = all ] || [ "$which" = sqlite ]; then
  echo "== test suite on the SQLite default"
  (
    unset DATABASE_URL READ_DATABASE_URL CELERY_BROKER_URL
    STOREFRONT_VAR_DIR="$(mktemp -d)"
    export STOREFRONT_VAR_DIR
    run_pytest "$@"
  )
fi
