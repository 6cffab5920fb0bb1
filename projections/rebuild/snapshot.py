"""Filling the shadow from one snapshot of the write model, set-based."""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from eventstore import eventlog
from eventstore.databases import READ_DB, WRITE_DB
from projections.models import (
    Checkpoint,
    ProductFacts,
    ProductReadModel,
    RelatedLink,
    ReviewReadModel,
    SellerFacts,
    SellerReadModel,
)
from projections.rebuild.shadow import (
    Progress,
    is_postgres,
    shadow_alias,
)
from projections.registry import PROJECTIONS
from projections.upserts import upsert


def backfill_from_snapshot(progress: Progress) -> int:
    """Fill the shadow from one consistent snapshot of the write model.

    Returns the number of read-model rows written.
    """
    from projections import expected as truth

    write = connections[WRITE_DB]
    with transaction.atomic(using=WRITE_DB):
        with write.cursor() as cursor:
            if write.vendor == "postgresql":
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute(
                    "SELECT pg_current_snapshot()::text, "
                    "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
                )
                snapshot, xmin = cursor.fetchone()
                start = eventlog.LogPosition(int(xmin), 0)
            else:
                snapshot = ""
                cursor.execute("SELECT coalesce(max(position), 0) FROM projections_event")
                start = eventlog.LogPosition(0, int(cursor.fetchone()[0]))
        last_position = start.position or _max_position()
        if write.vendor == "postgresql" and is_postgres():
            return _backfill_postgres(cursor_of(write), start, snapshot, last_position, progress)
        products = truth.expected_products()
        progress("products", 0, len(products))
        sellers = truth.expected_sellers()
        facts = _product_facts(products)
        with shadow_alias():
            _write_products(products, last_position)
            progress("products", len(products), len(products))
            _write_sellers(sellers, last_position)
            _write_facts(facts, products, sellers)
            _write_links(products)
            reviews = _write_reviews(progress)
            _write_checkpoints(start, snapshot)
    return len(products) + len(sellers) + reviews


def cursor_of(connection: Any) -> Any:
    """A psycopg cursor on ``connection`` (in its current transaction)."""
    import psycopg

    connection.ensure_connection()
    return psycopg.ClientCursor(connection.connection)


def _backfill_postgres(
    write: Any, start: eventlog.LogPosition, snapshot: str, last_position: int, progress: Progress
) -> int:
    """COPY the rows from the write model into the shadow, set-based; see
    ``projections.rebuild.backfill``. The reviews go on a thread of their own, in a
    transaction that imports the snapshot, while this one fills the rest.

    Precondition: the snapshot's REPEATABLE READ transaction is open on ``write``.
    """
    from projections.rebuild import backfill

    backfill.prepare_snapshot(write)
    write.execute("SELECT pg_export_snapshot()")
    exported = str(write.fetchone()[0])
    with ThreadPoolExecutor(1, thread_name_prefix="rebuild-reviews") as pool:
        reviews = pool.submit(_fill_reviews, exported, progress)
        try:
            with shadow_alias(), transaction.atomic(using=READ_DB):
                shadow = cursor_of(connections[READ_DB])
                rows = backfill.fill_products(
                    write, shadow, last_position=last_position, progress=progress
                )
                _write_checkpoints(start, snapshot)
        finally:
            written = reviews.result()
    return rows + written


def _fill_reviews(exported_snapshot: str, progress: Progress) -> int:
    """On a thread of its own, with connections of its own (closed at the end)."""
    from projections.rebuild import backfill

    try:
        with transaction.atomic(using=WRITE_DB):
            write = cursor_of(connections[WRITE_DB])
            write.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            write.execute("SET TRANSACTION SNAPSHOT %s", [exported_snapshot])
            backfill.prepare_snapshot(write)
            with shadow_alias(), transaction.atomic(using=READ_DB):
                shadow = cursor_of(connections[READ_DB])
                return backfill.fill_reviews(write, shadow, progress=progress)
    finally:
        connections.close_all()


def _max_position() -> int:
    with connections[WRITE_DB].cursor() as cursor:
        cursor.execute("SELECT coalesce(max(position), 0) FROM projections_event")
        return int(cursor.fetchone()[0])


