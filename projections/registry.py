"""The projectors, by name, and what asks all of them at once."""

from collections.abc import Iterable

from projections.engine import Projection, catch_up, ensure_checkpoints
from projections.models import Checkpoint
from projections.projectors.products import ProductProjection
from projections.projectors.sellers import SellerProjection

PROJECTIONS: dict[str, type[Projection]] = {
    projection.name: projection for projection in (ProductProjection, SellerProjection)
}


def project_all(
    projections: Iterable[type[Projection]] | None = None,
    *,
    batch_size: int | None = None,
    owner: str | None = None,
) -> int:
    """Bring every partition of every projector up to the readable end of the
    log, in passes while a partition waits for another one to go on first
    (and the pass moved a checkpoint: one may pass other partitions' events
    without applying any)."""
    chosen = list(projections or PROJECTIONS.values())
    total = 0
    waiting: list[bool] = []
    while True:
        before = checkpoint_positions(chosen)
        waiting.clear()
        applied = 0
        for projection_class in chosen:
            ensure_checkpoints(projection_class)
            for partition in range(projection_class.partition_count()):
                applied += catch_up(
                    projection_class,
                    partition,
                    batch_size=batch_size,
                    owner=owner,
                    on_waiting=lambda: waiting.append(True),
                )
        total += applied
        if not waiting or checkpoint_positions(chosen) == before:
            return total


def checkpoint_positions(
    projections: Iterable[type[Projection]],
) -> dict[tuple[str, int], tuple[int, int]]:
    """Where every partition of ``projections`` stands."""
    return {
        (projector, partition): (txid, position)
        for projector, partition, txid, position in Checkpoint.objects.filter(
            projector__in=[projection.name for projection in projections]
        ).values_list("projector", "partition", "transaction_id", "position")
    }
