"""The event table moved from the projections app to the event store by
state-only migrations: a database migrated before the move keeps every event
and every read-model row, and the event store reads them."""

import pytest
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from eventstore.databases import READ_DB, WRITE_DB
from eventstore.models import Event
from eventstore.recording import command_transaction
from projections.registry import project_all
from tests.projections.history import (
    assert_exact,
    make_users,
    random_command,
    seed_catalog,
    snapshot,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=[WRITE_DB, READ_DB])

# The last migrations before the move (main before the event store app).
BEFORE_THE_MOVE = [("projections", "0008_parked_event_resolve_permission"), ("eventstore", None)]
# The event's fields then (later migrations add others).
FIELDS_THEN = [
    "position",
    "transaction_id",
    "stream_type",
    "stream_id",
    "event_type",
    "version",
    "payload",
    "occurred_at",
]


def migrate(alias: str, targets: list[tuple[str, str | None]] | None = None) -> None:
    executor = MigrationExecutor(connections[alias])
    executor.loader.build_graph()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())


def test_a_database_from_before_the_move_keeps_every_event_and_read_model_row():
    import random

    rng = random.Random(12)
    users = make_users()
    seed_catalog(rng)
    for _ in range(40):
        random_command(rng, users)
    project_all()
    try:
        for alias in (WRITE_DB, READ_DB):
            migrate(alias, BEFORE_THE_MOVE)
        # An event recorded while the table still belonged to the projections
        # app, through that app's historical model.
        before = MigrationExecutor(connections[WRITE_DB]).loader.project_state(
            ("projections", "0008_parked_event_resolve_permission")
        )
        old_event = before.apps.get_model("projections", "Event")
        with command_transaction():
            old_event.objects.create(
                stream_type="seller", stream_id=10**6, event_type="Noted", version=1, payload={}
            )
        events = list(Event.objects.order_by("position").values(*FIELDS_THEN))
        rows = snapshot()
    finally:
        for alias in (WRITE_DB, READ_DB):
            migrate(alias)

    assert list(Event.objects.order_by("position").values(*FIELDS_THEN)) == events
    assert set(Event.objects.values_list("request_id", flat=True)) == {""}
    assert events[-1]["event_type"] == "Noted"
    assert snapshot() == rows
    assert_exact()
