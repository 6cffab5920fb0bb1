"""Read-model rows made directly, so query tests control every field.

The rows are shaped by the projectors' own helpers (``projections.projectors.entries``), so they
look like what the projector writes.
"""

import datetime as dt
from decimal import Decimal
from typing import Any

import factory
from django.conf import settings
from django.utils import timezone

from projections.models import Checkpoint, ProductReadModel, SellerReadModel
from projections.projectors import entries

START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def price_history(*prices: str, days_apart: int = 7) -> list[dict[str, Any]]:
    """Entries for ``prices`` given oldest first, stored newest first."""
    history = [
        entries.price_entry(
            change_id=index + 1,
            price=price,
            changed_at=START + dt.timedelta(days=index * days_apart),
        )
        for index, price in enumerate(prices)
    ]
    return entries.newest_prices(history)


def review(
    review_id: int,
    *,
    author: str = "carol",
    rating: int = 5,
    title: str = "",
    body: str = "Great value.",
) -> dict[str, Any]:
    return entries.review_entry(
        review_id=review_id,
        author=author,
        rating=rating,
        title=title,
        body=body,
        created_at=START + dt.timedelta(hours=review_id),
        edited_at=None,
    )


class ProductRowFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProductReadModel
        database = "read"

    product_id = factory.Sequence(lambda n: 1000 + n)
    partition = factory.LazyAttribute(lambda row: row.product_id % settings.PROJECTION_PARTITIONS)
    name = factory.Sequence(lambda n: f"Product {n:04d}")
    slug = factory.LazyAttribute(lambda row: f"product-{row.product_id}")
    description = "A fine product."
    is_active = True
    price = Decimal("10.00")
    currency = "EUR"
    stock_quantity = 20
    stock_status = factory.LazyAttribute(lambda row: entries.stock_status(row.stock_quantity))
    rating_histogram = factory.LazyFunction(entries.empty_histogram)
    rating_sum = factory.LazyAttribute(
        lambda row: sum(stars * count for stars, count in enumerate(row.rating_histogram, 1))
    )
    review_count = factory.LazyAttribute(lambda row: sum(row.rating_histogram))
    avg_rating = factory.LazyAttribute(
        lambda row: entries.average(row.rating_sum, row.review_count)
    )
    seller_id = 1
    seller_name = "Acme Goods"
    seller_reputation = Decimal("4.50")
    related_products = factory.LazyFunction(list)
    price_history = factory.LazyAttribute(lambda row: price_history(str(row.price)))
    recent_reviews = factory.LazyFunction(list)
    last_position = factory.Sequence(lambda n: n + 1)
    updated_at = factory.LazyFunction(timezone.now)


class SellerRowFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SellerReadModel
        database = "read"

    seller_id = factory.Sequence(lambda n: 500 + n)
    name = factory.Sequence(lambda n: f"Seller {n}")
    reputation = Decimal("4.20")
    product_count = 3
    rating_sum = 40
    review_count = 10
    avg_rating = Decimal("4.00")
    last_position = factory.Sequence(lambda n: n + 1)
    updated_at = factory.LazyFunction(timezone.now)


def set_checkpoints(
    projector: str, transaction_id: int, position: int, *, partitions: int | None = None
) -> None:
    """Put ``partitions`` (all, by default) of ``projector`` at this position."""
    count = (
        partitions
        if partitions is not None
        else (settings.PROJECTION_PARTITIONS if projector == "products" else 1)
    )
    for partition in range(count):
        Checkpoint.objects.using("read").update_or_create(
            projector=projector,
            partition=partition,
            defaults={
                "transaction_id": transaction_id,
                "position": position,
                "partitions": settings.PROJECTION_PARTITIONS if projector == "products" else 1,
            },
        )
