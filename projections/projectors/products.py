"""The product projector: one ``ProductReadModel`` row per product.

Partitioned by product. Its handlers, one per event, change the partition's
rows and facts in memory; ``ProductStore`` loads them for a batch and writes
them back. Aggregates move by the event's own delta; nothing recomputes over
a product's reviews.
"""

from decimal import Decimal

from django.conf import settings
from django.db.models import Q

from eventstore.eventlog import StoredEvent
from projections.engine import handles
from projections.models import ProductFacts, ProductReadModel, ReviewReadModel, SellerFacts
from projections.projectors import entries
from projections.projectors.product_store import (
    ProductStore,
    edited_entry,
    partition_of,
    review_entry,
)
from projections.upserts import new_row

__all__ = ["WHOLE_PARTITION", "ProductProjection", "WholeProductProjection", "partition_of"]


class ProductProjection(ProductStore):
    name = "products"
    partitioned = True

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
            stock_status=entries.stock_status(payload["stock_quantity"]),
            rating_histogram=entries.empty_histogram(),
            seller_id=seller.seller_id,
            seller_name=seller.name,
            seller_reputation=seller.reputation,
            price_history=[
                entries.price_entry(
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
            entry = entries.price_entry(
                change_id=payload["price_change_id"],
                price=payload["price"],
                changed_at=payload["changed_at"],
            )
            row.price_history = entries.with_price(row.price_history, entry)
            self._touch(row, event)
        self._fan_out(product_id, event)

    @handles("StockChanged")
    def stock_changed(self, event: StoredEvent) -> None:
        product_id = event.payload["product_id"]
        row = self.rows.get(product_id) if self.owns(product_id) else None
        if row is not None:
            row.stock_quantity = event.payload["quantity"]
            row.stock_status = entries.stock_status(row.stock_quantity)
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
            entry = review_entry(payload)
            row.recent_reviews = entries.with_review(row.recent_reviews, entry)
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
                edited_entry(entry, payload) if entry["id"] == payload["review_id"] else entry
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


WHOLE_PARTITION = 32767


class WholeProductProjection(ProductProjection):
    """Every partition at once, for replaying the log into empty tables.

    A rebuild replays the log once with it instead of once per partition; its
    facts are then copied to each partition (``projections.rebuild``).
    """

    def owns(self, product_id: int) -> bool:
        return True

    @property
    def shares_rows(self) -> bool:
        return False  # it is every partition: no other writes beside it

    def _owned_rows(self) -> Q:
        return Q()
