"""Batches: apply the next events of one partition, exactly once.

See ``projections.engine`` for the steps of a batch and what a failure does.
"""

import contextlib
import dataclasses
import enum
import gc
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from eventstore import eventlog
from eventstore.databases import READ_DB
from eventstore.eventlog import LogPosition, StoredEvent
from projections.engine import layout
from projections.engine.checkpoints import (
    PartitionGone,
    advance,
    checkpoint_position,
    kept_at,
    lock_checkpoint,
    look_at,
    pass_over,
    unchanged,
)
from projections.engine.failures import is_infrastructure_error, record_failure
from projections.engine.metrics import batch_applied
from projections.engine.projection import Projection
from projections.engine.reads import SharedReads, next_in_log
from projections.models import Checkpoint


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Outcome(enum.Enum):
    APPLIED = "applied"
    IDLE = "idle"
    BUSY = "busy"
    HALTED = "halted"
    BACKING_OFF = "backing_off"
    FAILED = "failed"
    # The next event needs another partition to go on first (``Projection.hold``).
    WAITING = "waiting"
    # The projector has no such partition (any more): a resize merged it away.
    GONE = "gone"


@dataclasses.dataclass
class BatchResult:
    outcome: Outcome
    applied: int = 0
    position: LogPosition = eventlog.START
    # The checkpoint as an applied batch left it, to hand to the next batch
    # as ``known`` (see ``run_batch``). Only an applied batch's: it was read
    # under the partition's lock a moment ago.
    checkpoint: Checkpoint | None = None
    # Whether the log may hold more for the partition right after this batch.
    more: bool = False


class _HandlerFailed(Exception):
    def __init__(self, index: int | None, error: BaseException) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


# SQLSTATE classes and codes that say nothing about the events: the connection
# failed (08), the transaction lost a race (40: serialization failure,
# deadlock), the server ran short (53) or was told to stop the statement or
# the session (57: statement timeout, cancel, shutdown), a system error (58),
# a lock timeout (55P03), an idle-in-transaction timeout (25P03).


def _apply_all(projection: Projection, events: Sequence[StoredEvent]) -> None:
    """Run the projector's code on ``events`` (upcast already, as ``reads``
    gives them: ``prepare`` and the handlers see the current versions alike);
    what it raises is a
    ``_HandlerFailed`` (with the failing event's index while handlers run),
    unless it is an infrastructure error, which goes up as it is."""
    index: int | None = None
    try:
        projection.prepare(events)
        for index, event in enumerate(events):  # noqa: B007 (read below when one raises)
            projection.apply(event)
        index = None
        projection.flush()
    except Exception as error:
        if is_infrastructure_error(error):
            raise
        raise _HandlerFailed(index, error) from error


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Keep Python's cyclic garbage collector out of a batch.

    A batch allocates many containers that live until it ends (events,
    payloads, rows, list entries) and makes almost no cycles: the collector
    would scan them again and again, all the more so beside the rows a kept
    projection holds (it took 40% of a replay's time). Reference counting
    frees them; the collector runs again between batches.
    """
    if not gc.isenabled():
        yield  # already paused (by another thread's batch): that one resumes it
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@_collector_paused()
def run_batch(
    projection_class: type[Projection],
    partition: int,
    *,
    batch_size: int | None = None,
    owner: str | None = None,
    events: Sequence[StoredEvent] | None = None,
    known: Checkpoint | None = None,
    reads: "SharedReads | None" = None,
    projection: Projection | None = None,
    stop_at: LogPosition | None = None,
) -> BatchResult:
    """Apply the next batch of one partition; see the module docstring.

    The events are read before the batch's transaction takes its id: on a
    PostgreSQL server that holds both databases, a transaction of our own
    that already has an id would hold the log's horizon back.

    ``events``, when given, are applied instead of reading the log, and only
    if they are exactly the log's next events after the checkpoint (the engine
    uses this to retry a failed batch one event at a time); otherwise BUSY.

    ``known`` is the checkpoint as the previous batch of this process left it
    (``BatchResult.checkpoint``): a guess that saves a query, checked under the
    partition's lock like any other look; a wrong guess costs a fresh look.
    ``reads`` lets the partitions of one pass share their reads of the log.
    ``projection`` is an instance kept from batch to batch (see
    ``Projection.forget``); by default each batch makes a fresh one.
    ``stop_at`` takes the partition no further than that position (a resize
    brings every partition to one place before it merges them).

    The partition count the batch applies with is the checkpoint's own
    (``Checkpoint.partitions``), checked under the lock with the rest of it.
    """
    owner = owner or default_owner()
    name = projection_class.name
    peek = known if known is not None else look_at(projection_class, partition)
    if peek is None:
        return BatchResult(Outcome.GONE)
    start = checkpoint_position(peek)
    if peek.halted_at_position is not None:
        return BatchResult(Outcome.HALTED, position=start)
    if peek.next_attempt_at and peek.next_attempt_at > timezone.now():
        return BatchResult(Outcome.BACKING_OFF, position=start)
    if stop_at is not None and start >= stop_at:
        return BatchResult(Outcome.IDLE, position=start)
    size = batch_size or settings.PROJECTION_BATCH_SIZE
    instance = projection or projection_class(partition, peek.partitions)
    if instance.partitions != peek.partitions:  # resized since it last applied
        instance.partitions = peek.partitions
        instance.forget()
        layout.forget_recent()  # so the process looks for the new partitions now
    where = instance.log_slice()
    if events is not None:
        # Handed in: the slice's part of them applies, the rest is passed.
        batch = [e for e in events if where is None or where.holds(e.payload)]
        through, more = events[-1].log_position, False
    else:
        batch, through, more = (reads or SharedReads()).read(start, size, peek.skip_snapshot, where)
    if stop_at is not None and through > stop_at:
        # The read went past it, so it holds every event of the slice up to it.
        batch = [event for event in batch if event.log_position <= stop_at]
        through, more = stop_at, False
    if events is not None and through <= start:
        return BatchResult(Outcome.BUSY, position=start)  # applied or passed already
    if through == start:
        return BatchResult(Outcome.IDLE, position=start)
    if events is not None and not next_in_log(batch, start, peek.skip_snapshot, where, through):
        return BatchResult(Outcome.BUSY, position=start)
    if events is None and not batch:
        # Only other slices' events: most batches of a partition among many.
        started = time.perf_counter()
        moved = pass_over(peek, through, owner)
        if moved is not None:
            if instance.kept_at != kept_at(peek):
                instance.forget()
            instance.kept_at = kept_at(moved)
            batch_applied(name, partition, 0, time.perf_counter() - started)
            return BatchResult(Outcome.APPLIED, 0, through, moved, more)
    kept, instance.kept_at = instance.kept_at, None  # unknown until this batch commits
    advanced: Checkpoint | None = None
    waiting = False
    started = time.perf_counter()
    try:
        with transaction.atomic(using=READ_DB):
            checkpoint = lock_checkpoint(name, partition)
            if checkpoint is not None and unchanged(checkpoint, peek):
                if kept != kept_at(checkpoint):
                    instance.forget()
                ready = _hold(instance, batch)
                if ready < len(batch):
                    # The rest waits: the next batch says so (``WAITING``).
                    batch, through = (
                        batch[:ready],
                        (batch[ready - 1].log_position if ready else start),
                    )
                    more = True
                if through == start:
                    waiting = True
                else:
                    if batch:  # else it only passes other slices' events
                        _apply_all(instance, batch)
                    advance(checkpoint, through, len(batch), owner)
                    advanced = checkpoint
    except _HandlerFailed as failure:
        instance.forget()
        return _recover(
            projection_class, partition, instance.partitions, batch, failure, owner=owner
        )
    except PartitionGone:
        instance.forget()
        return BatchResult(Outcome.GONE)
    except BaseException:
        instance.forget()
        raise
    if advanced is not None:
        batch_applied(name, partition, len(batch), time.perf_counter() - started)
        instance.kept_at = kept_at(advanced)
        return BatchResult(Outcome.APPLIED, len(batch), through, advanced, more)
    instance.kept_at = kept  # nothing was applied
    if waiting:
        return BatchResult(Outcome.WAITING, position=start)
    if checkpoint is None or known is None:
        return BatchResult(Outcome.BUSY, position=start)
    # Our guess was stale (someone else moved the partition): look again.
    return run_batch(
        projection_class,
        partition,
        batch_size=batch_size,
        owner=owner,
        events=events,
        reads=reads,
        projection=projection,
        stop_at=stop_at,
    )


def _hold(projection: Projection, events: Sequence[StoredEvent]) -> int:
    """``Projection.hold``, its errors treated as a handler's (the first
    event's, whose retry alone parks it)."""
    if not events:
        return 0
    try:
        return projection.hold(events)
    except Exception as error:
        if is_infrastructure_error(error):
            raise
        raise _HandlerFailed(0, error) from error


