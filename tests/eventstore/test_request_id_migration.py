"""Adding ``Event.request_id`` behind a long reader of the log: the migration
gives up after its lock timeout (and can be run again) instead of holding
every command behind its wait for the table's lock."""

import time

import psycopg
import pytest
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.db.utils import OperationalError

from eventstore.databases import WRITE_DB
from tests.projections.processes import database_url

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, databases=[WRITE_DB, "read"]),
]

BEFORE = [("eventstore", "0001_initial")]
AFTER = [("eventstore", "0003_guard_every_column_but_the_payload")]


def migrate(targets: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connections[WRITE_DB])
    executor.loader.build_graph()
    executor.migrate(targets)


def test_the_column_waits_briefly_for_the_tables_lock_and_can_be_run_again():
    migrate(BEFORE)
    try:
        with psycopg.connect(database_url(WRITE_DB)) as reader:
            reader.execute("SELECT count(*) FROM projections_event")  # holds ACCESS SHARE
            started = time.monotonic()
            with pytest.raises(OperationalError, match="lock timeout"):
                migrate(AFTER)
            waited = time.monotonic() - started
            assert 4 <= waited < 15
            reader.rollback()
        migrate(AFTER)  # run again once the reader is gone
    finally:
        migrate(AFTER)
    with connections[WRITE_DB].cursor() as cursor:
        cursor.execute("SELECT request_id FROM projections_event LIMIT 1")
