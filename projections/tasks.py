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

import dataclasses
import logging
import threading
import time
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


@dataclasses.dataclass
class _Claim:
    """This worker process's hold on one partition: the projection instance
    it keeps from task to task (see ``Projection.forget``), whether a thread
    is projecting with it, and whether a task came for it meanwhile."""

    instance: Projection
    busy: bool = False
    again: bool = False


_claims: dict[tuple[str, int], _Claim] = {}
_claims_guard = threading.Lock()


def _claim(projection: type[Projection], partition: int) -> Projection | None:
    """The partition's kept instance, for this thread alone; None when another
    thread of the process is projecting the partition: that thread is told
    to look at the log once more before it lets go (see ``_release``)."""
    count = projection.partition_count()
    with _claims_guard:
        claim = _claims.get((projection.name, partition))
        if claim is None or claim.instance.partitions != count:
            claim = _claims[(projection.name, partition)] = _Claim(projection(partition, count))
        if claim.busy:
            claim.again = True
            return None
        claim.busy = True
        return claim.instance


def _release(projection: type[Projection], partition: int) -> bool:
    """Let go of the partition, unless a task came for it while this thread
    projected: then keep it, and say so (the caller reads the log again)."""
    with _claims_guard:
        claim = _claims[(projection.name, partition)]
        if claim.again:
            claim.again = False
            return False
        claim.busy = False
        return True


@shared_task(name="projections.tasks.project_partition", ignore_result=True)
def project_partition(name: str, partition: int) -> int:
    """Apply batches on one partition until the log has nothing more for it,
    or the budget is spent (then queue a task to go on).

    A task that finds the partition busy hands over to whoever holds it: a
    thread of this process is told to read once more (``_claim``); a batch of
    another process holds the partition's lock, and that process reads the
    log again after its batch, so it sees the commit that sent this task.
    That is why a task stops only when a read finds nothing, never merely
    after a batch smaller than the batch size.
    """
    _redis().delete(PENDING_KEY.format(name=name, partition=partition))
    projection = PROJECTIONS[name]
    instance = _claim(projection, partition)
    if instance is None:
        return 0
    deadline = time.monotonic() + TASK_BUDGET_SECONDS
    applied = 0
    size = settings.PROJECTION_BATCH_SIZE
    known = None
    try:
        while time.monotonic() < deadline:
            result = run_batch(
                projection, partition, batch_size=size, known=known, projection=instance
            )
            known = result.checkpoint or known
            applied += result.applied
            if result.outcome is not Outcome.APPLIED and _release(projection, partition):
                return applied
    except BaseException:
        _release_for_good(projection, partition)
        raise
    _release_for_good(projection, partition)
    pending = PENDING_KEY.format(name=name, partition=partition)
    if _redis().set(pending, 1, nx=True, ex=PENDING_SECONDS):
        project_partition.apply_async((name, partition), retry=False)
    return applied


def _release_for_good(projection: type[Projection], partition: int) -> None:
    """Let go whatever came meanwhile: a failure, or a spent budget that queues
    a task of its own."""
    with _claims_guard:
        claim = _claims[(projection.name, partition)]
        claim.again = claim.busy = False
