"""Recording events in the command's own transaction.

Every command runs in ``command_transaction()``: an atomic block on the write
database whose first statement announces it as an *event writer* (a shared
advisory lock it holds to its end; the log's readers wait for such
transactions only, ``eventstore.eventlog``). It then takes the lock of the stream
it changes (``lock_stream``) before its first write, and sends its events
(``eventstore.events.send_event``); ``record_domain_event`` writes each as a
row of the event table, in that transaction. After the transaction commits,
``events_committed`` is sent once, for whoever wants to hear of new events
(the projections app wakes its workers).
"""

import contextlib
import contextvars
import zlib
from collections.abc import Iterator
from typing import Any

from django.db import connections, transaction
from django.dispatch import Signal, receiver

from eventstore.correlation import current_request_id
from eventstore.databases import WRITE_DB
from eventstore.eventlog import (
    EVENT_WRITER_LOCK,
    EVENT_WRITER_SETTING,
    MAX_TOKEN_KEYS,
    PARTITION_KEY,
    SHOWN_KEYS,
    LogPosition,
)
from eventstore.events import DomainEvent, domain_event
from eventstore.models import Event
from eventstore.tokens import Token

# Sent once after a transaction that recorded events commits, with ``keys``:
# the keys (``PARTITION_KEY``) its events named, or None when one named none.
events_committed = Signal()


class EventOutsideTransaction(RuntimeError):
    """A domain signal was sent with no transaction open on the write database."""


class EventWriterTooLate(RuntimeError):
    """A transaction wrote before it announced itself as an event writer."""


# The check is read before the lock and the setting are taken, and a
# transaction too late gets neither: were the refusal caught and the
# transaction gone on, the event table's trigger still refuses its events.
# Its parameters are ``ANNOUNCE_PARAMETERS``; a session outside Django
# announces with the same statement, and must not go on when it returns true.
ANNOUNCE_SQL = """
    WITH before AS MATERIALIZED (
        SELECT pg_current_xact_id_if_assigned() IS NOT NULL
               AND current_setting(%s, true) IS DISTINCT FROM 'on' AS too_late
    ), announced AS MATERIALIZED (
        SELECT pg_advisory_xact_lock_shared(%s, %s), set_config(%s, 'on', true)
        FROM before WHERE NOT too_late
    )
    SELECT too_late, (SELECT count(*) FROM announced) FROM before
"""
ANNOUNCE_PARAMETERS = (EVENT_WRITER_SETTING, *EVENT_WRITER_LOCK, EVENT_WRITER_SETTING)


def announce_event_writer() -> None:
    """Say, before the transaction's first write, that it may record events.

    The event log's readers (``eventstore.eventlog``) wait only for the
    transactions that hold this shared lock, so an unrelated long transaction
    never holds projection back. A transaction gets its id at its first write
    (a row lock counts), so the announcement must come first: one made after
    the id could come too late for a reader that already passed that id. It is
    then refused, and the event table's trigger refuses an event from a
    transaction that never announced. Idempotent within a transaction; a
    no-op on SQLite, whose writers are serialized.
    """
    connection = connections[WRITE_DB]
    if connection.vendor != "postgresql":
        return
    if not connection.in_atomic_block:
        raise EventWriterTooLate("An event writer is announced inside its transaction.")
    with connection.cursor() as cursor:
        cursor.execute(ANNOUNCE_SQL, ANNOUNCE_PARAMETERS)
        too_late = cursor.fetchone()[0]
    if too_late:
        raise EventWriterTooLate(
            "This transaction wrote before it was announced as an event writer: "
            "start it with command_transaction() (or announce_event_writer() first)."
        )


# Stream locks: advisory transaction locks keyed (stream type, stream id). Their
# first keys stay below 2**30, so they never meet EVENT_WRITER_LOCK.
_STREAM_KEY_BITS = 0x3FFFFFFF
_STREAM_ID_SPACE = 2**31 - 1


def lock_stream(stream_type: str, stream_id: int) -> None:
    """Hold one event stream (an aggregate) for the rest of the command's
    transaction, waiting for the command that holds it now to end.

    Call it after ``announce_event_writer`` and before the transaction's
    first write. It is what keeps the events of one stream in the order
    their commands ran: readers go by transaction id, and a transaction gets
    its id at its first write, which comes after this wait. A row lock alone
    does not promise that: a transaction waiting for a row that another one
    updates can be given its id while it waits and still be overtaken by a
    later waiter (PostgreSQL re-locks the row's newest version), and its
    event would then be read before the one it followed. Ids beyond 2**31
    share a lock with a smaller one, which only makes them wait for each
    other. A no-op on SQLite, whose writers are serialized.
    """
    connection = connections[WRITE_DB]
    if connection.vendor != "postgresql":
        return
    kind = zlib.crc32(f"storefront-stream:{stream_type}".encode()) & _STREAM_KEY_BITS
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [kind, int(stream_id) % _STREAM_ID_SPACE]
        )


@contextlib.contextmanager
def command_transaction() -> Iterator[None]:
    """The transaction of a command on the write database: atomic, and
    announced as an event writer before anything else runs in it."""
    with transaction.atomic(using=WRITE_DB):
        announce_event_writer()
        yield


