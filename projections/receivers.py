"""The one receiver that turns every domain signal into an event row."""

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.dispatch import receiver

from catalog.errors import EventOutsideTransaction
from catalog.signals import DomainEvent, announce_event_writer, domain_event
from projections.eventlog import WRITE_DB, LogPosition
from projections.models import Event

EVENTS_CHANNEL = "storefront_events"

_captured: contextvars.ContextVar[list[LogPosition] | None] = contextvars.ContextVar(
    "captured_events", default=None
)


@contextlib.contextmanager
def capture_positions() -> Iterator[list[LogPosition]]:
    """Collect the log positions of the events recorded inside the block.

    The query side turns the last one into a consistency token.
    """
    positions: list[LogPosition] = []
    reset = _captured.set(positions)
    try:
        yield positions
    finally:
        _captured.reset(reset)


@receiver(domain_event, dispatch_uid="projections.record_domain_event")
def record_domain_event(sender: Any, event: DomainEvent, **kwargs: Any) -> Event:
    connection = connections[WRITE_DB]
    if not connection.in_atomic_block:
        raise EventOutsideTransaction(
            f"{event.event_type} was sent outside a transaction on {WRITE_DB!r}."
        )
    # Already done by a command's transaction; a transaction that wrote
    # something before without it is refused (EventWriterTooLate).
    announce_event_writer()
    stored = Event.objects.create(
        stream_type=event.stream_type,
        stream_id=event.stream_id,
        event_type=event.event_type,
        version=event.version,
        payload=event.payload(),
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Delivered by PostgreSQL when (and only if) the transaction commits;
            # repeats within one transaction are folded into one.
            cursor.execute("SELECT pg_notify(%s, '')", [EVENTS_CHANNEL])
    captured = _captured.get()
    if captured is not None:
        captured.append(LogPosition(stored.transaction_id or 0, stored.position))
    if settings.CELERY_BROKER_URL:
        _nudge_after_commit(connection)
    return stored


def _nudge_after_commit(connection: Any) -> None:
    from projections.tasks import nudge_after_commit

    if any(callback is nudge_after_commit for _, callback, _ in connection.run_on_commit):
        return
    transaction.on_commit(nudge_after_commit, using=WRITE_DB, robust=True)
