"""Domain events and the one signal that carries them.

A command sends exactly one ``domain_event`` per change, inside its
``command_transaction`` (``eventstore.recording``), which records it in the
event table. Events are past-tense facts with a schema version: a change to a
payload's shape bumps the version and registers an upcaster
(``eventstore.upcasting``) from the old one.
"""

import dataclasses
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from django.dispatch import Signal

domain_event = Signal()


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
