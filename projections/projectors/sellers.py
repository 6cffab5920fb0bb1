"""The seller projector: one ``SellerReadModel`` row per seller.

Partitioned by product, as the product projector is: partition ``p`` of
``P`` applies the events of the products whose id modulo ``P`` is ``p``
(their reviews and active flags move their seller's counts) and keeps those
products' facts (seller, active flag). A seller's row therefore sums the
work of every partition, so each batch that touches it:

- takes the seller's lock first (an advisory transaction lock per seller on
  PostgreSQL, in seller order, so two partitions never wait on each other
  in a circle; SQLite's IMMEDIATE transaction holds the whole database),
- then reads the row as the last committed batch left it, moves it by its
  own events' deltas and writes it back before the lock goes with the
  commit.

The seller's own events (registered, reputation changed) carry no product:
every partition reads them, and the first to get there applies each one.
The row remembers the log position of the last one applied
(``details_position``; a seller's events are written one at a time, under
its row lock, so their positions rise in log order), and the others find it
applied and leave it.
With one partition none of this costs anything: the rows stay in memory
from batch to batch as before.
"""

import zlib
from collections.abc import Iterable, Sequence
from decimal import Decimal

from django.db import connections
from django.utils import timezone

from eventstore.databases import READ_DB
from eventstore.eventlog import PARTITION_KEY, KeyedSlice, StoredEvent
from projections.engine import Projection, handles
from projections.models import ProductFacts, SellerReadModel
from projections.projectors import entries
from projections.upserts import upsert

SELLER_FIELDS = [
    field.name for field in SellerReadModel._meta.concrete_fields if not field.primary_key
]
# The advisory locks of sellers' rows: (this, the seller id's low 31 bits).
# Two sellers that share a lock only wait for each other now and then.
SELLER_ROW_LOCK = zlib.crc32(b"storefront-seller-rows") - 2**31
_LOCK_SELLERS_SQL = "SELECT count(pg_advisory_xact_lock(%s, key)) FROM unnest(%s::integer[]) AS key"


def lock_sellers(seller_ids: Iterable[int]) -> None:
    """Take each seller's row lock for this transaction on ``read``, in one
    order for every caller (PostgreSQL; a no-op on SQLite)."""
    connection = connections[READ_DB]
    if connection.vendor != "postgresql":
        return
    keys = sorted({seller_id & 0x7FFFFFFF for seller_id in seller_ids})
    if keys:
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_SELLERS_SQL, [SELLER_ROW_LOCK, keys])


