"""Rebuild the read side beside the live one, catch up, and swap it in.

The new tables live in a shadow: a schema of their own on PostgreSQL
(``projections_rebuild``, same table and index names), a file of its own on
SQLite. While a rebuild runs, the ``read`` alias of the rebuilding process
points at the shadow, so the projectors' own code fills it; readers and the
live projectors keep using the live tables.

1. Fill the shadow: by default from one snapshot of the write model (a
   REPEATABLE READ transaction that also records the snapshot: the events of
   every transaction visible in it are already in the rows), set-based: on
   PostgreSQL by COPY from SQL on the write database (``projections.rebuild.backfill``),
   on SQLite with bulk inserts of the rows ``projections.expected`` computes;
   with ``from_events`` by replaying the whole log through the handlers in
   large batches.
2. Catch up: run the projectors on the shadow from its checkpoints.
3. Swap, under a short lock: on PostgreSQL the live tables are locked, the
   shadow catches up with the last events, and the two sets of tables trade
   schemas in one transaction; on SQLite the live tables are replaced by the
   shadow's rows in one IMMEDIATE transaction, which readers in WAL mode do
   not wait for.

A run killed while filling from a snapshot starts over; killed while
replaying or catching up, it carries on from the shadow's checkpoints. One
rebuild runs at a time (``lock.rebuild_lock``); the parked events' history stays
across the swap (``swap.keep_parked_history``).
"""

from collections.abc import Callable

from django.utils import timezone

from projections.engine.layout import pinned
from projections.models import Checkpoint, ProductReadModel, RebuildRun, SellerReadModel
from projections.rebuild.lock import RebuildRunning, lock_holder, rebuild_lock
from projections.rebuild.replay import catch_up_shadow, replay_whole
from projections.rebuild.shadow import (
    SWAPPED_MODELS,
    Progress,
    analyze_read_side,
    analyze_shadow,
    create_shadow,
    drop_shadow,
    shadow_alias,
    shadow_exists,
)
from projections.rebuild.snapshot import backfill_from_snapshot
from projections.rebuild.swap import swap
from projections.registry import PROJECTIONS

# Events per batch (and transaction). A replaying batch writes every row its
# events touched, once: with the whole log ahead, larger batches write each
# product's row fewer times. On the large bench data (2.6M events), back to
# back: 200,000 replayed in 94-107 s, 300,000 in 95 s, 400,000 in 83-86 s
# with the process at 1.7 GB at most, 800,000 in 105 s at 3.2 GB.
REPLAY_BATCH_SIZE = 400_000
CATCH_UP_BATCH_SIZE = 20_000

__all__ = [
    "SWAPPED_MODELS",
    "RebuildRunning",
    "analyze_read_side",
    "backfill_from_snapshot",
    "create_shadow",
    "drop_shadow",
    "lock_holder",
    "rebuild",
    "rebuild_lock",
    "shadow_alias",
    "shadow_exists",
    "swap",
]


def rebuild(
    *,
    from_events: bool,
    batch_size: int | None,
    progress: Progress,
    log: Callable[[str], None],
) -> RebuildRun:
    """Rebuild every read model without downtime; see the module docstring.

    ``batch_size`` is the events of one batch, each its own transaction; by
    default ``REPLAY_BATCH_SIZE`` while replaying and ``CATCH_UP_BATCH_SIZE``
    while catching up. Raises ``RebuildRunning``, having touched nothing,
    while another rebuild runs.
    """
    with rebuild_lock():
        # The shadow is built with the live layout, kept for the whole run:
        # a resize waits for the rebuild lock.
        live = {name: projection.partition_count() for name, projection in PROJECTIONS.items()}
        with pinned(live):
            return _rebuild(
                from_events=from_events, batch_size=batch_size, progress=progress, log=log
            )


def _shadow_layout_matches() -> bool:
    """Whether the shadow left by an interrupted run has the live layout (a
    resize may have run since it was killed; then it starts over)."""
    with shadow_alias():
        counts = dict(
            Checkpoint.objects.order_by().values_list("projector", "partitions").distinct()
        )
    return all(
        counts.get(name, count) == count
        for name, projection in PROJECTIONS.items()
        for count in [projection.partition_count()]
    )


def _rebuild(
    *,
    from_events: bool,
    batch_size: int | None,
    progress: Progress,
    log: Callable[[str], None],
) -> RebuildRun:
    run = RebuildRun.objects.filter(finished_at__isnull=True).order_by("-pk").first()
    resumable = {RebuildRun.Phase.TAIL, RebuildRun.Phase.REPLAY}
    if run is not None and run.phase in resumable and shadow_exists() and _shadow_layout_matches():
        log(f"Resuming rebuild #{run.pk} from its shadow's checkpoints ({run.phase}).")
    else:
        if run is not None:
            run.phase = RebuildRun.Phase.FAILED
            run.message = "Interrupted; started over."
            run.finished_at = timezone.now()
            run.save()
        mode = "from-events" if from_events else "snapshot"
        run = RebuildRun.objects.create(mode=mode, phase=RebuildRun.Phase.BACKFILL)
        create_shadow()
        if from_events:
            _set_phase(run, RebuildRun.Phase.REPLAY)
        else:
            run.rows = backfill_from_snapshot(progress)
            _set_phase(run, RebuildRun.Phase.TAIL)
    if run.phase == RebuildRun.Phase.REPLAY:
        run.events += replay_whole(batch_size or REPLAY_BATCH_SIZE, progress)
        analyze_shadow()
        _set_phase(run, RebuildRun.Phase.TAIL)
    catch_up_size = batch_size or CATCH_UP_BATCH_SIZE
    run.events += catch_up_shadow(catch_up_size, progress)
    run.save(update_fields=["events"])
    waited = swap(catch_up_size)
    run.rows = run.rows or ProductReadModel.objects.count() + SellerReadModel.objects.count()
    run.message = f"Swapped in; readers waited at most {waited * 1000:.0f} ms."
    run.finished_at = timezone.now()
    _set_phase(run, RebuildRun.Phase.SWAPPED)
    return run


def _set_phase(run: RebuildRun, phase: str) -> None:
    run.phase = phase
    run.updated_at = timezone.now()
    run.save()
