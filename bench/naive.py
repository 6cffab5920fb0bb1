"""The reference's five-table query, corrected, and the indexes its first fix adds.

The reference (``shared/reference/cqrs-pattern.md``) writes the price history
as ``(SELECT json_agg(price) FROM price_history WHERE product_id = p.id ORDER
BY date DESC LIMIT 30)``: PostgreSQL refuses it (``date`` is neither grouped
nor aggregated), and were it accepted the ``LIMIT`` would cut the one
aggregated row, not the prices. The valid equivalent orders and limits inside
a subquery and aggregates in that order. Related ids are aggregated in their
rank order. Everything else is the reference's query on this app's tables.
It still computes less than the read-model row holds (no histogram, no
related names/prices/ratings, no recent reviews): the comparison favours it.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

FIVE_TABLE_QUERY = """
SELECT p.*,
  (SELECT AVG(rating) FROM reviews_review WHERE product_id = p.id) AS avg_rating,
  (SELECT COUNT(*) FROM reviews_review WHERE product_id = p.id) AS review_count,
  (SELECT reputation FROM catalog_seller WHERE id = p.seller_id) AS seller_reputation,
  (SELECT json_agg(related_id ORDER BY rank)
     FROM catalog_recommendation WHERE product_id = p.id) AS related,
  (SELECT json_agg(h.price ORDER BY h.changed_at DESC)
     FROM (SELECT price, changed_at FROM catalog_pricechange
           WHERE product_id = p.id ORDER BY changed_at DESC LIMIT 30) AS h) AS price_history
FROM catalog_product p WHERE p.id = %s
"""

READ_MODEL_QUERY = "SELECT * FROM projections_productreadmodel WHERE product_id = %s"

# The reference's "Attempt 1: more indexes" indexes reviews and recommendations
# by product. Django already creates those (foreign keys, and the composite and
# unique indexes that lead with product_id): the state "with" is the app's
# schema; "without" drops every index on these tables that leads with product_id.
FIRST_FIX_TABLES = ("reviews_review", "catalog_recommendation")


def _leading_product_id(
    cursor: Any, table: str
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(name, definition) of the unique constraints and of the plain indexes on
    ``table`` whose first column is product_id."""
    cursor.execute(
        """SELECT coalesce(c.conname, i.indexrelid::regclass::text),
                  coalesce(pg_get_constraintdef(c.oid), pg_get_indexdef(i.indexrelid)),
                  c.conname IS NOT NULL
           FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
           LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
           WHERE i.indrelid = %s::regclass AND a.attname = 'product_id'""",
        [table],
    )
    constraints: list[tuple[str, str]] = []
    indexes: list[tuple[str, str]] = []
    for name, definition, is_constraint in cursor.fetchall():
        (constraints if is_constraint else indexes).append((name, definition))
    return constraints, indexes


@contextmanager
def without_first_fix_indexes(connection: Any) -> Iterator[list[str]]:
    """Drop the indexes the reference's first fix would add; restore them after.

    ``connection`` is a psycopg connection in autocommit mode on the write
    database. Yields the statements that restore them.
    """
    restore: list[str] = []
    with connection.cursor() as cursor:
        for table in FIRST_FIX_TABLES:
            constraints, indexes = _leading_product_id(cursor, table)
            for name, definition in constraints:
                cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
                restore.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            for name, definition in indexes:
                cursor.execute(f"DROP INDEX {name}")
                restore.append(definition)
            cursor.execute(f"ANALYZE {table}")
    try:
        yield restore
    finally:
        with connection.cursor() as cursor:
            for statement in restore:
                cursor.execute(statement)
            for table in FIRST_FIX_TABLES:
                cursor.execute(f"ANALYZE {table}")
