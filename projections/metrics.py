"""Where every projector partition stands, for Prometheus: read from the
databases when ``/metrics`` is scraped, so every web process reports every
partition whichever worker applies it.

The reads are bounded like ``/healthz``'s: events behind are counted up to
``HEALTH_LAG_COUNT_CAP`` per partition, and one process reads at most once per
``METRICS_CACHE_SECONDS`` however often it is scraped.
"""

import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from eventstore import eventlog
from eventstore.databases import READ_DB, WRITE_DB
from eventstore.eventlog import LogPosition
from projections.models import Checkpoint, ParkedEvent
from projections.registry import PROJECTIONS
from projections.status import as_moment, events_behind

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PartitionFigures:
    projector: str
    partition: int
    events_behind: int
    seconds_behind: float
    parked: int
    oldest_parked_seconds: float
    halted: bool
    stalled: bool


@dataclasses.dataclass(frozen=True)
class Figures:
    partitions: list[PartitionFigures]
    horizon_age_seconds: float
    stalled_writers: int


# Each statement of a scrape waits at most this long for the databases (a
# hung one would otherwise hang the scrape, and no alert would say so: it
# answers ``storefront_projection_status_up 0`` instead). A scrape runs at
# most 8 statements: within Prometheus' default 10 s scrape timeout. A
# network that drops packets is for ``connect_timeout`` and TCP keepalives in
# the database URL.
FIGURES_TIMEOUT_SECONDS = 1.0


@contextlib.contextmanager
def _time_limited(seconds: float) -> Iterator[None]:
    """A transaction on each database whose statements stop after ``seconds``
    (PostgreSQL; SQLite has no such thing and no network to hang on)."""
    with transaction.atomic(using=READ_DB), transaction.atomic(using=WRITE_DB):
        for alias in (READ_DB, WRITE_DB):
            connection = connections[alias]
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT set_config('statement_timeout', %s, true)",
                        [f"{int(seconds * 1000)}ms"],
                    )
        yield


def read_figures() -> Figures:
    """Every current partition's figures, and the log readers' horizon."""
    with _time_limited(FIGURES_TIMEOUT_SECONDS):
        return _read_figures()


def _read_figures() -> Figures:
    # A scrape writes nothing: a partition whose checkpoint no worker has made
    # yet is reported as at the log's start.
    stored = {(c.projector, c.partition): c for c in Checkpoint.objects.all()}
    checkpoints = [
        stored.get((name, partition)) or Checkpoint(projector=name, partition=partition)
        for name, projection in sorted(PROJECTIONS.items())
        for partition in range(projection.partition_count())
    ]
    keys = [(c.projector, c.partition) for c in checkpoints]
    positions = {
        key: LogPosition(c.transaction_id, c.position)
        for key, c in zip(keys, checkpoints, strict=True)
    }
    behind = events_behind(positions, settings.HEALTH_LAG_COUNT_CAP)
    parked = {
        (row["projector"], row["partition"]): (row["count"], row["oldest"])
        for row in ParkedEvent.objects.filter(status=ParkedEvent.Status.PARKED)
        .values("projector", "partition")
        .annotate(count=Count("pk"), oldest=Min("parked_at"))
    }
    now = timezone.now()
    lease = settings.PROJECTION_LEASE_SECONDS
    partitions = []
    for key, checkpoint in zip(keys, checkpoints, strict=True):
        count, oldest_value = behind[key]
        oldest = as_moment(oldest_value)
        seconds = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
        parked_count, parked_at = parked.get(key, (0, None))
        parked_at = as_moment(parked_at)
        halted = checkpoint.halted_at_position is not None
        idle_for = (now - checkpoint.updated_at).total_seconds() if checkpoint.pk else math.inf
        partitions.append(
            PartitionFigures(
                projector=checkpoint.projector,
                partition=checkpoint.partition,
                events_behind=min(count, settings.HEALTH_LAG_COUNT_CAP),
                seconds_behind=seconds,
                parked=parked_count,
                oldest_parked_seconds=max(0.0, (now - parked_at).total_seconds())
                if parked_at
                else 0.0,
                halted=halted,
                # Work has waited longer than a lease and nobody has moved the
                # checkpoint for as long: no live worker applies this partition.
                stalled=not halted and seconds > lease and idle_for > lease,
            )
        )
    writers = eventlog.stalled_writers(0)
    return Figures(
        partitions=partitions,
        horizon_age_seconds=writers[0].seconds if writers else 0.0,
        stalled_writers=sum(
            1 for writer in writers if writer.seconds > settings.PROJECTION_STALL_SECONDS
        ),
    )


class ProjectionCollector(Collector):
    """The figures of ``read_figures`` as gauges, read at most once per
    ``METRICS_CACHE_SECONDS`` in a process; ``storefront_projection_status_up``
    is 0 when they could not be read (a database down), never a failed scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._figures: Figures | None = None
        self._until = 0.0

    def figures(self) -> Figures | None:
        with self._lock:
            if time.monotonic() >= self._until:
                try:
                    self._figures = read_figures()
                except Exception:
                    logger.warning("Projection metrics could not be read", exc_info=True)
                    self._figures = None
                self._until = time.monotonic() + settings.METRICS_CACHE_SECONDS
            return self._figures

    def clear(self) -> None:
        with self._lock:
            self._figures, self._until = None, 0.0

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # registering must not read the databases

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = self.figures()
        up = GaugeMetricFamily(
            "storefront_projection_status_up",
            "1 when the projections' figures below could be read from the databases.",
        )
        up.add_metric([], 0 if figures is None else 1)
        yield up
        if figures is None:
            return
        labels = ["projector", "partition"]
        families = {
            "events_behind": GaugeMetricFamily(
                "storefront_projection_events_behind",
                "Events in the readable log that the partition has not applied "
                "(counted up to HEALTH_LAG_COUNT_CAP).",
                labels=labels,
            ),
            "seconds_behind": GaugeMetricFamily(
                "storefront_projection_seconds_behind",
                "Age of the oldest event the partition has not applied.",
                labels=labels,
            ),
            "parked": GaugeMetricFamily(
                "storefront_projection_parked_events",
                "Events parked after PROJECTION_MAX_ATTEMPTS failures, not yet retried or skipped.",
                labels=labels,
            ),
            "oldest_parked_seconds": GaugeMetricFamily(
                "storefront_projection_oldest_parked_age_seconds",
                "How long the oldest parked event of the partition has waited.",
                labels=labels,
            ),
            "halted": GaugeMetricFamily(
                "storefront_projection_halted",
                "1 when the partition is halted behind a parked event.",
                labels=labels,
            ),
            "stalled": GaugeMetricFamily(
                "storefront_projection_stalled",
                "1 when work has waited longer than PROJECTION_LEASE_SECONDS and no "
                "worker moved the partition for as long.",
                labels=labels,
            ),
        }
        for partition in figures.partitions:
            values = [partition.projector, str(partition.partition)]
            for field, family in families.items():
                family.add_metric(values, float(getattr(partition, field)))
        yield from families.values()
        horizon = GaugeMetricFamily(
            "storefront_event_log_horizon_age_seconds",
            "Age of the oldest running event writer's transaction: the log's readers "
            "see nothing it may precede until it ends.",
        )
        horizon.add_metric([], figures.horizon_age_seconds)
        yield horizon
        stalled = GaugeMetricFamily(
            "storefront_event_writers_stalled",
            "Event writers open longer than PROJECTION_STALL_SECONDS (counted up to 10).",
        )
        stalled.add_metric([], figures.stalled_writers)
        yield stalled


collector = ProjectionCollector()
