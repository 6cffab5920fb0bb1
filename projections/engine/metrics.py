"""What the engine's batches count (Prometheus; see ``kernel.metrics`` for
how processes share them): events applied per partition and batch durations.
Where each partition stands (lag, parked, halted) is read from the database
when scraped (``projections.metrics``), so any web process reports every
worker's partitions."""

from prometheus_client import Counter, Histogram

EVENTS_APPLIED = Counter(
    "storefront_projection_events_applied",
    "Events applied by this deployment's projector processes, by projector and partition.",
    ["projector", "partition"],
)
BATCH_SECONDS = Histogram(
    "storefront_projection_batch_seconds",
    "How long an applied batch took, from its transaction's start to its commit.",
    ["projector"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def batch_applied(projector: str, partition: int, events: int, seconds: float) -> None:
    EVENTS_APPLIED.labels(projector, str(partition)).inc(events)
    BATCH_SECONDS.labels(projector).observe(seconds)
