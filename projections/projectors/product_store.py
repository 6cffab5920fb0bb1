"""The product projector's state and storage: what a batch loads, keeps and
writes back, and how a change to a product reaches the rows that list it
(the fan-out). The handlers are ``projections.projectors.products``.

A partition reads only its slice of the log: its own products' events and
every seller's (``log_slice``). It keeps the facts of its own products (name,
price, rating sums: what a related entry shows) and of every seller, and
applies its products' events to their rows. Other partitions' rows meet it
in two places, both under row locks that order them:

- A product's shown entry changes (name, price, rating to the cent): its
  owner rewrites that entry on every row that lists the product, whichever
  partition owns the row, in the same transaction as its facts and
  checkpoint (``_flush_fan_out``).
- A row's related list is set (``RecommendationsChanged``): its partition
  reads the listed products' facts from their owners' rows (``hold``).

Every batch locks the facts it will read or write in one statement, in
product order, before anything else (``hold``), and the rows it will write in
another, in product order, before writing them (``_lock_rows``), as late as
it can: after its facts and reviews are written, since another partition
whose batch shows or lists one of its products waits for those rows until
this batch commits. So an owner
changing an entry and a partition listing the product take the entry's lock
one after the other: the later one sees the earlier one's commit (the new
facts, or the new link to rewrite), and no two batches wait for each other in
a circle. A row's related list and version written by another partition's
fan-out are read again under the row's lock before the row is written back.

A list can only name products that exist, but their owner may not have
applied their creation yet: the batch stops before such an event and waits
for the owner (``Outcome.WAITING``). When the owner has passed the event and
the product is still unknown, the handler fails as any other handler would.
"""

from collections.abc import Sequence
from typing import Any

from django.db.models import F, Q
from django.utils import timezone

from eventstore.databases import READ_DB
from eventstore.eventlog import (
    PARTITION_KEY,
    START,
    KeyedSlice,
    LogPosition,
    StoredEvent,
    stream_events,
)
from eventstore.upcasting import upcast
from projections.compiled import CompiledQuery
from projections.engine import Projection
from projections.models import (
    Checkpoint,
    ProductFacts,
    ProductReadModel,
    RelatedLink,
    ReviewReadModel,
    SellerFacts,
)
from projections.projectors import entries
from projections.upserts import partial_row, update_columns, upsert

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

# The reads of every batch, compiled once (``projections.compiled``).
_held_facts = CompiledQuery(
    READ_DB,
    lambda name, owners, partitions, ids: (
        ProductFacts.objects.filter(
            projector=name,
            partition__any=owners,  # for the index; each product's own below
            partition=F("product_id") % partitions,
            product_id__any=ids,
        )
        .order_by("product_id")
        .select_for_update()
    ),
)
_owners_checkpoints = CompiledQuery(
    READ_DB,
    lambda name, owners: Checkpoint.objects.filter(
        projector=name, partition__any=owners
    ).values_list("partition", "transaction_id", "position"),
)
_product_facts = CompiledQuery(
    READ_DB,
    lambda name, partition, ids: ProductFacts.objects.filter(
        projector=name, partition=partition, product_id__any=ids
    ),
)
_seller_facts = CompiledQuery(
    READ_DB,
    lambda name, partition, ids: SellerFacts.objects.filter(
        projector=name, partition=partition, seller_id__any=ids
    ),
)
_rows = CompiledQuery(READ_DB, lambda ids: ProductReadModel.objects.filter(product_id__any=ids))
_listing_sources = CompiledQuery(
    READ_DB,
    lambda ids: RelatedLink.objects.filter(target_id__any=ids).values_list("source_id", flat=True),
)
_listings = CompiledQuery(
    READ_DB,
    lambda ids: ProductReadModel.objects.filter(pk__any=ids).values_list(*LISTING_FIELDS),
)
_locked_listings = CompiledQuery(
    READ_DB,
    lambda ids: (
        ProductReadModel.objects.filter(pk__any=ids)
        .order_by("product_id")
        .select_for_update()
        .values_list(*LISTING_FIELDS)
    ),
)


# At most this many rows and facts are kept from one batch to the next.
KEPT_ROWS = 20_000
KEPT_FACTS = 200_000


def partition_of(product_id: int, partitions: int) -> int:
    return product_id % partitions


