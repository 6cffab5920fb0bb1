"""The seller projector: one ``SellerReadModel`` row per seller.

Not partitioned: sellers are few. It keeps its own product facts (seller,
active flag) to attribute reviews to sellers.
"""

from collections.abc import Sequence
from decimal import Decimal

from django.utils import timezone

from eventstore.eventlog import StoredEvent
from projections.engine import Projection, handles
from projections.models import ProductFacts, SellerReadModel
from projections.projectors import entries
from projections.upserts import upsert

SELLER_FIELDS = [
    field.name for field in SellerReadModel._meta.concrete_fields if not field.primary_key
]


class SellerProjection(Projection):
    name = "sellers"

    def __init__(self, partition: int, partitions: int) -> None:
        super().__init__(partition, partitions)
        # Kept from batch to batch when the engine is handed this instance again.
        self.products: dict[int, ProductFacts] = {}
        self.sellers: dict[int, SellerReadModel] = {}
        self.dirty_products: set[int] = set()
        self.dirty_sellers: set[int] = set()

    def forget(self) -> None:
        self.products.clear()
        self.sellers.clear()

    def prepare(self, events: Sequence[StoredEvent]) -> None:
        self.dirty_products = set()
        self.dirty_sellers = set()
        product_ids = {e.payload["product_id"] for e in events if "product_id" in e.payload}
        for facts in ProductFacts.objects.filter(
            projector=self.name,
            partition=self.partition,
            product_id__any=product_ids - self.products.keys(),
        ):
            self.products[facts.product_id] = facts
        seller_ids = {e.payload["seller_id"] for e in events if "seller_id" in e.payload}
        seller_ids |= {self.products[pk].seller_id for pk in product_ids if pk in self.products}
        for seller in SellerReadModel.objects.filter(
            seller_id__any=seller_ids - self.sellers.keys()
        ):
            self.sellers[seller.seller_id] = seller

    @handles("SellerRegistered")
    def seller_registered(self, event: StoredEvent) -> None:
        payload = event.payload
        seller = SellerReadModel(
            seller_id=payload["seller_id"],
            name=payload["name"],
            reputation=Decimal(payload["reputation"]),
        )
        self.sellers[seller.seller_id] = seller
        self._touch(seller, event)

    @handles("SellerReputationChanged")
    def seller_reputation_changed(self, event: StoredEvent) -> None:
        seller = self.sellers[event.payload["seller_id"]]
        seller.reputation = Decimal(event.payload["reputation"])
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
