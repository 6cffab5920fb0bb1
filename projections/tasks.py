"""Celery tasks: wake-up calls for the projectors.

A message only says "look at the log": the task reads from the partition's
checkpoint in the read database. Losing a message delays projection until
the next nudge or sweep; it never loses an event. A pending flag per
partition in Redis keeps at most one wake-up queued for it.

A commit sends one message (``wake``), itself deduplicated by a flag; the
worker that runs it queues the partitions' tasks. The command side so pays
one Redis round trip and at most one message, whatever the partition count.
Each flag is cleared when its task starts, before it reads: a commit after
that queues another run, so no commit goes unseen.
"""

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from functools import cache

import redis
from celery import shared_task
from django.conf import settings

from projections.engine import Outcome, Projection, ensure_checkpoints, run_batch
from projections.projectors import PROJECTIONS

logger = logging.getLogger(__name__)

PENDING_KEY = "storefront:projection-pending:{name}:{partition}"
WAKE_KEY = "storefront:projection-wake-pending"
PENDING_SECONDS = 5
TASK_BUDGET_SECONDS = 5.0


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_timeout=0.25, socket_connect_timeout=0.25
    )


def wake_partitions() -> int:
    """Queue a projection task for every partition that has none queued.

    One round trip to Redis for all the pending flags, then a message for
    each partition whose flag was not set yet.
    """
    partitions = [
        (name, partition)
        for name, projection in PROJECTIONS.items()
        for partition in range(projection.partition_count())
    ]
    pipeline = _redis().pipeline(transaction=False)
    for name, partition in partitions:
        pipeline.set(
            PENDING_KEY.format(name=name, partition=partition), 1, nx=True, ex=PENDING_SECONDS
        )
    flags = pipeline.execute()
    queued = 0
    for (name, partition), newly_set in zip(partitions, flags, strict=True):
        if newly_set:
            project_partition.apply_async((name, partition), retry=False)
            queued += 1
    return queued


def nudge_after_commit() -> None:
    """Run by the command side after its transaction commits; never raises."""
    try:
        if _redis().set(WAKE_KEY, 1, nx=True, ex=PENDING_SECONDS):
            wake.apply_async(retry=False)
    except Exception:  # the broker may be down: the sweep will catch up
        logger.warning("Could not nudge the projectors; the sweep will catch up.", exc_info=True)


@shared_task(name="projections.tasks.wake", ignore_result=True)
def wake() -> int:
    """Queue the partitions' tasks for the commits that asked since the last wake."""
    _redis().delete(WAKE_KEY)
    return wake_partitions()


@shared_task(name="projections.tasks.sweep", ignore_result=True)
def sweep() -> int:
    """Beat runs this every few seconds, so a lost wake-up only delays."""
    for projection in PROJECTIONS.values():
        ensure_checkpoints(projection)
    return wake_partitions()


_kept: dict[tuple[str, int], tuple[Projection, threading.Lock]] = {}
_kept_guard = threading.Lock()


@contextlib.contextmanager
def _kept_instance(projection: type[Projection], partition: int) -> Iterator[Projection]:
    """This worker process's instance of the partition's projection, which
    keeps rows between tasks (see ``Projection.forget``); a fresh one when
    another thread of the process is using it."""
    count = projection.partition_count()
    with _kept_guard:
        entry = _kept.get((projection.name, partition))
        if entry is None or entry[0].partitions != count:
            entry = _kept[(projection.name, partition)] = (
                projection(partition, count),
                threading.Lock(),
            )
    instance, in_use = entry
    if not in_use.acquire(blocking=False):
        yield projection(partition, count)
        return
    try:
        yield instance
    finally:
        in_use.release()


@shared_task(name="projections.tasks.project_partition", ignore_result=True)
def project_partition(name: str, partition: int) -> int:
    """Apply batches on one partition until it is caught up or the budget is spent."""
    _redis().delete(PENDING_KEY.format(name=name, partition=partition))
    projection = PROJECTIONS[name]
    deadline = time.monotonic() + TASK_BUDGET_SECONDS
    applied = 0
    size = settings.PROJECTION_BATCH_SIZE
    known = None
    with _kept_instance(projection, partition) as instance:
        while time.monotonic() < deadline:
            result = run_batch(
                projection, partition, batch_size=size, known=known, projection=instance
            )
            known = result.checkpoint
            applied += result.applied
            if result.outcome is not Outcome.APPLIED or result.applied < size:
                # Caught up with the log as read. Commits since then have queued
                # their own wake-up: the pending flag was cleared when we started.
                return applied
    pending = PENDING_KEY.format(name=name, partition=partition)
    if _redis().set(pending, 1, nx=True, ex=PENDING_SECONDS):
        project_partition.apply_async((name, partition), retry=False)
    return applied