class SellerProjection(Projection):
    name = "sellers"
    partitioned = True

    def __init__(self, partition: int, partitions: int) -> None:
        super().__init__(partition, partitions)
        # Kept from batch to batch when the engine is handed this instance
        # again: the facts of its own products, and, with one partition, the
        # sellers' rows too (with more, other partitions write them).
        self.products: dict[int, ProductFacts] = {}
        self.sellers: dict[int, SellerReadModel] = {}
        self.dirty_products: set[int] = set()
        self.dirty_sellers: set[int] = set()

    def forget(self) -> None:
        self.products.clear()
        self.sellers.clear()

    def owns(self, product_id: int) -> bool:
        return product_id % self.partitions == self.partition

    @property
    def shares_rows(self) -> bool:
        """Whether other partitions write the sellers' rows beside this one."""
        return self.partitions > 1

    def log_slice(self) -> KeyedSlice | None:
        if not self.shares_rows:
            return None
        return KeyedSlice(PARTITION_KEY, self.partitions, self.partition)

    def apply(self, event: StoredEvent) -> None:
        product_id = event.payload.get(PARTITION_KEY)
        if type(product_id) is not int or self.owns(product_id):
            super().apply(event)

    def prepare(self, events: Sequence[StoredEvent]) -> None:
        self.dirty_products = set()
        self.dirty_sellers = set()
        product_ids = {
            e.payload[PARTITION_KEY]
            for e in events
            if type(e.payload.get(PARTITION_KEY)) is int and self.owns(e.payload[PARTITION_KEY])
        }
        for facts in ProductFacts.objects.filter(
            projector=self.name,
            partition=self.partition,
            product_id__any=product_ids - self.products.keys(),
        ):
            self.products[facts.product_id] = facts
        seller_ids = {e.payload["seller_id"] for e in events if "seller_id" in e.payload}
        seller_ids |= {self.products[pk].seller_id for pk in product_ids if pk in self.products}
        if self.shares_rows:
            # As the last batch of any partition committed them, under their locks.
            self.sellers.clear()
            lock_sellers(seller_ids)
        for seller in SellerReadModel.objects.filter(
            seller_id__any=seller_ids - self.sellers.keys()
        ):
            self.sellers[seller.seller_id] = seller

    @handles("SellerRegistered")
    def seller_registered(self, event: StoredEvent) -> None:
        payload = event.payload
        if payload["seller_id"] in self.sellers:
            return  # another partition applied it first
        seller = SellerReadModel(
            seller_id=payload["seller_id"],
            name=payload["name"],
            reputation=Decimal(payload["reputation"]),
            details_position=event.position,
        )
        self.sellers[seller.seller_id] = seller
        self._touch(seller, event)

    @handles("SellerReputationChanged")
    def seller_reputation_changed(self, event: StoredEvent) -> None:
        seller = self.sellers[event.payload["seller_id"]]
        if seller.details_position >= event.position:
            return  # another partition applied it first
        seller.reputation = Decimal(event.payload["reputation"])
        seller.details_position = event.position
        self._touch(seller, event)

    @handles("ProductCreated")
    def product_created(self, event: StoredEvent) -> None:
        payload = event.payload
        facts = ProductFacts(
            projector=self.name,
            partition=self.partition,
            product_id=payload["product_id"],
            seller_id=payload["seller_id"],
            name=payload["name"],
            price=Decimal(payload["price"]),
            is_active=payload["is_active"],
        )
        self.products[facts.product_id] = facts
        self.dirty_products.add(facts.product_id)
        if facts.is_active:
            seller = self.sellers[facts.seller_id]
            seller.product_count += 1
            self._touch(seller, event)

    @handles("ProductDetailsChanged")
    def product_details_changed(self, event: StoredEvent) -> None:
        facts = self.products[event.payload["product_id"]]
        is_active = event.payload["is_active"]
        if facts.is_active == is_active:
            return
        facts.is_active = is_active
        self.dirty_products.add(facts.product_id)
        seller = self.sellers[facts.seller_id]
        seller.product_count += 1 if is_active else -1
        self._touch(seller, event)

    @handles("ReviewAdded")
    def review_added(self, event: StoredEvent) -> None:
        self._move_rating(event, add=event.payload["rating"])

    @handles("ReviewEdited")
    def review_edited(self, event: StoredEvent) -> None:
        payload = event.payload
        self._move_rating(event, add=payload["rating"], remove=payload["previous_rating"])

    @handles("ReviewRemoved")
    def review_removed(self, event: StoredEvent) -> None:
        if event.payload.get("counted", True):
            self._move_rating(event, remove=event.payload["rating"])

    def _move_rating(self, event: StoredEvent, *, add: int = 0, remove: int = 0) -> None:
        facts = self.products[event.payload["product_id"]]
        seller = self.sellers[facts.seller_id]
        seller.rating_sum += add - remove
        seller.review_count += (1 if add else 0) - (1 if remove else 0)
        seller.avg_rating = entries.average(seller.rating_sum, seller.review_count)
        self._touch(seller, event)

    def _touch(self, seller: SellerReadModel, event: StoredEvent) -> None:
        seller.last_position = max(seller.last_position or 0, event.position)
        self.dirty_sellers.add(seller.seller_id)

    def flush(self) -> None:
        upsert(
            ProductFacts,
            [self.products[pk] for pk in sorted(self.dirty_products)],
            conflict=["projector", "partition", "product_id"],
            update=["is_active"],
        )
        now = timezone.now()
        sellers = [self.sellers[pk] for pk in sorted(self.dirty_sellers)]
        for seller in sellers:
            seller.updated_at = now
        upsert(SellerReadModel, sellers, conflict=["seller_id"], update=SELLER_FIELDS)


class WholeSellerProjection(SellerProjection):
    """Every partition at once, for replaying the log into empty tables
    (``projections.rebuild``), as ``WholeProductProjection`` is."""

    def owns(self, product_id: int) -> bool:
        return True

    @property
    def shares_rows(self) -> bool:
        return False  # it is every partition: no other writes beside it
