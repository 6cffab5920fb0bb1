"""The log's horizon waits for event writers only, and the event table
guards itself (PostgreSQL): an event comes only from an announced writer, and
what is written stays written."""

import contextlib
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import DatabaseError, connection, connections, transaction
from django.test import Client

from catalog import services
from catalog.models import Seller
from eventstore import eventlog
from eventstore.eventlog import EVENT_WRITER_LOCK, LogPosition
from eventstore.models import Event
from eventstore.recording import (
    ANNOUNCE_PARAMETERS,
    ANNOUNCE_SQL,
    EventWriterTooLate,
    announce_event_writer,
    command_transaction,
)
from queries.health import lag_cache
from tests.factories import ProductFactory
from tests.projections.processes import database_url
from tests.support import last_position, nothing_written

pytestmark = pytest.mark.postgres

WAIT_SECONDS = 10.0


def _reader_at_head() -> LogPosition:
    last = Event.objects.latest("position")
    return LogPosition(last.transaction_id, last.position)


def _read_until(start: LogPosition, stream_id: int, deadline: float) -> list[eventlog.StoredEvent]:
    """Read the log from ``start`` until an event of ``stream_id`` shows up;
    the events read up to it."""
    while True:
        events = eventlog.read_events(start, 100)
        if any(e.stream_id == stream_id for e in events) or time.monotonic() > deadline:
            return events
        time.sleep(0.01)


@contextlib.contextmanager
def open_transaction(*statements: str) -> Iterator[psycopg.Connection]:
    """A transaction of another session on the write database, left open for
    the block (a batch job, a session idle in transaction), then rolled back."""
    with psycopg.connect(database_url("default")) as other:
        for statement in statements:
            other.execute(statement)
        try:
            yield other
        finally:
            other.rollback()


@pytest.mark.django_db(transaction=True)
def test_an_unrelated_write_transaction_left_open_does_not_hold_readers_back():
    product = ProductFactory.create()
    start = _reader_at_head()

    with open_transaction("INSERT INTO auth_group (name) VALUES ('nightly batch job')") as other:
        assigned = other.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()
        assert assigned is not None
        assert assigned[0] is not None
        services.product_change_price(product_id=product.pk, price=Decimal("12.34"))
        seen = _read_until(start, product.pk, time.monotonic() + WAIT_SECONDS)
        still_open = other.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS

    assert still_open
    assert [(e.stream_id, e.event_type, e.payload["price"]) for e in seen] == [
        (product.pk, "PriceChanged", "12.34")
    ]


@pytest.mark.django_db(transaction=True, databases=["default", "read"])
def test_an_announced_writer_holds_readers_back_until_it_ends_and_is_reported_as_stalled(
    settings,
):
    settings.PROJECTION_STALL_SECONDS = 0.2
    early, late = ProductFactory.create(), ProductFactory.create()
    start = _reader_at_head()
    recorded, may_end = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            with command_transaction():
                services.product_change_price(product_id=early.pk, price=Decimal("1.00"))
                recorded.set()
                assert may_end.wait(WAIT_SECONDS)
        except BaseException as error:
            failures.append(error)
            recorded.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert recorded.wait(WAIT_SECONDS)
        services.product_change_price(product_id=late.pk, price=Decimal("2.00"))
        time.sleep(0.3)  # past the stall threshold
        held_back = eventlog.read_events(start, 100)
        stalled = eventlog.stalled_writers(settings.PROJECTION_STALL_SECONDS)
        status = _projection_status()
        lag_cache.clear()
        health = Client().get("/healthz")  # from 127.0.0.1: an internal caller
    finally:
        may_end.set()
        thread.join(WAIT_SECONDS)
    after = _read_until(start, late.pk, time.monotonic() + WAIT_SECONDS)

    assert not failures
    assert held_back == []
    assert len(stalled) == 1
    assert stalled[0].seconds >= 0.2
    assert stalled[0].pid != connection.cursor().connection.info.backend_pid
    assert status.code == 1
    assert f"stalled behind pid {stalled[0].pid} (idle in transaction for" in status.out
    assert health.status_code == 503
    assert any(
        reason.startswith(f"projectors stalled behind pid {stalled[0].pid} (idle in transaction")
        for reason in health.json()["reasons"]
    ), health.json()
    assert [e.stream_id for e in after] == [early.pk, late.pk]
    assert eventlog.stalled_writers(0) == []


class _Status:
    def __init__(self, code: int, out: str) -> None:
        self.code, self.out = code, out


def _projection_status() -> _Status:
    import io

    out = io.StringIO()
    try:
        call_command("projection_status", stdout=out, stderr=io.StringIO())
    except SystemExit as exit_:
        return _Status(int(exit_.code or 0), out.getvalue())
    return _Status(0, out.getvalue())


@pytest.mark.django_db(transaction=True)
def test_a_command_after_an_unannounced_write_is_refused_and_leaves_nothing():
    with nothing_written(), pytest.raises(EventWriterTooLate), transaction.atomic():  # noqa: PT012
        Group.objects.create(name="written before the command")
        services.seller_register(name="Too late", reputation=Decimal("1.00"))

    assert not Group.objects.exists()
    assert not Seller.objects.filter(name="Too late").exists()


