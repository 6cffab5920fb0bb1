"""Domain events, the one signal that carries them, and the transaction they
are recorded in.

Every command runs in ``command_transaction()`` and sends exactly one
``domain_event`` per change inside it; the projections app records it in the
event table. Events are past-tense facts with a schema version: a change to a
payload's shape bumps the version and adds an upcaster on the projections side.
"""

import contextlib
import dataclasses
import zlib
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from django.db import connections, transaction
from django.dispatch import Signal

domain_event = Signal()

WRITE_DB = "default"
# The shared advisory lock (two int4 keys) that every transaction recording
# events holds from its first statement to its end, and the setting that says
# so to the event table's guard (see ``announce_event_writer``).
EVENT_WRITER_LOCK = (1398036052, 1)
EVENT_WRITER_SETTING = "storefront.event_writer"


class EventWriterTooLate(RuntimeError):
    """A transaction wrote before it announced itself as an event writer."""


# The check is read before the lock and the setting are taken.
_ANNOUNCE_SQL = """
    WITH before AS MATERIALIZED (
        SELECT pg_current_xact_id_if_assigned() IS NOT NULL
               AND current_setting(%s, true) IS DISTINCT FROM 'on' AS too_late
    )
    SELECT too_late, pg_advisory_xact_lock_shared(%s, %s), set_config(%s, 'on', true)
    FROM before
"""


def announce_event_writer() -> None:
    """Say, before the transaction's first write, that it may record events.

    The event log's readers (``projections.eventlog``) wait only for the
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
        cursor.execute(
            _ANNOUNCE_SQL, [EVENT_WRITER_SETTING, *EVENT_WRITER_LOCK, EVENT_WRITER_SETTING]
        )
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class DomainEvent:
    event_type: ClassVar[str]
    version: ClassVar[int] = 1
    stream_type: ClassVar[str]

    @property
    def stream_id(self) -> int:
        raise NotImplementedError

    def payload(self) -> dict[str, Any]:
        return {
            field.name: _jsonable(getattr(self, field.name)) for field in dataclasses.fields(self)
        }


def send_event(event: DomainEvent) -> None:
    """Send ``event``; the caller's transaction on ``default`` must be open."""
    domain_event.send(sender=type(event), event=event)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SellerEvent(DomainEvent):
    stream_type: ClassVar[str] = "seller"
    seller_id: int

    @property
    def stream_id(self) -> int:
        return self.seller_id


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProductEvent(DomainEvent):
    stream_type: ClassVar[str] = "product"
    product_id: int

    @property
    def stream_id(self) -> int:
        return self.product_id


@dataclasses.dataclass(frozen=True, kw_only=True)
class SellerRegistered(SellerEvent):
    event_type: ClassVar[str] = "SellerRegistered"
    name: str
    reputation: Decimal


@dataclasses.dataclass(frozen=True, kw_only=True)
class SellerReputationChanged(SellerEvent):
    event_type: ClassVar[str] = "SellerReputationChanged"
    reputation: Decimal
    previous_reputation: Decimal


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProductCreated(ProductEvent):
    event_type: ClassVar[str] = "ProductCreated"
    seller_id: int
    name: str
    slug: str
    description: str
    price: Decimal
    stock_quantity: int
    is_active: bool
    created_at: datetime
    price_change_id: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProductDetailsChanged(ProductEvent):
    event_type: ClassVar[str] = "ProductDetailsChanged"
    name: str
    slug: str
    description: str
    is_active: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class PriceChanged(ProductEvent):
    event_type: ClassVar[str] = "PriceChanged"
    price_change_id: int
    price: Decimal
    previous_price: Decimal
    changed_at: datetime


@dataclasses.dataclass(frozen=True, kw_only=True)
class StockChanged(ProductEvent):
    event_type: ClassVar[str] = "StockChanged"
    quantity: int
    previous_quantity: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecommendationsChanged(ProductEvent):
    event_type: ClassVar[str] = "RecommendationsChanged"
    related_ids: tuple[int, ...]
