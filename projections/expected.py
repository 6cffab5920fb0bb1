"""The read models as they should be, computed set-based from the write model.

This is the projection side's check on itself (``verify_projections``, the
tests): it reads the normalized tables on ``default`` with a handful of
grouped queries and shapes rows exactly as the projectors do.
"""

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Q, Sum, Window
from django.db.models.functions import RowNumber

from catalog.models import PriceChange, Product, Recommendation, Seller
from projections.engine import layout
from projections.models import ProductReadModel, SellerReadModel
from projections.projectors import entries
from reviews.models import Review

PRODUCT_FIELDS = [
    "partition",
    "name",
    "slug",
    "description",
    "is_active",
    "price",
    "currency",
    "stock_quantity",
    "stock_status",
    "rating_sum",
    "review_count",
    "avg_rating",
    "rating_histogram",
    "seller_id",
    "seller_name",
    "seller_reputation",
    "related_products",
    "price_history",
    "recent_reviews",
]
SELLER_FIELDS = ["name", "reputation", "product_count", "rating_sum", "review_count", "avg_rating"]


def _histograms(product_ids: Iterable[int] | None) -> dict[int, list[int]]:
    reviews = Review.objects.filter(is_hidden=False)
    if product_ids is not None:
        reviews = reviews.filter(product_id__in=product_ids)
    histograms: dict[int, list[int]] = defaultdict(entries.empty_histogram)
    for product_id, rating, count in (
        reviews.values("product_id", "rating")
        .annotate(n=Count("pk"))
        .values_list("product_id", "rating", "n")
    ):
        histograms[product_id][rating - 1] = count
    return histograms


def _ranked(queryset: Any, order: list[Any], limit: int) -> Any:
    ranked = queryset.annotate(
        rank=Window(RowNumber(), partition_by=[F("product_id")], order_by=order)
    )
    return ranked.filter(rank__lte=limit)


def _recent_reviews(product_ids: Iterable[int] | None) -> dict[int, list[dict[str, Any]]]:
    reviews = Review.objects.filter(is_hidden=False)
    if product_ids is not None:
        reviews = reviews.filter(product_id__in=product_ids)
    ranked = _ranked(
        reviews.select_related("author"),
        [F("created_at").desc(), F("id").desc()],
        entries.RECENT_REVIEWS,
    )
    recent: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for review in ranked:
        recent[review.product_id].append(
            entries.review_entry(
                review_id=review.pk,
                author=review.author.get_username(),
                rating=review.rating,
                title=review.title,
                body=review.body,
                created_at=review.created_at,
                edited_at=review.edited_at,
            )
        )
    return {pk: entries.newest_reviews(listed) for pk, listed in recent.items()}


def _price_histories(product_ids: Iterable[int] | None) -> dict[int, list[dict[str, Any]]]:
    changes = PriceChange.objects.all()
    if product_ids is not None:
        changes = changes.filter(product_id__in=product_ids)
    ranked = _ranked(
        changes, [F("changed_at").desc(), F("id").desc()], entries.PRICE_HISTORY
    ).values_list("product_id", "id", "price", "changed_at")
    histories: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for product_id, change_id, price, changed_at in ranked:
        histories[product_id].append(
            entries.price_entry(change_id=change_id, price=price, changed_at=changed_at)
        )
    return {pk: entries.newest_prices(listed) for pk, listed in histories.items()}


def _related(
    product_ids: Iterable[int] | None, histograms: dict[int, list[int]]
) -> dict[int, list[dict[str, Any]]]:
    links = Recommendation.objects.order_by("product_id", "rank")
    if product_ids is not None:
        links = links.filter(product_id__in=product_ids)
    rows = list(links.values_list("product_id", "related_id", "related__name", "related__price"))
    missing = {related_id for _, related_id, _, _ in rows} - set(histograms)
    histograms.update(_histograms(missing) if missing else {})
    related: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for product_id, related_id, name, price in rows:
        histogram = histograms.get(related_id, entries.empty_histogram())
        related[product_id].append(
            entries.related_entry(
                product_id=related_id,
                name=name,
                price=price,
                rating_sum=sum((stars + 1) * n for stars, n in enumerate(histogram)),
                review_count=sum(histogram),
            )
        )
    return related


