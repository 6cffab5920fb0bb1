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

from projections.engine.batches import (
    BatchResult,
    Outcome,
    catch_up,
    default_owner,
    run_batch,
)
from projections.engine.checkpoints import (
    CHECKPOINTS_CHANNEL,
    checkpoint_payload,
    ensure_checkpoints,
    hold_partition,
    notify_checkpoints_changed,
)
from projections.engine.failures import is_infrastructure_error, retry_parked, skip_parked
from projections.engine.projection import Projection, handles
from projections.engine.reads import ReadAhead, SharedReads

__all__ = [
    "CHECKPOINTS_CHANNEL",
    "BatchResult",
    "Outcome",
    "Projection",
    "ReadAhead",
    "SharedReads",
    "catch_up",
    "checkpoint_payload",
    "default_owner",
    "ensure_checkpoints",
    "handles",
    "hold_partition",
    "is_infrastructure_error",
    "notify_checkpoints_changed",
    "retry_parked",
    "run_batch",
    "skip_parked",
]