class ProductStore(Projection):
    """Loading, keeping and writing a partition's product rows and facts."""

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
        # Other partitions' products that this batch's lists show, as their
        # owners' facts say (read under lock by ``hold``).
        self.foreign: dict[int, ProductFacts] = {}
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

    @property
    def shares_rows(self) -> bool:
        """Whether other partitions write rows and read facts beside this one."""
        return self.partitions > 1

    def log_slice(self) -> KeyedSlice | None:
        if not self.shares_rows:
            return None
        return KeyedSlice(PARTITION_KEY, self.partitions, self.partition)

    def apply(self, event: StoredEvent) -> None:
        product_id = event.payload.get("product_id")
        if product_id is None or self.owns(product_id):
            super().apply(event)

    # Other partitions ------------------------------------------------------

    def hold(self, events: Sequence[StoredEvent]) -> int:
        """Lock, in product order, the facts of this batch's products and of
        the other partitions' products its lists will show, and load the
        latter; stop before a list that shows a product whose owner has not
        yet applied its creation (see the module docstring)."""
        self.foreign = {}
        if not self.shares_rows:
            return len(events)
        owned: set[int] = set()
        shown: dict[int, set[int]] = {}  # event index -> other partitions' products
        for index, event in enumerate(events):
            product_id = event.payload.get("product_id")
            if product_id is None or not self.owns(product_id):
                continue
            owned.add(product_id)
            if event.event_type == "RecommendationsChanged":
                related = set(event.payload["related_ids"])
                owned |= {pk for pk in related if self.owns(pk)}
                others = {pk for pk in related if not self.owns(pk)}
                if others:
                    shown[index] = others
        wanted = owned | set().union(*shown.values())
        if not wanted:
            return len(events)
        # Where the owners stand, read before their facts: an owner that had
        # passed an event then had the facts it made by then.
        passed = self._owners_positions(shown) if shown else {}
        owners = {partition_of(pk, self.partitions) for pk in wanted}
        for facts in _held_facts(
            name=self.name, owners=owners, partitions=self.partitions, ids=wanted
        ):
            if self.owns(facts.product_id):
                if facts.product_id not in self.facts:
                    self.facts[facts.product_id] = facts
                    self.shown[facts.product_id] = self._shown_as(facts.product_id)
            else:
                self.foreign[facts.product_id] = facts
        for index, others in sorted(shown.items()):
            position = events[index].log_position
            for product_id in others - self.foreign.keys():
                owner = partition_of(product_id, self.partitions)
                if passed.get(owner, START) < position:
                    return index  # its owner will make it: wait for it
        return len(events)

    def _owners_positions(self, shown: dict[int, set[int]]) -> dict[int, LogPosition]:
        owners = {partition_of(pk, self.partitions) for pks in shown.values() for pk in pks}
        return {
            partition: LogPosition(int(txid), position)
            for partition, txid, position in _owners_checkpoints(name=self.name, owners=owners)
        }

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
        owned = {pk for pk in product_ids if self.owns(pk)}
        self._load_facts(owned - self.facts.keys(), seller_ids - self.sellers.keys())
        self._load_rows(product_ids, fanned_sellers)

    def _load_facts(self, product_ids: set[int], seller_ids: set[int]) -> None:
        scope = {"name": self.name, "partition": self.partition}
        if product_ids:
            for fact in _product_facts(**scope, ids=product_ids):
                self.facts[fact.product_id] = fact
                self.shown[fact.product_id] = self._shown_as(fact.product_id)
        if seller_ids:
            for seller in _seller_facts(**scope, ids=seller_ids):
                self.sellers[seller.seller_id] = seller

    def _owned_rows(self) -> Q:
        return Q(partition=self.partition)

    def _load_rows(self, product_ids: set[int], fanned_sellers: set[int]) -> None:
        owned = {pk for pk in product_ids if self.owns(pk) and pk not in self.rows}
        if fanned_sellers:
            rows = list(
                ProductReadModel.objects.filter(product_id__any=owned)
                | ProductReadModel.objects.filter(self._owned_rows(), seller_id__any=fanned_sellers)
            )
        elif owned:
            rows = _rows(ids=owned)
        else:
            return
        for row in rows:
            self.rows.setdefault(row.product_id, row)

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
        row.avg_rating = entries.average(row.rating_sum, row.review_count)

    def _related_entry(self, product_id: int) -> dict[str, Any]:
        facts = self.facts.get(product_id) or self.foreign[product_id]
        return entries.related_entry(
            product_id=product_id,
            name=facts.name,
            price=facts.price,
            rating_sum=facts.rating_sum,
            review_count=facts.review_count,
        )

    def _shown_as(self, product_id: int) -> tuple[Any, ...]:
        """What a related entry of the product shows, as a key that costs
        less than the entry: equal keys make equal entries. The rating is
        in whole cents, rounded half up as ``entries.average`` does."""
        facts = self.facts[product_id]
        total, count = facts.rating_sum, facts.review_count
        if count > 0 and total >= 0:
            return facts.name, facts.price, (200 * total + count) // (2 * count)
        return facts.name, facts.price, entries.average(total, count)

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
        every row listing it, in any partition, as of the last event that
        changed it.

        Runs after ``_flush_links``, so the reverse index already says who lists
        what at the end of the batch. Deferring is exact: a row listing the
        product now either listed it when that event came (and is touched by it
        either way) or started listing it later, by an event that touched it
        later still. The entry is made from the facts at the end of the batch:
        it depends only on what ``_shown_as`` compares, which is as the last
        noted change left it (any later change to it would have been noted).
        """
        sources: set[int] = set()
        if self.fanned:
            sources = set(_listing_sources(ids=self.fanned))
        if self.shares_rows:
            self._lock_rows(sources)
        elif sources - set(self.rows):
            self._take_lists(_listings(ids=sources - set(self.rows)))
        if not self.fanned:
            return
        entries = {product_id: self._related_entry(product_id) for product_id in self.fanned}
        for source_id in sorted(sources):
            if source_id not in self.rows:
                continue  # gone meanwhile
            row = self.rows[source_id]
            shows = [item["id"] for item in row.related_products if item["id"] in self.fanned]
            if not shows:
                continue
            row.related_products = [
                entries[item["id"]] if item["id"] in self.fanned else item
                for item in row.related_products
            ]
            self._touch(row, max((self.fanned[pk] for pk in shows), key=_position))

    def _lock_rows(self, sources: set[int]) -> None:
        """Lock, in product order, every row this batch will write (its own
        changed rows and the rows listing its fanned products, in any
        partition), and read again what another partition's fan-out may have
        written to them since they were loaded: the related list (unless this
        batch set it) and the version."""
        wanted = self.dirty_rows | sources
        if not wanted:
            return
        self._take_lists(_locked_listings(ids=wanted))

    def _take_lists(self, listed: Any) -> None:
        """Take the stored related lists and versions of rows, as
        ``(product_id, related_products, last_position)``: a row loaded whole
        takes them unless this batch set its list; any other is loaded as
        just its list, to be rewritten by the fan-out."""
        for product_id, related, last_position in listed:
            row = self.rows.get(product_id)
            if row is None:
                self.rows[product_id] = partial_row(
                    ProductReadModel,
                    product_id=product_id,
                    related_products=related,
                    last_position=last_position,
                )
                self.listing_only.add(product_id)
                continue
            if product_id not in self.relinked:
                row.related_products = related
            row.last_position = max(row.last_position or 0, last_position)

    def _touch(self, row: ProductReadModel, event: StoredEvent) -> None:
        row.last_position = max(row.last_position or 0, event.position)
        self.dirty_rows.add(row.product_id)

    # Writing ---------------------------------------------------------------

    def flush(self) -> None:
        self._flush_links()
        self._flush_facts()
        self._flush_reviews()
        self._refill_recent()
        self._flush_fan_out()  # locks the rows: the others wait from here to commit
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
                .values_list("review_id", flat=True)[: entries.RECENT_REVIEWS]
            )
            shown: dict[int, dict[str, Any]] = {}
            for event in stream_events("review", newest, self.through):
                event = upcast(event)
                review_id = event.payload["review_id"]
                if event.event_type == "ReviewAdded":
                    shown[review_id] = review_entry(event.payload)
                elif event.event_type == "ReviewEdited" and review_id in shown:
                    shown[review_id] = edited_entry(shown[review_id], event.payload)
            self.rows[product_id].recent_reviews = [shown[pk] for pk in newest]

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


def review_entry(added: dict[str, Any]) -> dict[str, Any]:
    """A recent-list entry from a ``ReviewAdded`` payload."""
    return entries.review_entry(
        review_id=added["review_id"],
        author=added["author_name"],
        rating=added["rating"],
        title=added["title"],
        body=added["body"],
        created_at=added["created_at"],
        edited_at=None,
    )


def edited_entry(entry: dict[str, Any], edited: dict[str, Any]) -> dict[str, Any]:
    """``entry`` as a ``ReviewEdited`` payload leaves it."""
    return entries.review_entry(
        review_id=entry["id"],
        author=entry["author"],
        rating=edited["rating"],
        title=entry["title"],
        body=edited["body"],
        created_at=entry["created_at"],
        edited_at=edited["edited_at"],
    )
