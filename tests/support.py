"""Helpers to assert what a command wrote: its events, or nothing at all."""

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.db.models import Max, Model
from django.utils import timezone

from catalog.models import PriceChange, Product, Recommendation, Seller
from eventstore.models import Event
from eventstore.recording import command_transaction
from reviews.models import Review

WRITE_MODELS: tuple[type[Model], ...] = (
    Seller,
    Product,
    PriceChange,
    Recommendation,
    Review,
    Event,
)


def last_position() -> int:
    return Event.objects.aggregate(last=Max("position"))["last"] or 0


def events_after(position: int) -> list[Event]:
    return list(Event.objects.filter(position__gt=position).order_by("position"))


def write_side() -> dict[str, list[dict[str, Any]]]:
    """Every row of every write-side table, events included."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for model in WRITE_MODELS:
        rows[model.__name__] = list(model._default_manager.order_by("pk").values())
    return rows


@contextlib.contextmanager
def nothing_written() -> Iterator[None]:
    """Fail unless the block leaves every write-side table exactly as it found it."""
    before = write_side()
    yield
    assert write_side() == before


@contextlib.contextmanager
def records_one_event(event_type: str, stream_type: str, version: int = 1) -> Iterator[list[Event]]:
    """Fail unless the block records exactly one event, of this type on this kind of stream.

    The list it yields holds that event once the block has run.
    """
    start = last_position()
    recorded: list[Event] = []
    yield recorded
    recorded.extend(events_after(start))
    assert [(e.event_type, e.stream_type, e.version) for e in recorded] == [
        (event_type, stream_type, version)
    ]


def record_old_events(count: int, *, age: timedelta) -> None:
    """``count`` events that occurred ``age`` ago, for a projector to be
    behind by (the log is append-only: no event can be backdated later).
    Their payloads are empty: no projector applies them in such a test."""
    kinds = (("seller", "SellerRegistered"), ("product", "ProductCreated"))
    occurred_at = timezone.now() - age
    with command_transaction():
        for n in range(count):
            stream_type, event_type = kinds[n % 2]
            Event.objects.create(
                stream_type=stream_type,
                stream_id=n + 1,
                event_type=event_type,
                version=1,
                payload={},
                occurred_at=occurred_at,
            )
