"""The projection engine: batches, checkpoints, ownership and failures.

A batch of one projector partition runs in one transaction on ``read``:

1. read the events after the checkpoint from the log (``eventlog``);
2. take the partition's lock (an advisory transaction lock on PostgreSQL:
   the lock is the partition's ownership; a busy partition is skipped, and a
   dead worker's lock goes with its connection) and check that the
   checkpoint has not moved meanwhile;
3. apply them through the projector's handlers and flush the changed rows;
4. move the checkpoint past them and commit.

Rows and checkpoint commit together, so a crash anywhere leaves either the
whole batch or none of it, and a redelivered wake-up finds the checkpoint
already moved: every event takes effect exactly once.

A handler that raises rolls the batch back; the engine then applies the
events one at a time, commits those before the failing one, and counts a
failed attempt on the checkpoint with a back-off. After
``PROJECTION_MAX_ATTEMPTS`` the event is parked and the partition halts
behind it until someone retries or skips it; other partitions go on. An
error of the infrastructure instead (a lost connection, a deadlock, a lock
or statement timeout, Celery's soft time limit: ``is_infrastructure_error``)
says nothing about the events: it rolls the batch back and goes up to the
runner, which tries again later, and no attempt is counted.
"""

import contextlib
import dataclasses
import enum
import gc
import logging
import os
import socket
import threading
import traceback
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any, ClassVar

import psycopg
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, transaction
from django.utils import timezone

from projections import eventlog
from projections.eventlog import LogPosition, StoredEvent
from projections.models import Checkpoint, ParkedEvent
from projections.upcasting import upcast

logger = logging.getLogger(__name__)

READ_DB = "read"
CHECKPOINTS_CHANNEL = "storefront_checkpoints"
MAX_BACKOFF_SECONDS = 60.0


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Projection:
    """One batch's worth of a projector's work on one partition.

    Subclasses name themselves, declare their handlers with ``@handles``, load
    what the batch needs in ``prepare`` and write it back in ``flush``.
    """

    name: ClassVar[str]
    partitioned: ClassVar[bool] = False
    handlers: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.handlers = {
            event_type: attribute
            for klass in reversed(cls.__mro__)
            for attribute, member in vars(klass).items()
            for event_type in getattr(member, "handles_events", ())
        }

    def __init__(self, partition: int, partitions: int) -> None:
        self.partition = partition
        self.partitions = partitions
        # The checkpoint as this instance's last batch committed it; None while
        # nothing it keeps is known to match the tables (see ``forget``).
        self.kept_at: tuple[Any, ...] | None = None

    def forget(self) -> None:
        """Drop whatever the instance keeps between batches.

        An instance handed to ``run_batch`` for batch after batch (by a runner
        or a rebuild's replay) may keep the rows it loaded and wrote, and load
        only what it does not have yet. The engine calls this whenever those
        rows may no longer be the tables': a failed batch, or a checkpoint not
        exactly as this instance's last batch left it (another worker moved
        it, a rebuild swapped the tables, ``verify_projections --fix`` touched
        every checkpoint). Projections that keep nothing need not override it.
        """

    @classmethod
    def partition_count(cls) -> int:
        return settings.PROJECTION_PARTITIONS if cls.partitioned else 1

    def prepare(self, events: Sequence[StoredEvent]) -> None:
        """Load, in a few queries, the rows that ``events`` will touch."""

    def apply(self, event: StoredEvent) -> None:
        attribute = self.handlers.get(event.event_type)
        if attribute is not None:
            getattr(self, attribute)(event)

    def flush(self) -> None:
        """Write every row the batch changed."""


def handles(*event_types: str) -> Any:
    def mark(method: Any) -> Any:
        method.handles_events = event_types
        return method

    return mark


class Outcome(enum.Enum):
    APPLIED = "applied"
    IDLE = "idle"
    BUSY = "busy"
    HALTED = "halted"
    BACKING_OFF = "backing_off"
    FAILED = "failed"


