"""Resize a partitioned projector online: split its partitions, or merge them.

Partition ``p`` of ``P`` owns the products whose id modulo ``P`` is ``p``
(``ProductStore.owns``). A split doubles the count: ``p`` keeps the products
whose id modulo ``2P`` is ``p``, and a new partition ``p + P`` takes the
others. It starts at ``p``'s checkpoint with a copy of ``p``'s seller facts
and its products' facts: ``p`` applied every one of their events up to there,
and the events after it are the new partition's to apply. So a split replays
nothing and needs no partition to wait for another.

A merge halves the count: ``p`` takes ``p + P/2``'s products back. The two
must stand at one place in the log, or one of them would apply an event
twice or never. So the merge first takes every partition to the furthest
checkpoint and no further (``run_batch``'s ``stop_at``), inside its own
transaction, then merges.

Each step (one split or one merge) is one transaction on ``read``, under
every partition's lock (``hold_partition``): batches in flight finish
first, batches after it read the new count with their checkpoint
(``Checkpoint.partitions``) and find the tables already moved. Facts, rows,
related links and checkpoints move together, so readers and read-your-own-
writes tokens see the old layout or the new one, never a mixture. Writers
never wait: commands do not touch the read database. A resize holds the
rebuild lock, so it never runs beside a rebuild or another resize, and it is
refused while an event is parked: the partition that parked it may no longer
own its product afterwards.
"""

import dataclasses
import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import OperationalError, connections, transaction
from django.db.models import F
from django.utils import timezone

from eventstore.databases import READ_DB
from eventstore.eventlog import LogPosition
from projections.engine import catch_up, ensure_checkpoints, hold_partition
from projections.engine.checkpoints import checkpoint_position, notify_checkpoints_changed
from projections.engine.layout import RECENT_SECONDS, forget_recent
from projections.engine.projection import Projection
from projections.models import (
    Checkpoint,
    ParkedEvent,
    ProductFacts,
    ProductReadModel,
    RelatedLink,
    SellerFacts,
)
from projections.rebuild import RebuildRunning, rebuild_lock
from projections.registry import PROJECTIONS
from projections.tasks import sweep, wake_after_commit

logger = logging.getLogger(__name__)

MAX_PARTITIONS = 256
# A step waits at most this long for a running batch to let go of a
# partition, while the partitions it holds already stand still; then it lets
# go of them all and tries again, at most STEP_ATTEMPTS times.
LOCK_WAIT_SECONDS = 2
STEP_ATTEMPTS = 5
LOCK_NOT_AVAILABLE = "55P03"
# A merge gives up on aligning the partitions after this many rounds in
# which none of them moved (one waits for a partition that cannot go on).
STILL_ROUNDS = 3


class ResizeRefused(Exception):
    """The resize cannot be done now; nothing was changed."""


@dataclasses.dataclass(frozen=True)
class Step:
    """One split or merge, as it committed."""

    before: int
    after: int
    seconds: float
    # Events applied to bring the partitions to one place (a merge's), before
    # the step's locks and under them.
    aligned: int = 0