@pytest.mark.django_db(transaction=True)
def test_the_event_table_refuses_an_event_from_a_transaction_that_never_announced():
    before = last_position()

    with pytest.raises(DatabaseError, match="announced as an event writer"), transaction.atomic():
        Event.objects.create(
            stream_type="seller", stream_id=1, event_type="X", version=1, payload={}
        )

    assert last_position() == before


@pytest.mark.django_db(transaction=True)
def test_a_transaction_refused_as_too_late_holds_no_writer_lock_and_records_nothing():
    """Had a caller caught the refusal and gone on, the transaction would have
    held the writers' lock and the setting the trigger checks, after a reader
    took it for a bystander (it had an id without the lock): its event would
    be behind that reader. It gets neither (fails without the fix)."""
    before = last_position()

    with transaction.atomic():
        Group.objects.create(name="written before the announcement")
        with pytest.raises(EventWriterTooLate):
            announce_event_writer()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"
                " AND locktype = 'advisory' AND classid = %s AND objid = %s",
                list(EVENT_WRITER_LOCK),
            )
            held = cursor.fetchone()[0]
        with (
            pytest.raises(DatabaseError, match="announced as an event writer"),
            transaction.atomic(),
        ):
            Event.objects.create(
                stream_type="seller", stream_id=1, event_type="X", version=1, payload={}
            )
        transaction.set_rollback(True)

    assert held == 0
    assert last_position() == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "change",
    [
        lambda: Event.objects.update(payload={"forged": True}),
        lambda: Event.objects.filter(event_type="PriceChanged").delete(),
        lambda: Event.objects.update(event_type="Forged"),
    ],
    ids=["update", "delete", "update-type"],
)
def test_the_event_log_refuses_update_and_delete(change):
    product = ProductFactory.create()
    services.product_change_price(product_id=product.pk, price=Decimal("3.00"))
    before = list(Event.objects.order_by("position").values())

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        change()

    assert list(Event.objects.order_by("position").values()) == before


@pytest.mark.django_db(transaction=True)
def test_redaction_may_change_a_payload_and_nothing_else():
    product = ProductFactory.create()
    event = Event.objects.filter(stream_id=product.pk, event_type="ProductCreated").get()

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('storefront.log_redaction', 'on', true)")
        Event.objects.filter(pk=event.pk).update(payload={**event.payload, "description": ""})
    with (  # noqa: PT012 (the setting, then the change it must not allow)
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT set_config('storefront.log_redaction', 'on', true)")
        Event.objects.filter(pk=event.pk).update(stream_id=event.stream_id + 1)

    redacted = Event.objects.get(pk=event.pk)
    assert redacted.payload["description"] == ""
    assert (redacted.stream_id, redacted.transaction_id, redacted.occurred_at) == (
        event.stream_id,
        event.transaction_id,
        event.occurred_at,
    )


RACE_WRITERS = 4
RACE_SECONDS = 6.0


def _commit_events_until(stop: threading.Event, stream_id: int, failures: list) -> None:
    """An announced writer, as ``command_transaction`` makes one, committing
    one event per transaction as fast as it can, on a session of its own."""
    try:
        with psycopg.connect(database_url("default")) as writer:
            while not stop.is_set():
                too_late = writer.execute(ANNOUNCE_SQL, ANNOUNCE_PARAMETERS).fetchone()
                assert too_late is not None
                assert not too_late[0]
                writer.execute(
                    "INSERT INTO projections_event (stream_type, stream_id, event_type, version,"
                    " payload) VALUES ('race', %s, 'Raced', 1, '{}')",
                    [stream_id],
                )
                writer.commit()
    except BaseException as error:
        failures.append(error)


@pytest.mark.django_db(transaction=True)
def test_a_reader_misses_no_event_of_writers_that_commit_while_it_reads():
    """Writers commit without pause while a reader goes along the log: every
    event the log ends with was read once, in order. A writer that is
    committing gives back its locks one after the other; a reader that saw
    its id but not its writer's lock must not take it for a bystander (it
    would pass it, and the events its snapshot did not show yet)."""
    start = eventlog.head()
    stop = threading.Event()
    failures: list[BaseException] = []
    writers = [
        threading.Thread(target=_commit_events_until, args=(stop, n, failures))
        for n in range(RACE_WRITERS)
    ]
    for thread in writers:
        thread.start()
    seen: list[LogPosition] = []
    position = start
    try:
        deadline = time.monotonic() + RACE_SECONDS
        while time.monotonic() < deadline:
            for event in eventlog.read_events(position, 500):
                if event.stream_type == "race":
                    seen.append(event.log_position)
                position = event.log_position
    finally:
        stop.set()
        for thread in writers:
            thread.join(WAIT_SECONDS)
    while events := eventlog.read_events(position, 500):
        seen += [event.log_position for event in events if event.stream_type == "race"]
        position = events[-1].log_position

    assert not failures
    logged = [
        LogPosition(txid, position)
        for txid, position in Event.objects.filter(stream_type="race")
        .order_by("transaction_id", "position")
        .values_list("transaction_id", "position")
    ]
    missed = sorted(set(logged) - set(seen))
    assert len(logged) > 200, "the writers hardly wrote"
    assert missed == [], f"{len(missed)} of {len(logged)} events were passed unseen"
    assert seen == logged