def expected_products(product_ids: Iterable[int] | None = None) -> dict[int, dict[str, Any]]:
    """Every product's read-model fields, keyed by product id."""
    ids = list(product_ids) if product_ids is not None else None
    products = Product.objects.select_related("seller").order_by("pk")
    if ids is not None:
        products = products.filter(pk__in=ids)
    histograms = _histograms(ids)
    recent = _recent_reviews(ids)
    prices = _price_histories(ids)
    related = _related(ids, dict(histograms))
    partitions = layout.partition_count("products", partitioned=True)
    expected = {}
    for product in products:
        histogram = histograms.get(product.pk, entries.empty_histogram())
        rating_sum = sum((stars + 1) * n for stars, n in enumerate(histogram))
        review_count = sum(histogram)
        expected[product.pk] = {
            "partition": product.pk % partitions,
            "name": product.name,
            "slug": product.slug,
            "description": product.description,
            "is_active": product.is_active,
            "price": product.price,
            "currency": settings.READ_MODEL_CURRENCY,
            "stock_quantity": product.stock_quantity,
            "stock_status": entries.stock_status(product.stock_quantity),
            "rating_sum": rating_sum,
            "review_count": review_count,
            "avg_rating": entries.average(rating_sum, review_count),
            "rating_histogram": histogram,
            "seller_id": product.seller_id,
            "seller_name": product.seller.name,
            "seller_reputation": product.seller.reputation,
            "related_products": related.get(product.pk, []),
            "price_history": prices.get(product.pk, []),
            "recent_reviews": recent.get(product.pk, []),
        }
    return expected


def expected_sellers() -> dict[int, dict[str, Any]]:
    visible = Q(products__reviews__is_hidden=False)
    sellers = Seller.objects.annotate(
        active_products=Count("products", filter=Q(products__is_active=True), distinct=True),
    )
    ratings = {
        row["pk"]: row
        for row in Seller.objects.values("pk").annotate(
            rating_sum=Sum("products__reviews__rating", filter=visible),
            review_count=Count("products__reviews", filter=visible),
        )
    }
    expected = {}
    for seller in sellers:
        rating_sum = ratings[seller.pk]["rating_sum"] or 0
        review_count = ratings[seller.pk]["review_count"]
        expected[seller.pk] = {
            "name": seller.name,
            "reputation": seller.reputation,
            "product_count": seller.active_products,
            "rating_sum": rating_sum,
            "review_count": review_count,
            "avg_rating": entries.average(rating_sum, review_count),
        }
    return expected


def actual_products(product_ids: Iterable[int] | None = None) -> dict[int, dict[str, Any]]:
    rows = ProductReadModel.objects.order_by("pk")
    if product_ids is not None:
        rows = rows.filter(pk__in=list(product_ids))
    return {row["product_id"]: row for row in rows.values("product_id", *PRODUCT_FIELDS)}


def actual_sellers() -> dict[int, dict[str, Any]]:
    rows = SellerReadModel.objects.order_by("pk").values("seller_id", *SELLER_FIELDS)
    return {row["seller_id"]: row for row in rows}


def drift(
    expected: dict[int, dict[str, Any]], actual: dict[int, dict[str, Any]], fields: list[str]
) -> dict[int, list[str]]:
    """The fields that differ, per row id; a missing or extra row is ``["<row>"]``."""
    found: dict[int, list[str]] = {}
    for pk in sorted(set(expected) | set(actual)):
        if pk not in expected or pk not in actual:
            found[pk] = ["<row>"]
            continue
        wrong = [field for field in fields if expected[pk][field] != actual[pk].get(field)]
        if wrong:
            found[pk] = wrong
    return found