@dataclasses.dataclass
class BatchResult:
    outcome: Outcome
    applied: int = 0
    position: LogPosition = eventlog.START
    # The checkpoint as an applied batch left it, to hand to the next batch
    # as ``known`` (see ``run_batch``). Only an applied batch's: it was read
    # under the partition's lock a moment ago.
    checkpoint: Checkpoint | None = None


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
_INFRASTRUCTURE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_INFRASTRUCTURE_CODES = frozenset({"55P03", "25P03"})
# Errors of the connection itself: Django's (either backend; SQLite's "database
# is locked" too) and psycopg's when the server sent no SQLSTATE.
_CONNECTION_ERRORS = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def is_infrastructure_error(error: BaseException) -> bool:
    """Whether ``error`` is the infrastructure's, not the projector's: trying the
    same events again later can succeed, so it must not count toward parking.

    The chain of errors it was raised from counts too: a database error that a
    handler's or flush's own query ran into is the database's. Where the server
    gave a SQLSTATE it decides: a statement error that is not transient (an
    integrity or data error, a value too large for an index: 23, 22, 54...)
    fails the same way every time, and is counted like any handler error.
    """
    verdict = False
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, SoftTimeLimitExceeded):
            return True
        sqlstate = link.sqlstate if isinstance(link, psycopg.Error) else None
        if sqlstate:
            return sqlstate[:2] in _INFRASTRUCTURE_CLASSES or sqlstate in _INFRASTRUCTURE_CODES
        if isinstance(link, _CONNECTION_ERRORS):
            verdict = True  # unless the error it wraps has a SQLSTATE that says otherwise
        link = link.__cause__ or link.__context__
    return verdict


def ensure_checkpoints(projection: type[Projection]) -> None:
    for partition in range(projection.partition_count()):
        Checkpoint.objects.get_or_create(projector=projection.name, partition=partition)


_TAKE_PARTITION_SQL = (
    "SELECT pg_try_advisory_xact_lock(%s, %s), set_config('synchronous_commit', 'off', true)"
)


def _lock_checkpoint(name: str, partition: int) -> Checkpoint | None:
    """Take the partition for this transaction, or None when another worker has it.

    On PostgreSQL a transaction-scoped advisory lock: unlike a row lock it
    gives the transaction no id until its first write, so the batch does not
    hold back the log horizon of readers on the same server while it loads.
    A dead worker's lock goes with its connection. On SQLite the batch's
    IMMEDIATE transaction already holds the database's write lock.

    The same statement relaxes the batch's durability: its commit skips the
    fsync wait, so a crash can lose only the last batches, rows and
    checkpoint together, and the log replays them. For this transaction only
    (``set_config(..., true)``): a later transaction on the connection, and
    the next borrower of a pooled one (``DATABASE_POOL``), commit durably.
    """
    connection = connections[READ_DB]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_TAKE_PARTITION_SQL, [_lock_key(name), partition])
            if not cursor.fetchone()[0]:
                return None
    return Checkpoint.objects.filter(projector=name, partition=partition).first()


def hold_partition(name: str, partition: int) -> None:
    """Take the partition for the rest of this transaction on ``read``,
    waiting for a running batch to finish (no-op on SQLite, whose IMMEDIATE
    transaction holds the whole database)."""
    connection = connections[READ_DB]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_lock_key(name), partition])


def _wait_for_checkpoint(name: str, partition: int) -> Checkpoint:
    """Like ``_lock_checkpoint``, but waits for a running batch to finish."""
    hold_partition(name, partition)
    return Checkpoint.objects.select_for_update().get(projector=name, partition=partition)


def _lock_key(name: str) -> int:
    return zlib.crc32(f"storefront-projector:{name}".encode()) - 2**31


def checkpoint_payload(checkpoint: Checkpoint) -> str:
    """What a checkpoint's commit sends with ``NOTIFY``: readers waiting for
    a position keep every partition's in memory from these
    (``consistency.CheckpointWatch``)."""
    return (
        f"{checkpoint.projector}:{checkpoint.partition}:"
        f"{checkpoint.transaction_id}:{checkpoint.position}"
    )


def notify_checkpoints_changed() -> None:
    """Tell waiting readers to read every checkpoint again (an empty payload),
    when they moved other than by a batch: a skip, a swap, a repair. Sent when
    the caller's transaction on ``read`` commits."""
    connection = connections[READ_DB]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [CHECKPOINTS_CHANNEL])


