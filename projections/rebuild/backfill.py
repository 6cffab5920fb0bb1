"""Fill a rebuild's shadow from a snapshot of the write model, set-based, on PostgreSQL.

The read database may be another database (or server) than the write one, so
no statement reads both: the rows are computed by SQL on the write side,
streamed out with ``COPY ... TO STDOUT`` and into the shadow with
``COPY ... FROM STDIN`` through this process, block by block, in COPY's text
or binary format, never as Python objects. What only depends on the read models
(sellers' aggregates, the projectors' facts, the related-product index) is
then derived inside the shadow with ``INSERT ... SELECT``.

The rows equal ``projections.expected`` (the verifier) field by field; the JSON
lists are shaped as ``projections.projectors.entries`` shapes them: money as
strings with two decimals, averages rounded half up, moments in UTC with
microseconds, newest first. A change to either shape is a change here too;
``tests/projections/test_rebuild.py`` compares the two field by field.
"""

import select
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.utils import timezone

from projections.models import (
    ProductFacts,
    ProductReadModel,
    RelatedLink,
    ReviewReadModel,
    SellerFacts,
    SellerReadModel,
    StockStatus,
)
from projections.projectors import entries
from projections.registry import PROJECTIONS

Progress = Callable[[str, int, int], None]

PRODUCT_TABLE = ProductReadModel._meta.db_table
SELLER_TABLE = SellerReadModel._meta.db_table
REVIEW_TABLE = ReviewReadModel._meta.db_table
LINK_TABLE = RelatedLink._meta.db_table
PRODUCT_FACTS_TABLE = ProductFacts._meta.db_table
SELLER_FACTS_TABLE = SellerFacts._meta.db_table

_MOMENT = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""

PRODUCT_COLUMNS = (
    "product_id, partition, name, slug, description, is_active, price, currency, "
    "stock_quantity, stock_status, rating_sum, review_count, avg_rating, rating_histogram, "
    "seller_id, seller_name, seller_reputation, related_products, price_history, "
    "recent_reviews, last_position, updated_at"
)
# JSON built as json, not jsonb: the text goes out to be parsed by the read
# server anyway, and the write server spends 15% less CPU on the query.
PRODUCTS_QUERY = f"""
WITH ratings AS (
    SELECT product_id,
           count(*) FILTER (WHERE rating = 1) AS one, count(*) FILTER (WHERE rating = 2) AS two,
           count(*) FILTER (WHERE rating = 3) AS three, count(*) FILTER (WHERE rating = 4) AS four,
           count(*) FILTER (WHERE rating = 5) AS five,
           count(*) AS review_count, sum(rating) AS rating_sum
    FROM reviews_review WHERE NOT is_hidden GROUP BY product_id
), related AS (
    SELECT rec.product_id,
           json_agg(json_build_object(
               'id', other.id, 'name', other.name, 'price', other.price::text,
               'avg_rating', round(theirs.rating_sum::numeric / theirs.review_count, 2)::text)
               ORDER BY rec.rank) AS products
    FROM catalog_recommendation rec
    JOIN catalog_product other ON other.id = rec.related_id
    LEFT JOIN ratings theirs ON theirs.product_id = other.id
    GROUP BY rec.product_id
)
SELECT p.id, p.id %% %(partitions)s, p.name, p.slug, p.description, p.is_active, p.price,
       %(currency)s, p.stock_quantity,
       CASE WHEN p.stock_quantity <= 0 THEN %(out_of_stock)s
            WHEN p.stock_quantity <= %(low_stock)s THEN %(low_stock_status)s
            ELSE %(in_stock)s END,
       coalesce(r.rating_sum, 0), coalesce(r.review_count, 0),
       round(r.rating_sum::numeric / r.review_count, 2),
       json_build_array(coalesce(r.one, 0), coalesce(r.two, 0), coalesce(r.three, 0),
                         coalesce(r.four, 0), coalesce(r.five, 0)),
       s.id, s.name, s.reputation,
       coalesce(related.products, '[]'::json),
       coalesce(prices.history, '[]'::json),
       coalesce(recent.reviews, '[]'::json),
       %(last_position)s, %(updated_at)s
FROM catalog_product p
JOIN catalog_seller s ON s.id = p.seller_id
LEFT JOIN ratings r ON r.product_id = p.id
LEFT JOIN related ON related.product_id = p.id
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object(
               'id', h.id, 'price', h.price::text, 'changed_at', {_MOMENT.format("h.changed_at")})
               ORDER BY h.changed_at DESC, h.id DESC) AS history
    FROM (SELECT id, price, changed_at FROM catalog_pricechange
          WHERE product_id = p.id ORDER BY changed_at DESC, id DESC
          LIMIT {entries.PRICE_HISTORY}) h
) prices ON true
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object(
               'id', v.id, 'author', u.username, 'rating', v.rating, 'title', v.title,
               'body', v.body, 'created_at', {_MOMENT.format("v.created_at")},
               'edited_at', {_MOMENT.format("v.edited_at")})
               ORDER BY v.created_at DESC, v.id DESC) AS reviews
    FROM (SELECT id, author_id, rating, title, body, created_at, edited_at FROM reviews_review
          WHERE product_id = p.id AND NOT is_hidden
          ORDER BY created_at DESC, id DESC LIMIT {entries.RECENT_REVIEWS}) v
    JOIN auth_user u ON u.id = v.author_id
) recent ON true
"""  # noqa: S608 (constant SQL; values are parameters)