def resize(name: str, to: int, *, log: Callable[[str], None] = lambda line: None) -> list[Step]:
    """Take projector ``name`` to ``to`` partitions, a split or a merge at a
    time (``to`` is the count times or divided by a power of two); returns
    the steps. Raises ``ResizeRefused`` having changed nothing in the step it
    refuses (earlier steps stay: each is whole on its own)."""
    projection = PROJECTIONS.get(name)
    if projection is None or not projection.partitioned:
        raise ResizeRefused(f"{name!r} is not a partitioned projector.")
    if not 1 <= to <= MAX_PARTITIONS:
        raise ResizeRefused(f"A projector has from 1 to {MAX_PARTITIONS} partitions.")
    if connections[READ_DB].in_atomic_block:
        raise ResizeRefused("A resize runs its own transactions; none may be open.")
    steps: list[Step] = []
    try:
        with rebuild_lock():
            ensure_checkpoints(projection)
            count = projection.partition_count()
            if not _reachable(count, to):
                raise ResizeRefused(
                    f"{name} has {count} partitions: it can go to that number times or "
                    f"divided by a power of two (splits and merges), not to {to}."
                )
            while count != to:
                step = _step_when_free(projection, count, count * 2 if to > count else count // 2)
                log(f"{name}: {step.before} -> {step.after} partitions in {step.seconds:.2f} s.")
                steps.append(step)
                count = step.after
    except RebuildRunning as running:
        raise ResizeRefused(f"A rebuild or another resize is running: {running}") from None
    finally:
        forget_recent()
        if steps:
            _wake_workers()
    return steps


def _wake_workers() -> None:
    """Tasks for the new partitions now, and once more when every process's
    recent count (``layout.RECENT_SECONDS``) has seen the resize: a command
    in between wakes only the partitions its process knew of."""
    wake_after_commit()
    if settings.CELERY_BROKER_URL:
        try:
            sweep.apply_async(countdown=RECENT_SECONDS + 0.5, retry=False)
        except Exception:  # the broker may be down: the beat's sweep will catch up
            logger.warning("Could not queue a sweep after the resize.", exc_info=True)


def _step_when_free(projection: type[Projection], count: int, after: int) -> Step:
    """``_step``, tried again when a running batch kept a partition past
    ``LOCK_WAIT_SECONDS`` (the step lets go of every partition meanwhile, so
    a long batch never stops the others for long)."""
    drawn = 0
    for _ in range(STEP_ATTEMPTS):
        if after < count:
            drawn += _draw_together(projection)
        try:
            step = _step(projection, count, after)
            return dataclasses.replace(step, aligned=step.aligned + drawn)
        except OperationalError as error:
            if getattr(error.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
    raise ResizeRefused(
        f"{projection.name}'s batches kept a partition for over {LOCK_WAIT_SECONDS} s "
        f"{STEP_ATTEMPTS} times; try again."
    )


def _draw_together(projection: type[Projection]) -> int:
    """Take every partition to the furthest one's place with ordinary
    batches, beside the workers' and before the step's locks, so that the
    step has only what came meanwhile to align while it holds them."""
    positions = _positions(projection.name)
    target = max(positions.values())
    return sum(
        catch_up(projection, partition, owner="resize", stop_at=target)
        for partition, at in positions.items()
        if at < target
    )


def _reachable(count: int, to: int) -> bool:
    low, high = min(count, to), max(count, to)
    return high % low == 0 and (high // low) & (high // low - 1) == 0


def _step(projection: type[Projection], count: int, after: int) -> Step:
    started = time.perf_counter()
    name = projection.name
    with transaction.atomic(using=READ_DB):
        _wait_at_most(LOCK_WAIT_SECONDS)
        for partition in range(count):
            hold_partition(name, partition)
        rows = list(Checkpoint.objects.filter(projector=name).order_by("partition"))
        if [row.partition for row in rows] != list(range(count)) or any(
            row.partitions != count for row in rows
        ):
            raise ResizeRefused(f"{name}'s checkpoints changed meanwhile; try again.")
        _refuse_parked(name, rows)
        aligned = 0
        if after > count:
            _split(name, rows)
        else:
            aligned = _align(projection, count)
            _merge(name, count)
        notify_checkpoints_changed()
        _commit_durably()
    return Step(count, after, time.perf_counter() - started, aligned)


def _refuse_parked(name: str, rows: list[Checkpoint]) -> None:
    halted = [row.partition for row in rows if row.halted_at_position is not None]
    parked = ParkedEvent.objects.filter(
        projector=name, status__in=[ParkedEvent.Status.PARKED, ParkedEvent.Status.RETRY]
    )
    if halted or parked.exists():
        raise ResizeRefused(
            f"{name} has parked events: retry or skip them first (manage.py parked_events), "
            "then resize. A partition may not own an event's product after a resize."
        )


def _split(name: str, rows: list[Checkpoint]) -> None:
    count = len(rows)
    doubled = count * 2
    now = timezone.now()
    Checkpoint.objects.bulk_create(
        Checkpoint(
            projector=name,
            partition=row.partition + count,
            partitions=doubled,
            transaction_id=row.transaction_id,
            position=row.position,
            owner=row.owner,
            heartbeat_at=row.heartbeat_at,
            skip_snapshot=row.skip_snapshot,
            updated_at=now,
        )
        for row in rows
    )
    Checkpoint.objects.filter(projector=name, partition__lt=count).update(
        partitions=doubled, updated_at=now
    )
    _copy_seller_facts(name, count)
    _move_to(name, doubled)


def _copy_seller_facts(name: str, count: int) -> None:
    """Every partition keeps every seller's facts: the new ones start with
    their parents' (partition ``p + count`` with ``p``'s)."""
    table = SellerFacts._meta.db_table
    with connections[READ_DB].cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (projector, partition, seller_id, name, reputation) "  # noqa: S608
            f"SELECT projector, partition + %s, seller_id, name, reputation FROM {table} "
            f"WHERE projector = %s AND partition < %s",
            [count, name, count],
        )


def _move_to(name: str, count: int) -> None:
    """Give each product's facts, row and outgoing links the partition that
    owns the product at ``count`` partitions."""
    ProductFacts.objects.filter(projector=name).exclude(partition=F("product_id") % count).update(
        partition=F("product_id") % count
    )
    ProductReadModel.objects.exclude(partition=F("product_id") % count).update(
        partition=F("product_id") % count
    )
    RelatedLink.objects.exclude(partition=F("source_id") % count).update(
        partition=F("source_id") % count
    )


def _align(projection: type[Projection], count: int) -> int:
    """Bring every partition to the furthest checkpoint, no further, in the
    step's transaction (its locks are this session's, so its batches take
    them again); returns the events applied."""
    name = projection.name
    target = max(_positions(name).values())
    instances = {partition: projection(partition, count) for partition in range(count)}
    applied = still = 0
    while True:
        before = _positions(name)
        behind = [partition for partition, at in before.items() if at < target]
        if not behind:
            return applied
        for partition in behind:
            applied += catch_up(
                projection,
                partition,
                projection=instances[partition],
                owner="resize",
                stop_at=target,
            )
        still = still + 1 if _positions(name) == before else 0
        if still >= STILL_ROUNDS:
            stuck = ", ".join(f"{name}[{p}]" for p, at in _positions(name).items() if at < target)
            raise ResizeRefused(
                f"{stuck} cannot reach the others' place in the log (failing or waiting); "
                "see manage.py projection_status, then try again."
            )


def _positions(name: str) -> dict[int, LogPosition]:
    return {
        row.partition: checkpoint_position(row)
        for row in Checkpoint.objects.filter(projector=name).order_by("partition")
    }


def _merge(name: str, count: int) -> None:
    half = count // 2
    now = timezone.now()
    upper = {
        row.partition - half: row.events_applied
        for row in Checkpoint.objects.filter(projector=name, partition__gte=half)
    }
    for row in Checkpoint.objects.filter(projector=name, partition__lt=half):
        Checkpoint.objects.filter(pk=row.pk).update(
            partitions=half,
            events_applied=row.events_applied + upper.get(row.partition, 0),
            updated_at=now,
        )
    Checkpoint.objects.filter(projector=name, partition__gte=half).delete()
    # Both halves applied every seller event up to here: their copies match.
    SellerFacts.objects.filter(projector=name, partition__gte=half).delete()
    _move_to(name, half)


def _wait_at_most(seconds: int) -> None:
    """Bound each lock wait of the transaction (PostgreSQL; SQLite's
    writers wait for its busy timeout)."""
    connection = connections[READ_DB]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{seconds}s"])


def _commit_durably() -> None:
    """The aligning batches turned off the fsync wait for the transaction
    (``lock_checkpoint``); a resize is not one to lose."""
    connection = connections[READ_DB]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('synchronous_commit', 'on', true)")


__all__ = ["MAX_PARTITIONS", "ResizeRefused", "Step", "resize"]