def _advance(checkpoint: Checkpoint, events: Sequence[StoredEvent], owner: str) -> None:
    """Move the checkpoint past ``events`` and tell the waiting readers, in one
    statement on PostgreSQL (the NOTIFY is sent when the transaction commits)."""
    last = events[-1]
    now = timezone.now()
    if checkpoint.last_error:
        # A retried parked event is among these: the batch applied it.
        mark_retried_resolved(checkpoint.projector, checkpoint.partition, last.log_position)
    checkpoint.transaction_id = last.transaction_id
    checkpoint.position = last.position
    checkpoint.events_applied += len(events)
    checkpoint.owner = owner
    checkpoint.heartbeat_at = now
    checkpoint.failures = 0
    checkpoint.next_attempt_at = None
    checkpoint.last_error = ""
    checkpoint.updated_at = now
    connection = connections[READ_DB]
    if connection.vendor != "postgresql":
        checkpoint.save()
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _ADVANCE_SQL,
            [
                checkpoint.transaction_id,
                checkpoint.position,
                checkpoint.events_applied,
                owner,
                now,
                now,
                checkpoint.pk,
                CHECKPOINTS_CHANNEL,
                checkpoint_payload(checkpoint),
            ],
        )


_ADVANCE_SQL = f"""
    UPDATE {Checkpoint._meta.db_table}
    SET transaction_id = %s, position = %s, events_applied = %s, owner = %s,
        heartbeat_at = %s, updated_at = %s, failures = 0,
        next_attempt_at = NULL, last_error = ''
    WHERE id = %s
    RETURNING pg_notify(%s, %s)
"""  # noqa: S608  (the model's own table name)


def _apply_all(projection: Projection, events: Sequence[StoredEvent]) -> None:
    """Run the projector's code on ``events``; what it raises is a
    ``_HandlerFailed`` (with the failing event's index while handlers run),
    unless it is an infrastructure error, which goes up as it is."""
    index: int | None = None
    try:
        projection.prepare(events)
        for index, event in enumerate(events):  # noqa: B007 (read below when one raises)
            projection.apply(upcast(event))
        index = None
        projection.flush()
    except Exception as error:
        if is_infrastructure_error(error):
            raise
        raise _HandlerFailed(index, error) from error


def _kept_at(checkpoint: Checkpoint) -> tuple[Any, ...]:
    """What identifies the checkpoint as one batch left it: every batch and
    every out-of-band write to a partition's tables sets ``updated_at``."""
    return (checkpoint.pk, checkpoint.transaction_id, checkpoint.position, checkpoint.updated_at)