SELLERS_QUERY = """
SELECT id, name, reputation, 0, 0, 0, NULL, %(last_position)s, %(updated_at)s FROM catalog_seller
"""
SELLER_COLUMNS = (
    "seller_id, name, reputation, product_count, rating_sum, review_count, avg_rating, "
    "last_position, updated_at"
)
SELLER_AGGREGATES = f"""
UPDATE {SELLER_TABLE} seller
SET product_count = mine.active, rating_sum = mine.rating_sum,
    review_count = mine.review_count,
    avg_rating = round(mine.rating_sum::numeric / nullif(mine.review_count, 0), 2)
FROM (SELECT seller_id, count(*) FILTER (WHERE is_active) AS active,
             sum(rating_sum) AS rating_sum, sum(review_count) AS review_count
      FROM {PRODUCT_TABLE} GROUP BY seller_id) mine
WHERE mine.seller_id = seller.seller_id
"""  # noqa: S608 (constant SQL)

# In binary format, so each value is cast to its read-model column's type.
REVIEWS_QUERY = """
SELECT id::bigint, product_id::bigint, created_at::timestamptz
FROM reviews_review WHERE NOT is_hidden
"""
REVIEWS_ESTIMATE = (
    "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'reviews_review'::regclass"
)
REVIEW_COLUMNS = "review_id, product_id, created_at"

_FACTS = "seller_id, name, price, is_active, rating_sum, review_count"
PRODUCT_FACTS = f"""
INSERT INTO {PRODUCT_FACTS_TABLE} (projector, partition, product_id, {_FACTS})
SELECT %s, mod(product_id, %s)::int, product_id, {_FACTS}
FROM {PRODUCT_TABLE}
ORDER BY 2, product_id
"""  # noqa: S608 (constant SQL; values are parameters)
SELLER_FACTS = f"""
INSERT INTO {SELLER_FACTS_TABLE} (projector, partition, seller_id, name, reputation)
SELECT %s, partition, seller_id, name, reputation
FROM generate_series(0, %s - 1) AS partition CROSS JOIN {SELLER_TABLE}
"""  # noqa: S608 (constant SQL; values are parameters)
RELATED_LINKS = f"""
INSERT INTO {LINK_TABLE} (source_id, target_id, partition)
SELECT product_id, (entry ->> 'id')::bigint, partition
FROM {PRODUCT_TABLE} CROSS JOIN LATERAL jsonb_array_elements(related_products) AS entry
"""  # noqa: S608 (constant SQL)

_INDEXES = """
SELECT index.relname, pg_get_indexdef(index.oid), constraint_.conname,
       pg_get_constraintdef(constraint_.oid)
FROM pg_index
JOIN pg_class index ON index.oid = pg_index.indexrelid
JOIN pg_class tab ON tab.oid = pg_index.indrelid
LEFT JOIN pg_constraint constraint_ ON constraint_.conindid = index.oid
     AND constraint_.conrelid = tab.oid
WHERE tab.relnamespace = current_schema()::regnamespace AND tab.relname = %s
"""
_BLOCK_ROWS = 1024


def prepare_snapshot(write: Any) -> None:
    """Tune the snapshot's transaction on ``write`` for a few big queries: room
    for the hash joins, and no JIT, whose compiling (a second and more on the
    products' query, priced high for its lateral joins) costs more than it saves."""
    write.execute("SET LOCAL work_mem = '64MB'")
    write.execute("SET LOCAL jit = off")


def fill_products(write: Any, shadow: Any, *, last_position: int, progress: Progress) -> int:
    """Fill the shadow's products, sellers, facts and related links from the
    write model; returns the rows written.

    ``write`` is a psycopg cursor in the snapshot's REPEATABLE READ
    transaction; ``shadow`` a psycopg cursor on the read database whose
    search path is the shadow schema, in a transaction of its own, on tables
    that are still empty.
    """
    tables = (PRODUCT_TABLE, LINK_TABLE, PRODUCT_FACTS_TABLE)
    with _without_indexes(shadow, tables):
        stamp = {"last_position": last_position, "updated_at": timezone.now()}
        products = _stream(
            write,
            shadow,
            PRODUCTS_QUERY,
            {
                **stamp,
                "partitions": PROJECTIONS["products"].partition_count(),
                "currency": settings.READ_MODEL_CURRENCY,
                "low_stock": settings.LOW_STOCK_THRESHOLD,
                "out_of_stock": StockStatus.OUT_OF_STOCK.value,
                "low_stock_status": StockStatus.LOW_STOCK.value,
                "in_stock": StockStatus.IN_STOCK.value,
            },
            f"{PRODUCT_TABLE} ({PRODUCT_COLUMNS})",
        )
        progress("products", products, products)
        sellers = _stream(write, shadow, SELLERS_QUERY, stamp, f"{SELLER_TABLE} ({SELLER_COLUMNS})")
        shadow.execute(SELLER_AGGREGATES)
        _derive_facts(shadow)
    for table in (*tables, SELLER_TABLE, SELLER_FACTS_TABLE):
        shadow.execute(f"ANALYZE {table}")
    return products + sellers


