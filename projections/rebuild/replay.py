"""Filling the shadow by replaying the log, and catching it up with the log."""

from typing import Any

from django.db import connections, transaction

from eventstore import eventlog
from eventstore.databases import READ_DB
from projections.engine import (
    Projection,
    ReadAhead,
    catch_up,
    ensure_checkpoints,
)
from projections.models import (
    Checkpoint,
    ProductFacts,
    SellerFacts,
)
from projections.projectors.products import WHOLE_PARTITION, WholeProductProjection
from projections.rebuild.shadow import (
    Progress,
    shadow_alias,
)
from projections.registry import PROJECTIONS


def catch_up_shadow(batch_size: int, progress: Progress | None = None) -> int:
    """Run every projector on the shadow up to the log's end as it is now.

    A fixed target: writers keep adding events, and the ones after it are
    the live projectors' to apply once the shadow is swapped in.
    """
    target = eventlog.head()
    applied = 0
    with shadow_alias():
        behind = _events_behind()
        while not _reached(target, Checkpoint.objects.all()):
            round_applied = 0
            for projection in PROJECTIONS.values():
                ensure_checkpoints(projection)
                for partition in range(projection.partition_count()):
                    round_applied += catch_up(projection, partition, batch_size=batch_size)
            applied += round_applied
            if progress is not None:
                progress("events", applied, max(behind, applied))
            if round_applied == 0:
                break  # a halted or busy partition: the live projectors carry on from it
    return applied


def _reached(target: eventlog.LogPosition, checkpoints: Any) -> bool:
    positions = list(checkpoints.values_list("transaction_id", "position"))
    return bool(positions) and all(
        eventlog.LogPosition(transaction_id, position) >= target
        for transaction_id, position in positions
    )


def replay_whole(batch_size: int, progress: Progress) -> int:
    """Replay the log once for all product partitions together, then give
    every partition the result: its rows are already in place, and its facts
    and checkpoint are copies of the whole pass's.

    Resumable: the whole pass has a checkpoint of its own until the split.
    """
    products = PROJECTIONS["products"]
    sellers = PROJECTIONS["sellers"]
    with shadow_alias():
        whole = Checkpoint.objects.filter(projector=products.name, partition=WHOLE_PARTITION)
        if not whole.exists():
            if Checkpoint.objects.filter(projector=products.name).exists():
                return 0  # split already: the run goes on catching up
            Checkpoint.objects.create(
                projector=products.name,
                partition=WHOLE_PARTITION,
                partitions=products.partition_count(),
            )
        ensure_checkpoints(sellers)
        # Kept from batch to batch: each batch loads only what the ones before
        # did not, instead of every row its events touch.
        whole_products = WholeProductProjection(WHOLE_PARTITION, products.partition_count())
        whole_products.keep_rows = True
        # Both projectors stand at the same place: they share each read, and
        # the next batch is read while this one is applied.
        reads = ReadAhead()
        try:
            applied = _replay_rounds(whole_products, sellers(0, 1), reads, batch_size, progress)
        finally:
            reads.close()
        _split_whole(products.name, products.partition_count())
    return applied


def _replay_rounds(
    whole_products: WholeProductProjection,
    all_sellers: Projection,
    reads: ReadAhead,
    batch_size: int,
    progress: Progress,
) -> int:
    """One batch of each projector per round, so the progress moves batch by
    batch; it counts the log's events once (both projectors apply them all)."""
    sellers = PROJECTIONS["sellers"]
    target = eventlog.head()
    whole = Checkpoint.objects.filter(
        projector=WholeProductProjection.name, partition=WHOLE_PARTITION
    )
    start = whole.get()
    behind = eventlog.count_after(eventlog.LogPosition(start.transaction_id, start.position))
    applied = 0
    while True:
        step = catch_up(
            WholeProductProjection,
            WHOLE_PARTITION,
            batch_size=batch_size,
            max_batches=1,
            projection=whole_products,
            reads=reads,
        )
        seller_step = catch_up(
            sellers, 0, batch_size=batch_size, max_batches=1, projection=all_sellers, reads=reads
        )
        applied += step
        progress("events", applied, max(behind, applied))
        if step + seller_step == 0 or _reached(target, whole):
            return applied


_FACT_COLUMNS = "product_id, seller_id, name, price, is_active, rating_sum, review_count"


_COPY_PRODUCT_FACTS = f"""
    INSERT INTO projections_productfacts (projector, partition, {_FACT_COLUMNS})
    SELECT projector, %s, {_FACT_COLUMNS} FROM projections_productfacts
    WHERE projector = %s AND partition = %s AND mod(product_id, %s) = %s
"""  # noqa: S608 (constant SQL; values are parameters)


_COPY_SELLER_FACTS = """
    INSERT INTO projections_sellerfacts (projector, partition, seller_id, name, reputation)
    SELECT projector, %s, seller_id, name, reputation FROM projections_sellerfacts
    WHERE projector = %s AND partition = %s
"""


def _split_whole(name: str, partitions: int) -> None:
    whole = {"projector": name, "partition": WHOLE_PARTITION}
    with transaction.atomic(using=READ_DB), connections[READ_DB].cursor() as cursor:
        for partition in range(partitions):
            # Each partition keeps the facts of its own products only.
            cursor.execute(
                _COPY_PRODUCT_FACTS,
                [partition, name, WHOLE_PARTITION, partitions, partition],
            )
            cursor.execute(_COPY_SELLER_FACTS, [partition, name, WHOLE_PARTITION])
        ProductFacts.objects.filter(**whole).delete()
        SellerFacts.objects.filter(**whole).delete()
        checkpoint = Checkpoint.objects.get(**whole)
        Checkpoint.objects.bulk_create(
            Checkpoint(
                projector=name,
                partition=partition,
                partitions=partitions,
                transaction_id=checkpoint.transaction_id,
                position=checkpoint.position,
                events_applied=checkpoint.events_applied,
            )
            for partition in range(partitions)
        )
        checkpoint.delete()


def _events_behind() -> int:
    first = Checkpoint.objects.order_by("transaction_id", "position").first()
    start = eventlog.LogPosition(first.transaction_id, first.position) if first else eventlog.START
    return eventlog.count_after(start)