def _checkpoint_position(checkpoint: Checkpoint) -> LogPosition:
    return LogPosition(checkpoint.transaction_id, checkpoint.position)


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
    """
    owner = owner or default_owner()
    name = projection_class.name
    peek = known if known is not None else _peek(projection_class, partition)
    start = _checkpoint_position(peek)
    if peek.halted_at_position is not None:
        return BatchResult(Outcome.HALTED, position=start)
    if peek.next_attempt_at and peek.next_attempt_at > timezone.now():
        return BatchResult(Outcome.BACKING_OFF, position=start)
    size = batch_size or settings.PROJECTION_BATCH_SIZE
    batch = (
        list(events)
        if events is not None
        else (reads or SharedReads()).read(start, size, peek.skip_snapshot)
    )
    if not batch:
        return BatchResult(Outcome.IDLE, position=start)
    if events is not None and not _next_in_log(batch, start, peek.skip_snapshot):
        return BatchResult(Outcome.BUSY, position=start)
    instance = projection or projection_class(partition, projection_class.partition_count())
    kept, instance.kept_at = instance.kept_at, None  # unknown until this batch commits
    advanced: Checkpoint | None = None
    try:
        with transaction.atomic(using=READ_DB):
            checkpoint = _lock_checkpoint(name, partition)
            if checkpoint is not None and _unchanged(checkpoint, peek):
                if kept != _kept_at(checkpoint):
                    instance.forget()
                _apply_all(instance, batch)
                _advance(checkpoint, batch, owner)
                advanced = checkpoint
    except _HandlerFailed as failure:
        instance.forget()
        return _recover(projection_class, partition, batch, failure, owner=owner)
    except BaseException:
        instance.forget()
        raise
    if advanced is not None:
        instance.kept_at = _kept_at(advanced)
        return BatchResult(Outcome.APPLIED, len(batch), batch[-1].log_position, checkpoint=advanced)
    instance.kept_at = kept  # nothing was applied
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
    )


class SharedReads:
    """The reads of the log made during one pass over the partitions.

    Every partition reads every event, and partitions that stand at the same
    place ask for the same events. The log below its horizon only grows at the
    end, so events read a moment ago from a position are still exactly the
    next events after it: a pass reads them once. Only the last few reads are
    kept (a long catch-up would otherwise hold the whole log); a partition that
    fell further behind reads for itself. A new pass starts a new one.
    """

    KEPT = 8

    def __init__(self) -> None:
        self._reads: OrderedDict[tuple[LogPosition, int, str], list[StoredEvent]] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, start: LogPosition, limit: int, skip_snapshot: str) -> list[StoredEvent]:
        key = (start, limit, skip_snapshot)
        with self._lock:
            events = self._reads.get(key)
        if events is None:
            events = eventlog.read_events(start, limit, skip_snapshot=skip_snapshot)
            with self._lock:
                self._reads[key] = events
                while len(self._reads) > self.KEPT:
                    self._reads.popitem(last=False)
        return events


class ReadAhead(SharedReads):
    """The reads of one long replay: while a batch is applied, the next one is
    read on a thread of its own (with a connection of its own), so the log's
    server and the wire work while the handlers run. A read that returns a
    full batch starts the read after it; a read of another place waits for
    that one to end and reads for itself. Only the last read and the one
    ahead are held (none of ``SharedReads``' own). ``close`` when done: it
    closes the thread's connections.
    """

    def __init__(self) -> None:
        super().__init__()
        self._last: tuple[tuple[LogPosition, int, str], list[StoredEvent]] | None = None
        self._ahead: tuple[tuple[LogPosition, int, str], Future[list[StoredEvent]]] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")

    def read(self, start: LogPosition, limit: int, skip_snapshot: str) -> list[StoredEvent]:
        key = (start, limit, skip_snapshot)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == key:
            events = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].result()  # a read nobody wants now; done before another starts
            events = eventlog.read_events(start, limit, skip_snapshot=skip_snapshot)
        self._last = (key, events)
        if len(events) == limit:
            following = (events[-1].log_position, limit, skip_snapshot)
            self._ahead = (following, self._pool.submit(_read_ahead, *following))
        return events

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead[1].exception()  # wait for it; unwanted now, failed or not
            self._ahead = None
        self._last = None
        self._pool.submit(connections.close_all).result()
        self._pool.shutdown()


def _read_ahead(start: LogPosition, limit: int, skip_snapshot: str) -> list[StoredEvent]:
    return eventlog.read_events(start, limit, skip_snapshot=skip_snapshot)


def _peek(projection_class: type[Projection], partition: int) -> Checkpoint:
    name = projection_class.name
    peek = Checkpoint.objects.filter(projector=name, partition=partition).first()
    if peek is None:
        ensure_checkpoints(projection_class)
        peek = Checkpoint.objects.get(projector=name, partition=partition)
    return peek


def _next_in_log(batch: Sequence[StoredEvent], start: LogPosition, skip_snapshot: str) -> bool:
    """A batch handed in (a retry, a redelivery) applies only if it is exactly
    the next events of the log after the checkpoint: none applied, none skipped."""
    following = eventlog.read_events(start, len(batch), skip_snapshot=skip_snapshot)
    return [event.position for event in following] == [event.position for event in batch]


def _unchanged(checkpoint: Checkpoint, peek: Checkpoint) -> bool:
    """Nobody moved, halted, failed or repaired the partition since we looked
    (a repair or a swap may leave the position and change what the log read
    from it must skip)."""
    return (
        _checkpoint_position(checkpoint) == _checkpoint_position(peek)
        and checkpoint.skip_snapshot == peek.skip_snapshot
        and checkpoint.halted_at_position is None
        and checkpoint.failures == peek.failures
    )


def _recover(
    projection_class: type[Projection],
    partition: int,
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
    _record_failure(projection_class.name, partition, batch[0], failure.error)
    return BatchResult(Outcome.FAILED)


def _record_failure(name: str, partition: int, event: StoredEvent, error: BaseException) -> None:
    logger.warning(
        "Projector %s[%s] failed on event #%s (%s): %r",
        name,
        partition,
        event.position,
        event.event_type,
        error,
    )
    with transaction.atomic(using=READ_DB):
        checkpoint = _wait_for_checkpoint(name, partition)
        if _checkpoint_position(checkpoint) >= event.log_position:
            return
        checkpoint.failures += 1
        checkpoint.last_error = f"#{event.position} {event.event_type}: {error!r}"[:2000]
        delay = min(
            settings.PROJECTION_RETRY_BASE_SECONDS * 2 ** (checkpoint.failures - 1),
            MAX_BACKOFF_SECONDS,
        )
        checkpoint.next_attempt_at = timezone.now() + timedelta(seconds=delay)
        if checkpoint.failures >= settings.PROJECTION_MAX_ATTEMPTS:
            checkpoint.halted_at_position = event.position
            checkpoint.next_attempt_at = None
            ParkedEvent.objects.create(
                projector=name,
                partition=partition,
                position=event.position,
                transaction_id=event.transaction_id,
                event_type=event.event_type,
                payload=event.payload,
                error=repr(error)[:2000],
                traceback="".join(traceback.format_exception(error))[-20000:],
                attempts=checkpoint.failures,
            )
            logger.error("Projector %s[%s] parked event #%s", name, partition, event.position)
        checkpoint.save()


def retry_parked(parked_id: int) -> ParkedEvent:
    """Let the halted partition try the parked event again."""
    with transaction.atomic(using=READ_DB):
        parked = ParkedEvent.objects.select_for_update().get(pk=parked_id)
        checkpoint = _wait_for_checkpoint(parked.projector, parked.partition)
        if checkpoint.halted_at_position == parked.position:
            checkpoint.halted_at_position = None
            checkpoint.failures = 0
            checkpoint.next_attempt_at = None
            checkpoint.save()
        elif checkpoint.position >= parked.position:
            # Already past it: nothing is left to retry.
            parked.status = ParkedEvent.Status.RESOLVED
            parked.resolved_at = timezone.now()
            parked.save(update_fields=["status", "resolved_at"])
            return parked
        parked.status = ParkedEvent.Status.RETRY
        parked.save(update_fields=["status"])
    return parked


def skip_parked(parked_id: int) -> ParkedEvent:
    """Move the halted partition past the parked event without applying it."""
    with transaction.atomic(using=READ_DB):
        parked = ParkedEvent.objects.select_for_update().get(pk=parked_id)
        checkpoint = _wait_for_checkpoint(parked.projector, parked.partition)
        if checkpoint.halted_at_position == parked.position:
            checkpoint.transaction_id = parked.transaction_id
            checkpoint.position = parked.position
            checkpoint.halted_at_position = None
            checkpoint.failures = 0
            checkpoint.next_attempt_at = None
            checkpoint.last_error = ""
            checkpoint.save()
            notify_checkpoints_changed()
        parked.status = ParkedEvent.Status.SKIPPED
        parked.resolved_at = timezone.now()
        parked.save(update_fields=["status", "resolved_at"])
    return parked


def mark_retried_resolved(name: str, partition: int, position: LogPosition) -> None:
    ParkedEvent.objects.filter(
        projector=name,
        partition=partition,
        status=ParkedEvent.Status.RETRY,
        position__lte=position.position,
        transaction_id__lte=position.transaction_id,
    ).update(status=ParkedEvent.Status.RESOLVED, resolved_at=timezone.now())


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
) -> int:
    """Run batches on one partition until it is idle, busy, halted or failing.

    ``known`` keeps each partition's checkpoint between calls (a runner's
    passes), so a batch need not look it up first; ``projection`` is an
    instance kept from batch to batch; see ``run_batch``.
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
        )
        if result.checkpoint is not None:
            memory[key] = result.checkpoint
        else:
            memory.pop(key, None)
        batches += 1
        applied += result.applied
        if result.outcome is not Outcome.APPLIED or result.applied < size:
            break  # caught up with the log as it was read: let other partitions go
    return applied


def project_all(
    projections: Iterable[type[Projection]] | None = None,
    *,
    batch_size: int | None = None,
    owner: str | None = None,
) -> int:
    """Bring every partition of every projector up to the readable end of the log."""
    from projections.projectors import PROJECTIONS

    total = 0
    for projection_class in projections or PROJECTIONS.values():
        ensure_checkpoints(projection_class)
        for partition in range(projection_class.partition_count()):
            total += catch_up(projection_class, partition, batch_size=batch_size, owner=owner)
    return total
