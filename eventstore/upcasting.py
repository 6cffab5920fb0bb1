"""Turn events stored under an older schema version into the current one.

Handlers only ever see the current version. To change an event's payload:
bump ``version`` on its class (``catalog/events.py``, ``reviews/events.py``),
then register an upcaster from the old version to the new one beside it
(``@upcaster``). Stored events are never rewritten.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

from eventstore.eventlog import StoredEvent

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(function: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, from_version)] = function
        return function

    return register


def upcast(event: StoredEvent) -> StoredEvent:
    payload, version = event.payload, event.version
    while (event.event_type, version) in _UPCASTERS:
        payload = _UPCASTERS[(event.event_type, version)](dict(payload))
        version += 1
    if version == event.version:
        return event
    return dataclasses.replace(event, payload=payload, version=version)