def fill_reviews(write: Any, shadow: Any, *, progress: Progress) -> int:
    """Copy every counted review's id, product and moment into the shadow's
    review store; returns how many.

    The same preconditions as ``fill_products``; the two may run at once, on
    connections of their own, in transactions that share one snapshot.
    """
    write.execute(REVIEWS_ESTIMATE)
    estimate = int(write.fetchone()[0])
    shadow.execute("SET LOCAL maintenance_work_mem = '256MB'")
    with _without_indexes(shadow, [REVIEW_TABLE]):
        reviews = _stream(
            write,
            shadow,
            REVIEWS_QUERY,
            None,
            f"{REVIEW_TABLE} ({REVIEW_COLUMNS})",
            lambda done: progress("reviews", done, max(estimate, done)),
            binary=True,
        )
    progress("reviews", reviews, reviews)
    shadow.execute(f"ANALYZE {REVIEW_TABLE}")
    return reviews


def _derive_facts(shadow: Any) -> None:
    products = PROJECTIONS["products"]
    # Each product's facts at the partition that owns it; the sellers' own at 0.
    shadow.execute(PRODUCT_FACTS, [products.name, products.partition_count()])
    shadow.execute(PRODUCT_FACTS, [PROJECTIONS["sellers"].name, 1])
    shadow.execute(SELLER_FACTS, [products.name, products.partition_count()])
    shadow.execute(RELATED_LINKS)


def _stream(
    write: Any,
    shadow: Any,
    query: str,
    params: dict[str, Any] | None,
    target: str,
    report: Callable[[int], None] | None = None,
    *,
    binary: bool = False,
) -> int:
    """COPY the rows of ``query`` on the write side into ``target`` in the shadow;
    returns how many."""
    options = " (FORMAT binary)" if binary else ""
    with (
        write.copy(f"COPY ({query}) TO STDOUT{options}", params),
        shadow.copy(f"COPY {target} FROM STDIN{options}") as sink,
    ):
        for block, sent in _blocks(write.connection.pgconn):
            sink.write(block)
            if report is not None:
                report(sent)
    return int(shadow.rowcount)


def _blocks(pgconn: Any) -> Iterator[tuple[bytes, int]]:
    """The data of the COPY TO running on ``pgconn``, in blocks of up to
    ``_BLOCK_ROWS`` rows, with the number of messages sent so far (the rows,
    and the binary format's trailer).

    Through libpq directly (psycopg's documented ``pgconn``): psycopg's own
    ``Copy.read()`` costs about a microsecond of Python a row, more than the
    servers spend on it. The inner loop does nothing else a row but take it:
    the counting and the checks a row in it cost as much again. A block goes
    out when it is full or when libpq has no more data buffered, before
    waiting for the server. On return the COPY's result has been read.
    """
    import psycopg
    from psycopg import pq

    get = pgconn.get_copy_data
    pending: list[bytes] = []
    take = pending.append
    sent = 0
    while True:
        for _ in range(_BLOCK_ROWS):
            size_or_status, data = get(1)
            if size_or_status <= 0:
                break
            take(data)
        else:
            size_or_status = 1  # a full block; more to come
        if pending:
            sent += len(pending)
            yield b"".join(pending), sent
            pending.clear()
        if size_or_status == 0:  # nothing buffered: wait for the server
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        elif size_or_status == -1:  # the end of the data
            break
        elif size_or_status < 0:
            raise psycopg.OperationalError(pgconn.get_error_message())
    result = None
    while True:
        while pgconn.is_busy():
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        following = pgconn.get_result()
        if following is None:
            break
        result = following
    if result is None or result.status != pq.ExecStatus.COMMAND_OK:
        message = result.get_error_message() if result is not None else b"no result"
        raise psycopg.DatabaseError(message.decode(errors="replace"))


@contextmanager
def _without_indexes(shadow: Any, tables: Sequence[str]) -> Iterator[None]:
    """Drop the tables' indexes and constraints that have one, and build them
    again after the block: one sort per index instead of a B-tree insert per row."""
    rebuild: list[str] = []
    for table in tables:
        shadow.execute(_INDEXES, [table])
        for index, index_definition, constraint, constraint_definition in shadow.fetchall():
            if constraint is None:
                shadow.execute(f'DROP INDEX "{index}"')
                rebuild.append(index_definition)
            else:
                shadow.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint}"')
                rebuild.append(
                    f'ALTER TABLE {table} ADD CONSTRAINT "{constraint}" {constraint_definition}'
                )
    yield
    for statement in rebuild:
        shadow.execute(statement)
