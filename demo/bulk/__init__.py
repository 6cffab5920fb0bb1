"""Seed a large demo shop fast: write-model rows and their events straight into the tables.

The services write one command at a time, which is right for a shop and far
too slow for millions of demo reviews. This writes the same rows and exactly
the events those commands would have recorded: each event is built with the
command's own ``DomainEvent`` class, so its type, version, stream and payload
(Decimals as strings, datetimes in ISO format) cannot differ.

Events go in kind by kind, in dependency order: sellers, products (with their
first price), recommendations, price changes, reviews, products taken off
sale. Within a kind they follow the time they happened, so every product's own
stream reads as it would have. Everything is one transaction on ``default``:
a failure leaves nothing behind, and readers of the log see all of it at once
(on PostgreSQL every event carries that transaction's id and goes in position
order behind it).

PostgreSQL gets ``COPY``, and a table that the load at least doubles loses
its secondary indexes and unique and foreign-key constraints for the load and
gets them back at the end, inside the same transaction: one sort per index
and one join per foreign key instead of a lookup per row. Other databases get
batched ``INSERT``s. Row ids come from each table's own sequence, reserved as
one block per table under a lock that keeps other writers out until commit,
so the events can name them.
"""

import dataclasses
import random
from datetime import datetime

from django.db import connections
from django.utils import timezone

from catalog.models import Product
from demo import sketches as demo
from demo.bulk.load import Loader
from demo.bulk.plan import Planner
from demo.bulk.tables import Progress, Tables
from eventstore.databases import WRITE_DB
from eventstore.recording import command_transaction

__all__ = ["BulkSummary", "Progress", "bulk_seed"]


@dataclasses.dataclass(frozen=True)
class BulkSummary:
    sellers: int
    products: int
    reviews: int
    reviewers: int
    price_changes: int
    events: int
    hot_product: Product | None
    hot_reviews: int


def bulk_seed(
    sizes: demo.Sizes, rng: random.Random, *, progress: Progress, now: datetime | None = None
) -> BulkSummary:
    """Write ``sizes`` worth of demo data and its events in one transaction."""
    tables = Tables.for_connection(connections[WRITE_DB], progress)
    with command_transaction():  # announced first: reserving ids writes
        plan = Planner(sizes, rng, tables, now or timezone.now()).plan()
        events = Loader(tables).load(plan)
    tables.analyze()
    return BulkSummary(
        sellers=len(plan.seller_ids),
        products=len(plan.products),
        reviews=len(plan.reviews),
        reviewers=plan.reviewers,
        price_changes=len(plan.changes),
        events=events,
        hot_product=Product.objects.get(pk=plan.hot.id) if plan.hot else None,
        hot_reviews=plan.hot_reviews,
    )
