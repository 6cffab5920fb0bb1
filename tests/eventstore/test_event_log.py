"""The event log: one row per domain signal, in the sender's transaction, read in
an order that never skips an event."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, transaction

from catalog import services
from catalog.events import SellerRegistered
from eventstore import eventlog
from eventstore.eventlog import START, LogPosition
from eventstore.events import domain_event, send_event
from eventstore.models import Event
from eventstore.recording import EventOutsideTransaction
from tests.factories import ProductFactory, SellerFactory
from tests.support import nothing_written

WAIT_SECONDS = 10


class Reader:
    """A consumer of the log that keeps its checkpoint, as a projector does."""

    def __init__(self, checkpoint: LogPosition) -> None:
        self.checkpoint = checkpoint
        self.seen: list[eventlog.StoredEvent] = []

    def poll(self) -> list[eventlog.StoredEvent]:
        batch = eventlog.read_events(self.checkpoint, 100)
        if batch:
            self.checkpoint = batch[-1].log_position
        self.seen.extend(batch)
        return batch

    def poll_until_seen(self, count: int) -> list[eventlog.StoredEvent]:
        """Poll until ``count`` events were read, or give up after a while.

        On PostgreSQL the horizon is the oldest transaction running anywhere
        on the server, so another database's open transaction (a concurrent
        test run, the read database) can hold committed events back briefly.
        """
        deadline = time.monotonic() + WAIT_SECONDS
        while len(self.seen) < count and time.monotonic() < deadline:
            if not self.poll():
                time.sleep(0.02)
        return self.seen


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "send",
    [
        lambda event: send_event(event),
        lambda event: domain_event.send(sender=type(event), event=event),
    ],
    ids=["send_event", "signal"],
)
def test_a_domain_signal_outside_a_transaction_raises_and_writes_nothing(send):
    event = SellerRegistered(seller_id=1, name="Nobody", reputation=Decimal("1.00"))

    with nothing_written(), pytest.raises(EventOutsideTransaction):
        send(event)


@pytest.mark.django_db(transaction=True)
def test_a_domain_signal_inside_a_transaction_is_recorded_with_it():
    event = SellerRegistered(seller_id=1, name="Somebody", reputation=Decimal("1.00"))

    with transaction.atomic():
        send_event(event)

    stored = Event.objects.get()
    assert (stored.event_type, stored.version, stored.stream_type, stored.stream_id) == (
        "SellerRegistered",
        1,
        "seller",
        1,
    )
    assert stored.payload == {"seller_id": 1, "name": "Somebody", "reputation": "1.00"}


@pytest.mark.django_db(transaction=True)
def test_the_reader_returns_committed_events_in_order_from_its_checkpoint():
    sellers = [SellerFactory.create() for _ in range(5)]
    reader = Reader(START)

    reader.poll_until_seen(5)
    first_two = eventlog.read_events(START, 2)

    assert [e.stream_id for e in reader.seen] == [s.pk for s in sellers]
    assert first_two == reader.seen[:2]
    assert eventlog.read_events(first_two[-1].log_position, 100) == reader.seen[2:]
    assert reader.poll() == []
    assert eventlog.head() == reader.checkpoint


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_events_carry_the_writing_transactions_id_on_postgresql():
    with transaction.atomic():
        first, second = SellerFactory.create(), SellerFactory.create()
    third = SellerFactory.create()

    by_seller = {e.stream_id: e.transaction_id for e in Reader(START).poll_until_seen(3)}

    assert by_seller[first.pk] == by_seller[second.pk] > 0
    assert by_seller[third.pk] > by_seller[first.pk]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_reader_never_passes_an_event_whose_transaction_commits_late():
    """A takes the lower position but commits after B. Reading by position
    alone would return B while A is open, move the checkpoint past A and
    never see it."""
    early, late = ProductFactory.create(), ProductFactory.create()
    setup_done = Event.objects.latest("position")
    reader = Reader(LogPosition(setup_done.transaction_id, setup_done.position))
    a_recorded, a_may_commit = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def transaction_a():
        try:
            with transaction.atomic():
                services.product_change_price(product_id=early.pk, price="1.00")
                a_recorded.set()
                assert a_may_commit.wait(WAIT_SECONDS)
        except BaseException as error:
            failures.append(error)
            a_recorded.set()
        finally:
            connection.close()

    def transaction_b():
        try:
            services.product_change_price(product_id=late.pk, price="2.00")
        except BaseException as error:
            failures.append(error)
        finally:
            connection.close()

    thread_a = threading.Thread(target=transaction_a)
    thread_a.start()
    assert a_recorded.wait(WAIT_SECONDS)
    thread_b = threading.Thread(target=transaction_b)
    thread_b.start()
    thread_b.join(WAIT_SECONDS)

    while_a_is_open = reader.poll()
    a_may_commit.set()
    thread_a.join(WAIT_SECONDS)
    after_a_committed = reader.poll_until_seen(2)

    assert not failures
    committed = list(Event.objects.filter(event_type="PriceChanged").order_by("position"))
    assert [e.stream_id for e in committed] == [early.pk, late.pk], "A must hold the lower position"
    assert while_a_is_open == []
    assert [(e.stream_id, e.payload["price"]) for e in after_a_committed] == [
        (early.pk, "1.00"),
        (late.pk, "2.00"),
    ]
    assert reader.poll() == []
