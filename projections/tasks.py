"""Celery tasks: wake-up calls for the projectors.

A message only says "look at the log": the task reads from the partition's
checkpoint in the read database. Losing a message delays projection until
the next nudge or sweep; it never loses an event. A pending flag per
partition in Redis keeps at most one wake-up queued for it.

A commit sets the flags of the partitions that own its products (every
partition's when it names none) in one round trip to Redis and sends a task
to each partition whose flag was not set yet. The flag stays set while the
task projects, so a busy partition costs its commits that one round trip
and no message; when a read reaches the log's end (it finds nothing, or less
than a full batch), the task clears the flag and reads once more before it
stops. A commit before the clearing is seen by that last
read, one after it sets the flag and sends a task: no commit goes unseen.

Before it clears the flag, a task that applied events lingers: it keeps the
partition and the flag for ``LINGER_SECONDS`` after the last events it
applied, reading the log every ``LINGER_STEP_SECONDS``, and for at most
``MAX_LINGER_SECONDS`` after it started (then its slot goes back to the
worker's queue, and the next commit sends a message again). Under steady
commands a partition's commits then cost about two messages a second
instead of one each (a message costs the worker more than a read of the
log); a lone commit costs its task ten more reads and a worker slot held a
tenth of a second longer.

The other partitions get a ``pass_over`` task a moment later, under a flag
of their own, so they pass over those commits a few times a second at most.
It projects like any task but leaves the pending flag to the task that set
it, and neither lingers nor reads once more: the partition's own commits
are that task's to see, and a commit of others' after the pass-over cleared
its flag sends another one. (Clearing the pending flag too, as it once
did, let the next commit send a second task for a partition whose task
lingered in another worker process, and both held a worker slot.)
"""

import contextlib
import dataclasses
import logging
import threading
import time
from functools import cache
from typing import Any

import redis
from celery import shared_task
from django.conf import settings

from projections.engine import BatchResult, Outcome, Projection, ensure_checkpoints, run_batch
from projections.models import Checkpoint
from projections.registry import PROJECTIONS

logger = logging.getLogger(__name__)

PENDING_KEY = "storefront:projection-pending:{name}:{partition}"
PASS_OVER_KEY = "storefront:projection-pass-over:{name}:{partition}"  # noqa: S105 (a Redis key)
PENDING_SECONDS = 5
# A commit of other partitions' products only: a partition passes over it
# (and any more by then) this long after.
PASS_OVER_SECONDS = 0.1
TASK_BUDGET_SECONDS = 5.0
# A partition waiting for another one (``Outcome.WAITING``) looks again after this.
WAITING_SECONDS = 0.05
MAX_WAITING_SECONDS = 2.0
# A task that applied events keeps its partition, and its pending flag, this
# long after the last of them, reading the log every LINGER_STEP_SECONDS:
# commits meanwhile cost no message, and the next read applies them.
LINGER_SECONDS = 0.1
LINGER_STEP_SECONDS = 0.01
# A task lingers only this long after it started: under steady commands it
# would otherwise keep its worker slot for its whole budget, and a worker
# with fewer slots than partitions would keep the others waiting that long.
MAX_LINGER_SECONDS = 0.5


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_timeout=0.25, socket_connect_timeout=0.25
    )


def wake_partitions(keys: frozenset[int] | None = None) -> int:
    """Queue a projection task for every partition that has none queued:
    at once for those owning ``keys`` (every one when None), and
    ``PASS_OVER_SECONDS`` later for the others, which have only to pass over
    the commit (for the readers of tokens naming no key). A partition has at
    most one of each queued (``PENDING_KEY``, ``PASS_OVER_KEY``).

    One round trip to Redis for all the flags, then a message for each
    partition whose flag was not set yet.
    """
    wakes = []
    for name, projection in PROJECTIONS.items():
        count = projection.recent_partition_count()
        owners = None if keys is None else {key % count for key in keys}
        for partition in range(count):
            now = owners is None or partition in owners
            wakes.append((name, partition, PENDING_KEY if now else PASS_OVER_KEY))
    pipeline = _redis().pipeline(transaction=False)
    for name, partition, flag in wakes:
        pipeline.set(flag.format(name=name, partition=partition), 1, nx=True, ex=PENDING_SECONDS)
    flags = pipeline.execute()
    queued = 0
    for (name, partition, flag), newly_set in zip(wakes, flags, strict=True):
        if not newly_set:
            continue
        if flag == PENDING_KEY:
            project_partition.apply_async((name, partition), retry=False)
        else:
            pass_over.apply_async((name, partition), retry=False, countdown=PASS_OVER_SECONDS)
        queued += 1
    return queued


def wake_after_commit(
    sender: Any = None, keys: frozenset[int] | None = None, **kwargs: Any
) -> None:
    """Receives ``eventstore.recording.events_committed`` (after a command's
    transaction commits, with the keys its events named) when there is a
    broker; never raises."""
    if not settings.CELERY_BROKER_URL:
        return
    try:
        wake_partitions(keys)
    except Exception:  # the broker may be down: the sweep will catch up
        logger.warning("Could not nudge the projectors; the sweep will catch up.", exc_info=True)


@shared_task(name="projections.tasks.pass_over", ignore_result=True)
def pass_over(name: str, partition: int) -> int:
    """``project_partition`` for a partition woken by other partitions'
    commits: the next commit of that kind queues another (its flag goes
    first), so the partition passes over them in one go, a few times a
    second at most."""
    _redis().delete(PASS_OVER_KEY.format(name=name, partition=partition))
    return _project(name, partition, flagged=False)


