"""Where every projector partition stands: for the status command, the admin
and the health check."""

import dataclasses
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from eventstore import eventlog
from eventstore.eventlog import LogPosition
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
