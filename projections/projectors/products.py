"""The product projector: one ``ProductReadModel`` row per product.

Partitioned by product. Every partition reads every event: it keeps its own
facts about every product and seller (name, price, rating sums, reputation),
applies the events of the products it owns to their rows, and fans changes to
a product or seller out to the rows it owns that show them. Aggregates move
by the event's own delta; nothing recomputes over a product's reviews.
"""

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from projections.bulk import new_row, partial_row, update_columns, upsert
from projections.engine import Projection, handles
from projections.eventlog import START, LogPosition, StoredEvent, stream_events
from projections.models import (
    ProductFacts,
    ProductReadModel,
    RelatedLink,
    ReviewReadModel,
    SellerFacts,
)
from projections.projectors import shaping
from projections.upcasting import upcast

PRODUCT_EVENTS = {
    "ProductCreated",
    "ProductDetailsChanged",
    "PriceChanged",
    "StockChanged",
    "RecommendationsChanged",
    "ReviewAdded",
    "ReviewEdited",
    "ReviewRemoved",
}
SELLER_EVENTS = {"SellerRegistered", "SellerReputationChanged"}
ROW_FIELDS = [
    field.name for field in ProductReadModel._meta.concrete_fields if not field.primary_key
]
FACT_FIELDS = ["seller_id", "name", "price", "is_active", "rating_sum", "review_count"]
LISTING_FIELDS = ["product_id", "related_products", "last_position"]
LISTING_WRITES = ["related_products", "last_position", "updated_at"]


# At most this many rows and facts are kept from one batch to the next.
KEPT_ROWS = 20_000
KEPT_FACTS = 200_000


def partition_of(product_id: int, partitions: int) -> int:
    return product_id % partitions


