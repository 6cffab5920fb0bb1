"""The projectors, by name, and what asks all of them at once."""

from collections.abc import Iterable

from projections.engine import Projection, catch_up, ensure_checkpoints
from projections.projectors.products import ProductProjection
from projections.projectors.sellers import SellerProjection

PROJECTIONS: dict[str, type[Projection]] = {
    projection.name: projection for projection in (ProductProjection, SellerProjection)
}


def partition_count(name: str) -> int:
    """How many partitions the projector ``name`` has now."""
    return PROJECTIONS[name].partition_count()


def project_all(
    projections: Iterable[type[Projection]] | None = None,
    *,
    batch_size: int | None = None,
    owner: str | None = None,
) -> int:
    """Bring every partition of every projector up to the readable end of the log."""
    total = 0
    for projection_class in projections or PROJECTIONS.values():
        ensure_checkpoints(projection_class)
        for partition in range(projection_class.partition_count()):
            total += catch_up(projection_class, partition, batch_size=batch_size, owner=owner)
    return total
