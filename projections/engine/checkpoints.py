"""A partition's checkpoint: taking the partition, moving the checkpoint,
and telling waiting readers.

The partition's lock is an advisory transaction lock on the read database:
it is the partition's ownership; a busy partition is skipped, and a dead
worker's lock goes with its connection.
"""

import copy
import zlib
from typing import Any

from django.db import connections
from django.utils import timezone

from eventstore.databases import READ_DB
from eventstore.eventlog import LogPosition
from projections.compiled import CompiledQuery
from projections.engine.projection import Projection
from projections.models import Checkpoint, ParkedEvent

CHECKPOINTS_CHANNEL = "storefront_checkpoints"


def ensure_checkpoints(projection: type[Projection]) -> None:
    """Make the projector's checkpoints, at the log's start, if it has none:
    as many as its count (``engine.layout``), each saying so. Once it has
    rows, only a resize adds or removes them."""
    if Checkpoint.objects.filter(projector=projection.name).exists():
        return
    count = projection.partition_count()
    # One statement: another process sees all of them or none.
    Checkpoint.objects.bulk_create(
        [
            Checkpoint(projector=projection.name, partition=partition, partitions=count)
            for partition in range(count)
        ],
        ignore_conflicts=True,
    )


_checkpoint_of = CompiledQuery(
    READ_DB,
    lambda name, partition: Checkpoint.objects.filter(projector=name, partition=partition),
)


def checkpoint_of(name: str, partition: int) -> Checkpoint | None:
    """The partition's checkpoint row as it is now (every batch reads it twice)."""
    found = _checkpoint_of(name=name, partition=partition)
    return found[0] if found else None


_TAKE_PARTITION_SQL = (
    "SELECT pg_try_advisory_xact_lock(%s, %s), set_config('synchronous_commit', 'off', true)"
)


class PartitionGone(Exception):
    """The projector has no such partition any more (a resize merged it away)."""


def lock_checkpoint(name: str, partition: int) -> Checkpoint | None:
    """Take the partition for this transaction, or None when another worker
    has it; raises ``PartitionGone`` when it has no checkpoint.

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
            cursor.execute(_TAKE_PARTITION_SQL, [lock_key(name), partition])
            if not cursor.fetchone()[0]:
                return None
    # A statement of its own, after the lock: one that took the lock and read
    # the row together would read it as of its start, before the lock, and
    # could miss the commit of the batch that let go of the lock meanwhile.
    checkpoint = checkpoint_of(name, partition)
    if checkpoint is None:
        raise PartitionGone(f"{name}[{partition}]")
    return checkpoint


def hold_partition(name: str, partition: int) -> None:
    """Take the partition for the rest of this transaction on ``read``,
    waiting for a running batch to finish (no-op on SQLite, whose IMMEDIATE
    transaction holds the whole database)."""
    connection = connections[READ_DB]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [lock_key(name), partition])


def wait_for_checkpoint(name: str, partition: int) -> Checkpoint:
    """Like ``lock_checkpoint``, but waits for a running batch to finish."""
    hold_partition(name, partition)
    return Checkpoint.objects.select_for_update().get(projector=name, partition=partition)


def lock_key(name: str) -> int:
    return zlib.crc32(f"storefront-projector:{name}".encode()) - 2**31


def checkpoint_payload(checkpoint: Checkpoint) -> str:
    """What a checkpoint's commit sends with ``NOTIFY``: readers waiting for
    a position keep every partition's in memory from these
    (``consistency.CheckpointWatch``)."""
    return (
        f"{checkpoint.projector}:{checkpoint.partition}:"
        f"{checkpoint.transaction_id}:{checkpoint.position}:{checkpoint.partitions}"
    )


def notify_checkpoints_changed() -> None:
    """Tell waiting readers to read every checkpoint again (an empty payload),
    when they moved other than by a batch: a skip, a swap, a repair. Sent when
    the caller's transaction on ``read`` commits."""
    connection = connections[READ_DB]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [CHECKPOINTS_CHANNEL])


def advance(checkpoint: Checkpoint, through: LogPosition, applied: int, owner: str) -> None:
    """Move the checkpoint to ``through``, having applied ``applied`` events
    up to it, and tell the waiting readers, in one statement on PostgreSQL
    (the NOTIFY is sent when the transaction commits)."""
    now = timezone.now()
    if checkpoint.last_error:
        # A retried parked event is among these: the batch applied it.
        mark_retried_resolved(checkpoint.projector, checkpoint.partition, through)
    checkpoint.transaction_id = through.transaction_id
    checkpoint.position = through.position
    checkpoint.events_applied += applied
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