def _recover(
    projection_class: type[Projection],
    partition: int,
    partitions: int,
    batch: Sequence[StoredEvent],
    failure: _HandlerFailed,
    *,
    owner: str,
) -> BatchResult:
    if len(batch) > 1:
        applied = 0
        for event in batch:
            result = run_batch(projection_class, partition, owner=owner, events=[event])
            applied += result.applied
            if result.outcome is not Outcome.APPLIED:
                return dataclasses.replace(result, applied=applied)
        return BatchResult(Outcome.APPLIED, applied, batch[-1].log_position)
    record_failure(projection_class.name, partition, partitions, batch[0], failure.error)
    return BatchResult(Outcome.FAILED)


def catch_up(
    projection_class: type[Projection],
    partition: int,
    *,
    batch_size: int | None = None,
    owner: str | None = None,
    max_batches: int | None = None,
    known: dict[tuple[str, int], Checkpoint] | None = None,
    reads: SharedReads | None = None,
    projection: Projection | None = None,
    on_waiting: Callable[[], None] | None = None,
    until: float | None = None,
    stop_at: LogPosition | None = None,
) -> int:
    """Run batches on one partition until it is idle, busy, halted, failing
    or waiting for another partition, or ``until`` (a ``time.monotonic()``
    deadline) has passed; in the last two cases ``on_waiting`` is called: the
    partition has more to do soon.

    ``known`` keeps each partition's checkpoint between calls (a runner's
    passes), so a batch need not look it up first; ``projection`` is an
    instance kept from batch to batch; ``stop_at`` a position the partition
    is taken no further than; see ``run_batch``.
    """
    size = batch_size or settings.PROJECTION_BATCH_SIZE
    key = (projection_class.name, partition)
    memory = known if known is not None else {}
    applied = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        result = run_batch(
            projection_class,
            partition,
            batch_size=size,
            owner=owner,
            known=memory.get(key),
            reads=reads,
            projection=projection,
            stop_at=stop_at,
        )
        if result.checkpoint is not None:
            memory[key] = result.checkpoint
        else:
            memory.pop(key, None)
        batches += 1
        applied += result.applied
        if result.outcome is not Outcome.APPLIED or not result.more:
            if result.outcome is Outcome.WAITING and on_waiting is not None:
                on_waiting()
            break  # caught up with the log as it was read: let other partitions go
        if until is not None and time.monotonic() >= until:
            if on_waiting is not None:
                on_waiting()  # its turn is over, not its work: come back to it soon
            break
    return applied