def _product_facts(products: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {
        pk: {
            "seller_id": row["seller_id"],
            "name": row["name"],
            "price": row["price"],
            "is_active": row["is_active"],
            "rating_sum": row["rating_sum"],
            "review_count": row["review_count"],
        }
        for pk, row in products.items()
    }


def _write_products(products: dict[int, dict[str, Any]], last_position: int) -> None:
    now = timezone.now()
    rows = [
        ProductReadModel(product_id=pk, last_position=last_position, updated_at=now, **fields)
        for pk, fields in products.items()
    ]
    fields = [f.name for f in ProductReadModel._meta.concrete_fields if not f.primary_key]
    for start in range(0, len(rows), 5000):
        upsert(ProductReadModel, rows[start : start + 5000], conflict=["product_id"], update=fields)


def _write_sellers(sellers: dict[int, dict[str, Any]], last_position: int) -> None:
    now = timezone.now()
    rows = [
        SellerReadModel(seller_id=pk, last_position=last_position, updated_at=now, **fields)
        for pk, fields in sellers.items()
    ]
    fields = [f.name for f in SellerReadModel._meta.concrete_fields if not f.primary_key]
    upsert(SellerReadModel, rows, conflict=["seller_id"], update=fields)


def _write_facts(
    facts: dict[int, dict[str, Any]],
    products: dict[int, dict[str, Any]],
    sellers: dict[int, dict[str, Any]],
) -> None:
    partitions = PROJECTIONS["products"].partition_count()
    scopes = [("products", p) for p in range(partitions)]
    # Each product's facts at the partition that owns it, and the sellers' own.
    product_facts = [
        ProductFacts(projector=name, partition=partition, product_id=pk, **fields)
        for name, modulus in (("products", partitions), ("sellers", 1))
        for pk, fields in facts.items()
        for partition in [pk % modulus]
    ]
    for start in range(0, len(product_facts), 20000):
        upsert(
            ProductFacts,
            product_facts[start : start + 20000],
            conflict=["projector", "partition", "product_id"],
            update=["seller_id", "name", "price", "is_active", "rating_sum", "review_count"],
        )
    seller_facts = [
        SellerFacts(
            projector="products",
            partition=partition,
            seller_id=pk,
            name=row["name"],
            reputation=row["reputation"],
        )
        for _, partition in scopes
        for pk, row in sellers.items()
    ]
    upsert(
        SellerFacts,
        seller_facts,
        conflict=["projector", "partition", "seller_id"],
        update=["name", "reputation"],
    )


def _write_links(products: dict[int, dict[str, Any]]) -> None:
    partitions = PROJECTIONS["products"].partition_count()
    RelatedLink.objects.bulk_create(
        (
            RelatedLink(source_id=pk, target_id=entry["id"], partition=pk % partitions)
            for pk, row in products.items()
            for entry in row["related_products"]
        ),
        batch_size=5000,
    )


def _write_reviews(progress: Progress) -> int:
    """Index every counted review in the product projector's review store."""
    from reviews.models import Review

    total = Review.objects.filter(is_hidden=False).count()
    written = 0
    chunk: list[ReviewReadModel] = []
    visible = Review.objects.filter(is_hidden=False).order_by("pk")
    rows = visible.values_list("pk", "product_id", "created_at")
    for pk, product_id, created_at in rows.iterator(20000):
        chunk.append(ReviewReadModel(review_id=pk, product_id=product_id, created_at=created_at))
        if len(chunk) == 20000:
            written += _flush_reviews(chunk)
            progress("reviews", written, total)
    written += _flush_reviews(chunk)
    progress("reviews", written, total)
    return written


def _flush_reviews(chunk: list[ReviewReadModel]) -> int:
    upsert(ReviewReadModel, chunk, conflict=["review_id"], update=["product_id", "created_at"])
    count = len(chunk)
    chunk.clear()
    return count


def _write_checkpoints(start: eventlog.LogPosition, snapshot: str) -> None:
    Checkpoint.objects.bulk_create(
        Checkpoint(
            projector=name,
            partition=partition,
            transaction_id=start.transaction_id,
            position=start.position,
            skip_snapshot=snapshot,
            partitions=count,
        )
        for name, projection in PROJECTIONS.items()
        for count in [projection.partition_count()]
        for partition in range(count)
    )