def declare_redaction() -> None:
    """Let this transaction change event payloads (PostgreSQL).

    The event table's guard (projections migration 0007) refuses every UPDATE
    and DELETE, except an UPDATE of payloads alone in a transaction that said
    so first: the erasure of a person's words (``reviews.erasure``). Local to
    the transaction. A no-op on SQLite, which has no guard.
    """
    connection = connections[WRITE_DB]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('storefront.log_redaction', 'on', true)")


EVENTS_CHANNEL = "storefront_events"


def notify_payload(payload: dict[str, Any]) -> str:
    """What an event's NOTIFY says: its key (``PARTITION_KEY``), or nothing
    when it names none (it may concern every partition)."""
    key = payload.get(PARTITION_KEY)
    return str(key) if type(key) is int else ""


def notified_key(payload: str) -> int | None:
    """The key a NOTIFY on ``EVENTS_CHANNEL`` names; None: any partition's
    (no key, or an older release's empty payload)."""
    digits = payload.isascii() and payload.isdigit() and len(payload) <= 19
    return int(payload) if digits else None


class Captured(list[LogPosition]):
    """The log positions of the events recorded in a block, and the keys
    (``PARTITION_KEY``, and ``SHOWN_KEYS``: products a row is made to show)
    they named: the products whose partitions must pass the last position
    before a reader sees them all. ``keys`` is None once an event named none
    (it may concern any partition), or more than ``MAX_TOKEN_KEYS`` were
    named."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: set[int] | None = set()

    def token(self) -> Token:
        """What a consistency token of the block says: its last position, its keys."""
        return Token(self[-1], frozenset(self.keys) if self.keys else None)

    def note(self, position: LogPosition, payload: dict[str, Any]) -> None:
        self.append(position)
        shown = payload.get(SHOWN_KEYS, [])
        if not isinstance(shown, list | tuple):
            shown = [None]  # not a list of keys: name none
        for key in [payload.get(PARTITION_KEY), *shown]:
            self._name(key)

    def _name(self, key: Any) -> None:
        if self.keys is None:
            return
        if type(key) is not int or key < 0:  # a token's keys are digits
            self.keys = None
            return
        self.keys.add(key)
        if len(self.keys) > MAX_TOKEN_KEYS:
            self.keys = None


_captured: contextvars.ContextVar[Captured | None] = contextvars.ContextVar(
    "captured_events", default=None
)


@contextlib.contextmanager
def capture_positions() -> Iterator[Captured]:
    """Collect the log positions of the events recorded inside the block,
    and the keys they named (``Captured``).

    The query side turns the last one, with the keys, into a consistency token.
    """
    positions = Captured()
    reset = _captured.set(positions)
    try:
        yield positions
    finally:
        _captured.reset(reset)


@receiver(domain_event, dispatch_uid="eventstore.record_domain_event")
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
        request_id=current_request_id(),
    )
    keyed = _after_commit_send_events_committed(connection, stored.payload)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Delivered by PostgreSQL when (and only if) the transaction commits;
            # repeats within one transaction are folded into one. The payload
            # is the event's key (``notified_key``): a projector process wakes
            # at once only for the partitions that own it. Past a few keys in
            # one transaction, or one event with none, it says none: one
            # NOTIFY for all the rest, which wakes every process.
            payload = notify_payload(stored.payload) if keyed else ""
            cursor.execute("SELECT pg_notify(%s, %s)", [EVENTS_CHANNEL, payload])
    captured = _captured.get()
    if captured is not None:
        captured.note(LogPosition(stored.transaction_id or 0, stored.position), stored.payload)
    return stored


# The keys the events of the connection's transaction named so far; None
# once one named none, or too many were named (``events_committed`` then
# says ``keys=None``).
_KEYS_ATTRIBUTE = "storefront_committed_keys"


def _send_events_committed() -> None:
    connection = connections[WRITE_DB]
    keys = getattr(connection, _KEYS_ATTRIBUTE, None)
    setattr(connection, _KEYS_ATTRIBUTE, None)
    events_committed.send_robust(sender=Event, keys=frozenset(keys) if keys else None)


def _after_commit_send_events_committed(connection: Any, payload: dict[str, Any]) -> bool:
    """Send ``events_committed`` once when this transaction commits (never
    if it rolls back), with the keys its events named (``keys``: None when
    one named none, or more than ``MAX_TOKEN_KEYS`` were named); a
    receiver's error is logged by Django, not raised. Whether the keys are
    still named."""
    key = payload.get(PARTITION_KEY)
    key = key if type(key) is int and key >= 0 else None
    keys: set[int] | None
    if any(callback is _send_events_committed for _, callback, _ in connection.run_on_commit):
        keys = getattr(connection, _KEYS_ATTRIBUTE, None)
        if keys is not None and key is not None:
            keys.add(key)
        if keys is not None and (key is None or len(keys) > MAX_TOKEN_KEYS):
            keys = None
    else:
        keys = {key} if key is not None else None
        transaction.on_commit(_send_events_committed, using=WRITE_DB)
    setattr(connection, _KEYS_ATTRIBUTE, keys)
    return keys is not None
