"""Where every projector partition stands: for the status command, the admin
and the health check."""

import dataclasses
import datetime as dt
from collections.abc import Hashable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from eventstore import eventlog
from eventstore.databases import WRITE_DB
from eventstore.eventlog import LogPosition
from eventstore.models import Event
from projections.engine import ensure_checkpoints
from projections.models import Checkpoint, ParkedEvent
from projections.registry import PROJECTIONS


@dataclasses.dataclass(frozen=True)
class PartitionStatus:
    projector: str
    partition: int
    position: LogPosition
    events_applied: int
    events_behind: int
    seconds_behind: float
    parked: int
    owner: str
    heartbeat_at: datetime | None
    halted: bool
    failures: int
    last_error: str

    @property
    def owner_is_live(self) -> bool:
        if not self.heartbeat_at:
            return False
        age = (timezone.now() - self.heartbeat_at).total_seconds()
        return age < settings.PROJECTION_LEASE_SECONDS


def partition_statuses() -> list[PartitionStatus]:
    for projection in PROJECTIONS.values():
        ensure_checkpoints(projection)
    parked = Count("pk", filter=Q(status=ParkedEvent.Status.PARKED))
    parked_counts = {
        (row["projector"], row["partition"]): row["parked"]
        for row in ParkedEvent.objects.values("projector", "partition").annotate(parked=parked)
    }
    now = timezone.now()
    statuses = []
    for checkpoint in Checkpoint.objects.order_by("projector", "partition"):
        if checkpoint.projector not in PROJECTIONS:
            continue
        position = LogPosition(checkpoint.transaction_id, checkpoint.position)
        oldest = eventlog.oldest_after(position)
        statuses.append(
            PartitionStatus(
                projector=checkpoint.projector,
                partition=checkpoint.partition,
                position=position,
                events_applied=checkpoint.events_applied,
                events_behind=eventlog.count_after(position),
                seconds_behind=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
                parked=parked_counts.get((checkpoint.projector, checkpoint.partition), 0),
                owner=checkpoint.owner,
                heartbeat_at=checkpoint.heartbeat_at,
                halted=checkpoint.halted_at_position is not None,
                failures=checkpoint.failures,
                last_error=checkpoint.last_error,
            )
        )
    return statuses


def events_behind[K: Hashable](
    positions: dict[K, LogPosition], cap: int
) -> dict[K, tuple[int, Any]]:
    """For each reader position: how many events it has not applied, counted up
    to ``cap + 1``, and when the oldest of those occurred. One statement, which
    reads at most ``cap + 1`` entries of the log's index per position, so a
    reader far behind costs what a reader ``cap`` events behind does. The
    oldest is taken among those first ``cap + 1`` events in log order."""
    connection = connections[WRITE_DB]
    table = Event._meta.db_table
    on_postgres = connection.vendor == "postgresql"
    if on_postgres:
        after = "(transaction_id, position) > (%s::text::xid8, %s)"
        order = "transaction_id, position"
    else:
        after, order = "position > %s", "position"
    one = f"""SELECT %s, count(*), min(occurred_at) FROM (
                SELECT occurred_at FROM {table} WHERE {after} ORDER BY {order} LIMIT %s
            ) AS behind"""  # noqa: S608
    params: list[int | str] = []
    for n, position in enumerate(positions.values()):
        params.append(n)
        if on_postgres:
            params.append(str(position.transaction_id))
        params.extend([position.position, cap + 1])
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join([one] * len(positions)), params)
        found = {int(n): (int(count), oldest) for n, count, oldest in cursor.fetchall()}
    return {name: found[n] for n, name in enumerate(positions)}


def as_moment(value: Any) -> datetime | None:
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = value.replace(tzinfo=dt.UTC)  # SQLite keeps UTC without an offset
    return value