# A partition whose slice held nothing up to ``through`` only moves its
# checkpoint: one statement in a transaction of its own (autocommit), with
# the partition's lock, the same relaxed durability as a batch, and the
# checkpoint as the caller last saw it (``peek``) as its condition. No row
# when the partition is busy, or moved, failed, halted, repaired or resized
# since the caller looked: the caller then takes the ordinary path.
_PASS_OVER_SQL = f"""
    WITH taken AS (
        SELECT pg_try_advisory_xact_lock(%s, %s) AS ok,
               set_config('synchronous_commit', 'off', true)
    )
    UPDATE {Checkpoint._meta.db_table}
    SET transaction_id = %s, position = %s, owner = %s, heartbeat_at = %s, updated_at = %s
    FROM taken
    WHERE taken.ok AND id = %s
      AND transaction_id = %s AND position = %s AND partitions = %s AND skip_snapshot = %s
      AND updated_at = %s AND failures = 0 AND halted_at_position IS NULL AND last_error = ''
    RETURNING pg_notify(%s, %s)
"""  # noqa: S608  (the model's own table name)


def pass_over(peek: Checkpoint, through: LogPosition, owner: str) -> Checkpoint | None:
    """Move a partition's checkpoint from where ``peek`` says to ``through``
    with nothing to apply on the way (its slice had no event there), in one
    round trip on PostgreSQL; the checkpoint as moved, or None when the
    statement found the partition busy or changed since ``peek`` (or on
    SQLite), and the caller must take a batch's ordinary path."""
    connection = connections[READ_DB]
    if connection.vendor != "postgresql" or peek.failures or peek.last_error:
        return None
    if peek.halted_at_position is not None or connection.in_atomic_block:
        return None
    moved = copy.copy(peek)
    now = timezone.now()
    moved.transaction_id, moved.position = through.transaction_id, through.position
    moved.owner, moved.heartbeat_at, moved.updated_at = owner, now, now
    with connection.cursor() as cursor:
        cursor.execute(
            _PASS_OVER_SQL,
            [
                lock_key(peek.projector),
                peek.partition,
                moved.transaction_id,
                moved.position,
                owner,
                now,
                now,
                peek.pk,
                peek.transaction_id,
                peek.position,
                peek.partitions,
                peek.skip_snapshot,
                peek.updated_at,
                CHECKPOINTS_CHANNEL,
                checkpoint_payload(moved),
            ],
        )
        return moved if cursor.fetchone() is not None else None


def mark_retried_resolved(name: str, partition: int, position: LogPosition) -> None:
    ParkedEvent.objects.filter(
        projector=name,
        partition=partition,
        status=ParkedEvent.Status.RETRY,
        position__lte=position.position,
        transaction_id__lte=position.transaction_id,
    ).update(status=ParkedEvent.Status.RESOLVED, resolved_at=timezone.now())


def kept_at(checkpoint: Checkpoint) -> tuple[Any, ...]:
    """What identifies the checkpoint as one batch left it: every batch and
    every out-of-band write to a partition's tables sets ``updated_at``."""
    return (checkpoint.pk, checkpoint.transaction_id, checkpoint.position, checkpoint.updated_at)


def checkpoint_position(checkpoint: Checkpoint) -> LogPosition:
    return LogPosition(checkpoint.transaction_id, checkpoint.position)


def look_at(projection_class: type[Projection], partition: int) -> Checkpoint | None:
    """The partition's checkpoint as it is now; None when the projector has
    no such partition (a resize merged it away, or it was never made)."""
    name = projection_class.name
    peek = checkpoint_of(name, partition)
    if peek is None:
        ensure_checkpoints(projection_class)
        peek = checkpoint_of(name, partition)
    return peek


def unchanged(checkpoint: Checkpoint, peek: Checkpoint) -> bool:
    """Nobody moved, halted, failed or repaired the partition since we looked
    (a repair or a swap may leave the position and change what the log read
    from it must skip)."""
    return (
        checkpoint_position(checkpoint) == checkpoint_position(peek)
        and checkpoint.partitions == peek.partitions
        and checkpoint.skip_snapshot == peek.skip_snapshot
        and checkpoint.halted_at_position is None
        and checkpoint.failures == peek.failures
    )