class ProductProjection(Projection):
    name = "products"
    partitioned = True

    def __init__(self, partition: int, partitions: int) -> None:
        super().__init__(partition, partitions)
        # Kept from batch to batch when the engine is handed this instance
        # again (see ``Projection.forget``): facts, rows and shown entries
        # as the last committed batch left them.
        self.facts: dict[int, ProductFacts] = {}
        self.sellers: dict[int, SellerFacts] = {}
        self.rows: dict[int, ProductReadModel] = {}
        # What rows listing each product show of it (``_shown_as``).
        self.shown: dict[int, tuple[Any, ...]] = {}
        self.listing_only: set[int] = set()
        # Rows too, not just facts: for a replay, whose batches touch most
        # rows. A runner's small batches load their few rows in one query,
        # while thousands of rows kept would slow every full pass of Python's
        # garbage collector, between batches, by hundreds of milliseconds.
        self.keep_rows = False
        self._start_batch()

    def forget(self) -> None:
        self.facts.clear()
        self.sellers.clear()
        self.rows.clear()
        self.shown.clear()

    def _start_batch(self) -> None:
        self.added_reviews: dict[int, ReviewReadModel] = {}
        self.deleted_reviews: set[int] = set()
        self.through: LogPosition = START  # the batch's last event
        self.dirty_rows: set[int] = set()
        self.dirty_facts: set[int] = set()
        self.dirty_sellers: set[int] = set()
        self.relinked: set[int] = set()
        self.refill_recent: set[int] = set()
        self.fanned: dict[int, StoredEvent] = {}
        # Rows loaded only to show a fanned product: just their list is loaded
        # and written back, not the rest of the row, so they are not kept.
        for product_id in self.listing_only:
            self.rows.pop(product_id, None)
        self.listing_only = set()
        if not self.keep_rows or len(self.rows) > KEPT_ROWS:
            self.rows.clear()  # load them again as needed
        if len(self.facts) > KEPT_FACTS:
            self.facts.clear()
            self.shown.clear()

    def owns(self, product_id: int) -> bool:
        return partition_of(product_id, self.partitions) == self.partition

    # Loading ---------------------------------------------------------------

    def prepare(self, events: Sequence[StoredEvent]) -> None:
        product_ids: set[int] = set()
        seller_ids: set[int] = set()
        fanned_sellers: set[int] = set()
        for event in events:
            payload = event.payload
            if event.event_type in PRODUCT_EVENTS:
                product_ids.add(payload["product_id"])
                product_ids.update(payload.get("related_ids", ()))
            if event.event_type in SELLER_EVENTS or event.event_type == "ProductCreated":
                seller_ids.add(payload["seller_id"])
            if event.event_type == "SellerReputationChanged":
                fanned_sellers.add(payload["seller_id"])
        self._start_batch()
        if events:
            self.through = events[-1].log_position
        self._load_facts(product_ids - self.facts.keys(), seller_ids - self.sellers.keys())
        self._load_rows(product_ids, fanned_sellers)

    def _load_facts(self, product_ids: set[int], seller_ids: set[int]) -> None:
        scope = {"projector": self.name, "partition": self.partition}
        for fact in ProductFacts.objects.filter(**scope, product_id__any=product_ids):
            self.facts[fact.product_id] = fact
            self.shown[fact.product_id] = self._shown_as(fact.product_id)
        for seller in SellerFacts.objects.filter(**scope, seller_id__any=seller_ids):
            self.sellers[seller.seller_id] = seller

    def _owned_rows(self) -> Q:
        return Q(partition=self.partition)

    def _load_rows(self, product_ids: set[int], fanned_sellers: set[int]) -> None:
        owned = {pk for pk in product_ids if self.owns(pk) and pk not in self.rows}
        rows = ProductReadModel.objects.filter(product_id__any=owned)
        if fanned_sellers:
            rows = rows | ProductReadModel.objects.filter(
                self._owned_rows(), seller_id__any=fanned_sellers
            )
        elif not owned:
            return
        for row in rows:
            self.rows.setdefault(row.product_id, row)

    # Sellers ---------------------------------------------------------------

    @handles("SellerRegistered")
    def seller_registered(self, event: StoredEvent) -> None:
        payload = event.payload
        self.sellers[payload["seller_id"]] = SellerFacts(
            projector=self.name,
            partition=self.partition,
            seller_id=payload["seller_id"],
            name=payload["name"],
            reputation=Decimal(payload["reputation"]),
        )
        self.dirty_sellers.add(payload["seller_id"])

    @handles("SellerReputationChanged")
    def seller_reputation_changed(self, event: StoredEvent) -> None:
        seller_id = event.payload["seller_id"]
        reputation = Decimal(event.payload["reputation"])
        self.sellers[seller_id].reputation = reputation
        self.dirty_sellers.add(seller_id)
        for row in self.rows.values():
            if row.seller_id == seller_id:
                row.seller_reputation = reputation
                self._touch(row, event)

    # Products --------------------------------------------------------------

    @handles("ProductCreated")
    def product_created(self, event: StoredEvent) -> None:
        payload = event.payload
        product_id = payload["product_id"]
        self.facts[product_id] = ProductFacts(
            projector=self.name,
            partition=self.partition,
            product_id=product_id,
            seller_id=payload["seller_id"],
            name=payload["name"],
            price=Decimal(payload["price"]),
            is_active=payload["is_active"],
        )
        self.dirty_facts.add(product_id)
        self.shown[product_id] = self._shown_as(product_id)
        if not self.owns(product_id):
            return
        seller = self.sellers[payload["seller_id"]]
        self.rows[product_id] = ProductReadModel(
            product_id=product_id,
            partition=partition_of(product_id, self.partitions),
            name=payload["name"],
            slug=payload["slug"],
            description=payload["description"],
            is_active=payload["is_active"],
            price=Decimal(payload["price"]),
            currency=settings.READ_MODEL_CURRENCY,
            stock_quantity=payload["stock_quantity"],
            stock_status=shaping.stock_status(payload["stock_quantity"]),
            rating_histogram=shaping.empty_histogram(),
            seller_id=seller.seller_id,
            seller_name=seller.name,
            seller_reputation=seller.reputation,
            price_history=[
                shaping.price_entry(
                    change_id=payload["price_change_id"],
                    price=payload["price"],
                    changed_at=payload["created_at"],
                )
            ],
        )
        self._touch(self.rows[product_id], event)

    @handles("ProductDetailsChanged")
    def product_details_changed(self, event: StoredEvent) -> None:
        payload = event.payload
        product_id = payload["product_id"]
        facts = self.facts[product_id]
        facts.name = payload["name"]
        facts.is_active = payload["is_active"]
        self.dirty_facts.add(product_id)
        row = self.rows.get(product_id) if self.owns(product_id) else None
        if row is not None:
            row.name = payload["name"]
            row.slug = payload["slug"]
            row.description = payload["description"]
            row.is_active = payload["is_active"]
            self._touch(row, event)
        self._fan_out(product_id, event)

    @handles("PriceChanged")
    def price_changed(self, event: StoredEvent) -> None:
        payload = event.payload
        product_id = payload["product_id"]
        self.facts[product_id].price = Decimal(payload["price"])
        self.dirty_facts.add(product_id)
        row = self.rows.get(product_id) if self.owns(product_id) else None
        if row is not None:
            row.price = Decimal(payload["price"])
            entry = shaping.price_entry(
                change_id=payload["price_change_id"],
                price=payload["price"],
                changed_at=payload["changed_at"],
            )
            row.price_history = shaping.with_price(row.price_history, entry)
            self._touch(row, event)
        self._fan_out(product_id, event)

    @handles("StockChanged")
    def stock_changed(self, event: StoredEvent) -> None:
        product_id = event.payload["product_id"]
        row = self.rows.get(product_id) if self.owns(product_id) else None
        if row is not None:
            row.stock_quantity = event.payload["quantity"]
            row.stock_status = shaping.stock_status(row.stock_quantity)
            self._touch(row, event)

    @handles("RecommendationsChanged")
    def recommendations_changed(self, event: StoredEvent) -> None:
        product_id = event.payload["product_id"]
        row = self.rows.get(product_id) if self.owns(product_id) else None
        if row is None:
            return
        related_ids = event.payload["related_ids"]
        row.related_products = [self._related_entry(related_id) for related_id in related_ids]
        self.relinked.add(product_id)
        self._touch(row, event)

    # Reviews ---------------------------------------------------------------

    @handles("ReviewAdded")
    def review_added(self, event: StoredEvent) -> None:
        payload = event.payload
        product_id = payload["product_id"]
        self._move_rating(product_id, add=payload["rating"])
        row = self.rows.get(product_id) if self.owns(product_id) else None
        if row is not None:
            review_id = payload["review_id"]
            self.added_reviews[review_id] = new_row(
                ReviewReadModel,
                review_id=review_id,
                product_id=product_id,
                created_at=payload["created_at"],
            )
            entry = _review_entry(payload)
            row.recent_reviews = shaping.with_review(row.recent_reviews, entry)
            self._touch(row, event)
        self._fan_out(product_id, event)

    @handles("ReviewEdited")
    def review_edited(self, event: StoredEvent) -> None:
        payload = event.payload
        product_id = payload["product_id"]
        self._move_rating(product_id, add=payload["rating"], remove=payload["previous_rating"])
        row = self.rows.get(product_id) if self.owns(product_id) else None
        if row is not None:
            # Only the five shown keep their text here; any other's is read
            # from the log when it comes to be shown (``_refill_recent``).
            row.recent_reviews = [
                _edited_entry(entry, payload) if entry["id"] == payload["review_id"] else entry
                for entry in row.recent_reviews
            ]
            self._touch(row, event)
        self._fan_out(product_id, event)

    @handles("ReviewRemoved")
    def review_removed(self, event: StoredEvent) -> None:
        payload = event.payload
        product_id = payload["product_id"]
        if not payload.get("counted", True):
            return
        self._move_rating(product_id, remove=payload["rating"])
        row = self.rows.get(product_id) if self.owns(product_id) else None
        if row is not None:
            if self.added_reviews.pop(payload["review_id"], None) is None:
                self.deleted_reviews.add(payload["review_id"])
            if any(entry["id"] == payload["review_id"] for entry in row.recent_reviews):
                self.refill_recent.add(product_id)
            self._touch(row, event)
        self._fan_out(product_id, event)

    # Helpers ---------------------------------------------------------------

    def _move_rating(self, product_id: int, *, add: int = 0, remove: int = 0) -> None:
        facts = self.facts[product_id]
        counted = (1 if add else 0) - (1 if remove else 0)
        facts.rating_sum += add - remove
        facts.review_count += counted
        self.dirty_facts.add(product_id)
        row = self.rows.get(product_id) if self.owns(product_id) else None
        if row is None:
            return
        histogram = list(row.rating_histogram)
        if add:
            histogram[add - 1] += 1
        if remove:
            histogram[remove - 1] -= 1
        row.rating_histogram = histogram
        row.rating_sum = facts.rating_sum
        row.review_count = facts.review_count
        row.avg_rating = shaping.average(row.rating_sum, row.review_count)

    def _related_entry(self, product_id: int) -> dict[str, Any]:
        facts = self.facts[product_id]
        return shaping.related_entry(
            product_id=product_id,
            name=facts.name,
            price=facts.price,
            rating_sum=facts.rating_sum,
            review_count=facts.review_count,
        )

    def _shown_as(self, product_id: int) -> tuple[Any, ...]:
        """What a related entry of the product shows, as a key that costs
        less than the entry: equal keys make equal entries. The rating is
        in whole cents, rounded half up as ``shaping.average`` does."""
        facts = self.facts[product_id]
        total, count = facts.rating_sum, facts.review_count
        if count > 0 and total >= 0:
            return facts.name, facts.price, (200 * total + count) // (2 * count)
        return facts.name, facts.price, shaping.average(total, count)

    def _fan_out(self, product_id: int, event: StoredEvent) -> None:
        """Note that rows listing the product must show its new name, price or rating.

        When the change leaves what they show as it was (a review that moves
        a popular product's average by less than a cent) nothing is noted.
        The rows themselves are loaded and rewritten once per batch, in
        ``_flush_fan_out``.
        """
        shown = self._shown_as(product_id)
        if shown == self.shown.get(product_id):
            return
        self.shown[product_id] = shown
        self.fanned[product_id] = event

    def _flush_fan_out(self) -> None:
        """Show each fanned product's entry, as its last change left it, on
        every owned row listing it, as of the last event that changed it.

        Runs after ``_flush_links``, so the reverse index already says who lists
        what at the end of the batch. Deferring is exact: a row listing the
        product now either listed it when that event came (and is touched by it
        either way) or started listing it later, by an event that touched it
        later still. The entry is made from the facts at the end of the batch:
        it depends only on what ``_shown_as`` compares, which is as the last
        noted change left it (any later change to it would have been noted).
        """
        if not self.fanned:
            return
        entries = {product_id: self._related_entry(product_id) for product_id in self.fanned}
        listing = RelatedLink.objects.filter(self._owned_rows(), target_id__any=self.fanned)
        sources = set(listing.values_list("source_id", flat=True))
        missing = sources - set(self.rows)
        if missing:
            listing_rows = ProductReadModel.objects.filter(pk__any=missing)
            for product_id, related, last_position in listing_rows.values_list(*LISTING_FIELDS):
                self.rows[product_id] = partial_row(
                    ProductReadModel,
                    product_id=product_id,
                    related_products=related,
                    last_position=last_position,
                )
                self.listing_only.add(product_id)
        for source_id in sorted(sources):
            row = self.rows[source_id]
            shows = [item["id"] for item in row.related_products if item["id"] in self.fanned]
            if not shows:
                continue
            row.related_products = [
                entries[item["id"]] if item["id"] in self.fanned else item
                for item in row.related_products
            ]
            self._touch(row, max((self.fanned[pk] for pk in shows), key=_position))

    def _touch(self, row: ProductReadModel, event: StoredEvent) -> None:
        row.last_position = max(row.last_position or 0, event.position)
        self.dirty_rows.add(row.product_id)

    # Writing ---------------------------------------------------------------

    def flush(self) -> None:
        self._flush_links()
        self._flush_fan_out()
        self._flush_facts()
        self._flush_reviews()
        self._refill_recent()
        now = timezone.now()
        rows = [self.rows[pk] for pk in sorted(self.dirty_rows)]
        for row in rows:
            row.updated_at = now
        whole = [row for row in rows if row.product_id not in self.listing_only]
        listing = [row for row in rows if row.product_id in self.listing_only]
        upsert(ProductReadModel, whole, conflict=["product_id"], update=ROW_FIELDS)
        # A fanned-out row changes only its list: rewriting that column leaves the
        # row's large price history and reviews where they are (PostgreSQL keeps
        # an unchanged TOASTed value), and nothing else of it was loaded.
        update_columns(ProductReadModel, listing, key="product_id", fields=LISTING_WRITES)

    def _flush_facts(self) -> None:
        upsert(
            ProductFacts,
            [self.facts[pk] for pk in sorted(self.dirty_facts)],
            conflict=["projector", "partition", "product_id"],
            update=FACT_FIELDS,
        )
        upsert(
            SellerFacts,
            [self.sellers[pk] for pk in sorted(self.dirty_sellers)],
            conflict=["projector", "partition", "seller_id"],
            update=["name", "reputation"],
        )

    def _flush_reviews(self) -> None:
        if self.deleted_reviews:
            ReviewReadModel.objects.filter(review_id__any=self.deleted_reviews).delete()
        upsert(
            ReviewReadModel,
            [self.added_reviews[pk] for pk in sorted(self.added_reviews)],
            conflict=["review_id"],
            update=["product_id", "created_at"],
        )

    def _refill_recent(self) -> None:
        """Show the newest five again after one of them was removed: which
        they are comes from the review store, what they say from their own
        events up to this batch's last one."""
        for product_id in sorted(self.refill_recent):
            newest = list(
                ReviewReadModel.objects.filter(product_id=product_id)
                .order_by("-created_at", "-review_id")
                .values_list("review_id", flat=True)[: shaping.RECENT_REVIEWS]
            )
            entries: dict[int, dict[str, Any]] = {}
            for event in stream_events("review", newest, self.through):
                event = upcast(event)
                review_id = event.payload["review_id"]
                if event.event_type == "ReviewAdded":
                    entries[review_id] = _review_entry(event.payload)
                elif event.event_type == "ReviewEdited" and review_id in entries:
                    entries[review_id] = _edited_entry(entries[review_id], event.payload)
            self.rows[product_id].recent_reviews = [entries[pk] for pk in newest]

    def _flush_links(self) -> None:
        if not self.relinked:
            return
        RelatedLink.objects.filter(source_id__any=self.relinked).delete()
        RelatedLink.objects.bulk_create(
            RelatedLink(
                source_id=source_id,
                target_id=entry["id"],
                partition=partition_of(source_id, self.partitions),
            )
            for source_id in sorted(self.relinked)
            for entry in self.rows[source_id].related_products
        )


def _position(event: StoredEvent) -> int:
    return event.position


WHOLE_PARTITION = 32767


class WholeProductProjection(ProductProjection):
    """Every partition at once, for replaying the log into empty tables.

    A rebuild replays the log once with it instead of once per partition; its
    facts are then copied to each partition (``projections.rebuild``).
    """

    def owns(self, product_id: int) -> bool:
        return True

    def _owned_rows(self) -> Q:
        return Q()


def _review_entry(added: dict[str, Any]) -> dict[str, Any]:
    """A recent-list entry from a ``ReviewAdded`` payload."""
    return shaping.review_entry(
        review_id=added["review_id"],
        author=added["author_name"],
        rating=added["rating"],
        title=added["title"],
        body=added["body"],
        created_at=added["created_at"],
        edited_at=None,
    )


def _edited_entry(entry: dict[str, Any], edited: dict[str, Any]) -> dict[str, Any]:
    """``entry`` as a ``ReviewEdited`` payload leaves it."""
    return shaping.review_entry(
        review_id=entry["id"],
        author=entry["author"],
        rating=edited["rating"],
        title=entry["title"],
        body=edited["body"],
        created_at=entry["created_at"],
        edited_at=edited["edited_at"],
    )