@shared_task(name="projections.tasks.sweep", ignore_result=True)
def sweep() -> int:
    """Beat runs this every few seconds, so a lost wake-up only delays."""
    for projection in PROJECTIONS.values():
        ensure_checkpoints(projection)
    return wake_partitions()


@dataclasses.dataclass
class _Claim:
    """This worker process's hold on one partition: the projection instance
    it keeps from task to task (see ``Projection.forget``) with the checkpoint
    its last batch left (``run_batch``'s ``known``), whether a thread is
    projecting with it, and whether a task came for it meanwhile."""

    instance: Projection
    known: Checkpoint | None = None
    busy: bool = False
    again: bool = False


_claims: dict[tuple[str, int], _Claim] = {}
_claims_guard = threading.Lock()


def _claim(projection: type[Projection], partition: int) -> _Claim | None:
    """The partition's hold, for this thread alone; None when another
    thread of the process is projecting the partition: that thread is told
    to look at the log once more before it lets go (see ``_release``)."""
    with _claims_guard:
        claim = _claims.get((projection.name, partition))
        if claim is None:  # a batch gives it the count its checkpoint says (``run_batch``)
            count = projection.recent_partition_count()
            claim = _claims[(projection.name, partition)] = _Claim(projection(partition, count))
        if claim.busy:
            claim.again = True
            return None
        claim.busy = True
        return claim


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
def project_partition(name: str, partition: int, waited: int = 0) -> int:
    """Apply batches on one partition until the log has nothing more for it,
    or the budget is spent (then queue a task to go on).

    The partition's pending flag stays set while the task projects; when a
    read reaches the log's end, the task lingers if it applied events
    (``_lingers``), then clears the flag and reads once more (see the module
    docstring).

    A task that finds the partition busy hands over to whoever holds it: a
    thread of this process is told to read once more (``_claim``); a batch of
    another process holds the partition's lock, and that process reads the
    log again after its batch, so it sees the commit that sent this task.
    That is why a task stops only when a read finds nothing, never merely
    after a batch smaller than the batch size. A partition waiting for
    another one (``Outcome.WAITING``) queues its next task with a delay that
    doubles with ``waited``, the waits in a row so far.
    """
    return _project(name, partition, waited)


def _project(name: str, partition: int, waited: int = 0, *, flagged: bool = True) -> int:
    """``project_partition``'s work. ``flagged``: the task holds the
    partition's pending flag, the one it came under or one set since (a
    ``pass_over`` comes under none: it lets go as soon as a read reaches the
    log's end)."""
    projection = PROJECTIONS[name]
    pending = PENDING_KEY.format(name=name, partition=partition)
    claim = _claim(projection, partition)
    if claim is None:
        return 0
    deadline = time.monotonic() + TASK_BUDGET_SECONDS
    applied = 0
    size = settings.PROJECTION_BATCH_SIZE
    countdown = 0.0
    started = time.monotonic()
    last_applied: float | None = None  # when a batch of this task last applied events
    try:
        while time.monotonic() < deadline:
            result = run_batch(
                projection, partition, batch_size=size, known=claim.known, projection=claim.instance
            )
            claim.known = result.checkpoint or claim.known
            applied += result.applied
            if result.applied:
                last_applied = time.monotonic()
            if flagged and _lingers(result, started, last_applied):
                _pause()
                continue
            if result.outcome is Outcome.APPLIED and (flagged or result.more):
                if flagged and not result.more:
                    # That read reached the log's end as it was: clear the
                    # flag now, and the next read is the one more look (a
                    # read of nothing before the clearing would add nothing).
                    _redis().delete(pending)
                    flagged = False
                continue
            if result.outcome is Outcome.GONE:  # merged away by a resize: forget it
                with _claims_guard:
                    _claims.pop((name, partition), None)
                _redis().delete(pending)
                return applied
            if result.outcome is Outcome.WAITING:  # for another partition: look again soon
                # Soon, then less and less often: an owner halted behind a
                # parked event keeps a list waiting until someone acts.
                countdown = min(WAITING_SECONDS * 2**waited, MAX_WAITING_SECONDS)
                waited = min(waited + 1, 8)
                break
            if flagged:  # commits from now on send a task: one more look
                _redis().delete(pending)
                flagged = False
            elif _release(projection, partition):
                return applied
            else:  # a task came meanwhile, under a flag of its own
                flagged = True
    except BaseException:
        _release_for_good(projection, partition)
        if flagged:
            with contextlib.suppress(Exception):
                _redis().delete(pending)  # let the next commit or sweep send a task
        raise
    _release_for_good(projection, partition)
    _redis().set(pending, 1, ex=PENDING_SECONDS)
    waited = waited if countdown else 0
    project_partition.apply_async((name, partition, waited), retry=False, countdown=countdown)
    return applied


def _lingers(result: BatchResult, started: float, last_applied: float | None) -> bool:
    """Whether a task at the log's end keeps its partition and flag a while
    longer (``LINGER_SECONDS``): only after applying events of its own, so
    a partition that only passes over others' commits lets go at once, and
    only within ``MAX_LINGER_SECONDS`` of its start, so its slot goes back
    to the worker's queue that often under steady commands."""
    if last_applied is None:
        return False
    reached_end = result.outcome is Outcome.IDLE or (
        result.outcome is Outcome.APPLIED and not result.more
    )
    now = time.monotonic()
    return (
        reached_end and now - last_applied < LINGER_SECONDS and now - started < MAX_LINGER_SECONDS
    )


def _pause() -> None:
    time.sleep(LINGER_STEP_SECONDS)


def _release_for_good(projection: type[Projection], partition: int) -> None:
    """Let go whatever came meanwhile: a failure, or a spent budget that queues
    a task of its own."""
    with _claims_guard:
        claim = _claims[(projection.name, partition)]
        claim.again = claim.busy = False
