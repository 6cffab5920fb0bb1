"""``manage.py seed_demo --bulk``: the same shop as the services would make, and
exactly the events they would have recorded, written straight into the tables."""

import dataclasses
import io
import typing
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from catalog import events as catalog_events
from catalog.models import PriceChange, Product, Recommendation, Seller
from demo import bulk
from demo.bulk import tables as bulk_tables
from demo.management.commands import seed_demo
from eventstore.events import DomainEvent
from eventstore.models import Event
from projections.expected import (
    PRODUCT_FIELDS,
    SELLER_FIELDS,
    actual_products,
    actual_sellers,
    drift,
    expected_products,
    expected_sellers,
)
from reviews import events as review_events
from reviews.models import Review
from tests.support import nothing_written

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])

SMALL = {"sellers": 3, "products": 100, "reviews": 600, "hot_reviews": 150, "price_changes": 250}
EVENT_CLASSES = {
    cls.event_type: cls
    for module in (catalog_events, review_events)
    for cls in vars(module).values()
    if isinstance(cls, type) and issubclass(cls, DomainEvent) and "event_type" in vars(cls)
}
KIND_ORDER = [
    "SellerRegistered",
    "ProductCreated",
    "RecommendationsChanged",
    "PriceChanged",
    "ReviewAdded",
    "ProductDetailsChanged",
]


def seed(**options: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "seed_demo", **{"bulk": True, "seed": 11, **SMALL, **options}, stdout=out, stderr=err
    )
    return out.getvalue(), err.getvalue()


def events() -> list[Event]:
    return list(Event.objects.order_by("position"))


def rebuilt(event: Event) -> DomainEvent:
    """The event's own class, built from its stored payload read back by field type."""
    cls = EVENT_CLASSES[event.event_type]
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        value = event.payload[field.name]
        if hints[field.name] is Decimal:
            value = Decimal(value)
        elif hints[field.name] is datetime:
            value = datetime.fromisoformat(value)
        elif field.name == "related_ids":
            value = tuple(value)
        values[field.name] = value
    return cls(**values)


def test_a_bulk_seed_writes_the_shop_with_exactly_its_events():
    out, err = seed()

    assert Seller.objects.count() == 3
    assert Product.objects.count() == 100
    assert Review.objects.count() == 600 + 150
    assert PriceChange.objects.count() == 100 + 250
    assert Counter(e.event_type for e in events()) == {
        "SellerRegistered": 3,
        "ProductCreated": 100,
        "RecommendationsChanged": 100,
        "PriceChanged": 250,
        "ReviewAdded": 750,
        "ProductDetailsChanged": 2,
    }
    assert "750 reviews" in out
    assert "in bulk" in out
    assert "review events: 750 done" in err


def test_every_event_is_the_one_its_command_would_have_recorded():
    seed()

    for event in events():
        domain_event = rebuilt(event)
        assert event.payload == domain_event.payload(), event
        assert (event.stream_type, event.stream_id, event.version) == (
            domain_event.stream_type,
            domain_event.stream_id,
            domain_event.version,
        )


def test_events_agree_with_the_rows():
    seed()
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events():
        by_type.setdefault(event.event_type, []).append(event.payload)

    reviews = {review.pk: review for review in Review.objects.select_related("author")}
    for payload in by_type["ReviewAdded"]:
        review = reviews[payload["review_id"]]
        assert (review.product_id, review.author_id, review.rating, review.body) == (
            payload["product_id"],
            payload["author_id"],
            payload["rating"],
            payload["body"],
        )
        assert payload["author_name"] == review.author.username
        assert datetime.fromisoformat(payload["created_at"]) == review.created_at
    prices = {change.pk: change for change in PriceChange.objects.all()}
    for payload in by_type["ProductCreated"]:
        first = prices[payload["price_change_id"]]
        assert first.product_id == payload["product_id"]
        assert str(first.price) == payload["price"]
        assert first.changed_at == datetime.fromisoformat(payload["created_at"])
    current = {p["product_id"]: p["price"] for p in by_type["ProductCreated"]}
    for payload in by_type["PriceChanged"]:
        change = prices[payload["price_change_id"]]
        assert payload["previous_price"] == current[payload["product_id"]]
        assert (str(change.price), change.changed_at) == (
            payload["price"],
            datetime.fromisoformat(payload["changed_at"]),
        )
        current[payload["product_id"]] = payload["price"]
    for product in Product.objects.all():
        assert str(product.price) == current[product.pk]
    for payload in by_type["RecommendationsChanged"]:
        related = Recommendation.objects.filter(product_id=payload["product_id"]).order_by("rank")
        assert list(related.values_list("related_id", flat=True)) == payload["related_ids"]
    off_sale = {payload["product_id"] for payload in by_type["ProductDetailsChanged"]}
    assert off_sale == set(Product.objects.filter(is_active=False).values_list("pk", flat=True))


def test_events_go_kind_by_kind_and_in_time_order_within_a_kind():
    seed()
    logged = events()

    kinds = [event.event_type for event in logged]
    assert kinds == sorted(kinds, key=KIND_ORDER.index)
    for kind, moment in (("PriceChanged", "changed_at"), ("ReviewAdded", "created_at")):
        times = [e.payload[moment] for e in logged if e.event_type == kind]
        assert times == sorted(times)
    ids = [e.payload["review_id"] for e in logged if e.event_type == "ReviewAdded"]
    assert ids == sorted(ids)


@pytest.mark.postgres
def test_on_postgresql_the_whole_seed_is_one_transaction_read_in_position_order():
    seed()

    assert len({event.transaction_id for event in events()}) == 1


def test_projecting_a_bulk_seed_matches_the_truth():
    seed()

    call_command("run_projectors", "--once", stdout=io.StringIO())

    assert drift(expected_products(), actual_products(), PRODUCT_FIELDS) == {}
    assert drift(expected_sellers(), actual_sellers(), SELLER_FIELDS) == {}
    assert len(actual_products()) == 100


def test_the_data_looks_like_a_shop():
    seed()
    now = timezone.now()

    per_product = Counter(Recommendation.objects.values_list("product_id", flat=True))
    assert set(per_product) == set(Product.objects.values_list("pk", flat=True))
    assert all(3 <= count <= 6 for count in per_product.values())
    reviews_per_product = Counter(Review.objects.values_list("product_id", flat=True))
    assert reviews_per_product.most_common(1)[0][1] == 150  # the hot product, exactly
    assert len(reviews_per_product) > 30  # the rest spread, skewed by popularity
    ratings = Counter(Review.objects.values_list("rating", flat=True))
    assert set(ratings) == {1, 2, 3, 4, 5}
    assert ratings[5] > ratings[3]  # J-shaped
    assert all(len(body) >= 10 for body in Review.objects.values_list("body", flat=True))
    reviewers = get_user_model().objects.filter(reviews__isnull=False).distinct()
    assert all(user.username.startswith("reviewer") for user in reviewers)
    assert not any(user.has_usable_password() for user in reviewers)
    launched = dict(Product.objects.values_list("pk", "created_at"))
    for product_id, changed_at in PriceChange.objects.values_list("product_id", "changed_at"):
        assert launched[product_id] <= changed_at <= now
        assert changed_at >= now - timedelta(days=366)
    assert len({changed_at.date() for changed_at in launched.values()}) > 50  # a year, spread


def test_force_adds_another_shop_and_reuses_the_reviewers():
    seed()
    users = get_user_model().objects.count()

    seed(force=True, seed=12)

    assert Product.objects.count() == 200
    assert Review.objects.count() == 1500
    assert Counter(e.event_type for e in events())["ReviewAdded"] == 1500
    assert get_user_model().objects.count() == users
    assert len(set(Product.objects.values_list("slug", flat=True))) == 200


def test_a_failure_midway_leaves_nothing_behind(monkeypatch):
    def broken(self, reviews):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bulk.Loader, "_reviews", broken)

    with nothing_written(), pytest.raises(RuntimeError, match="disk full"):
        seed()
    assert get_user_model().objects.count() == 0


def test_large_sizes_go_in_bulk_unless_told_otherwise(monkeypatch):
    monkeypatch.setattr(seed_demo, "BULK_THRESHOLD", 30)
    tiny = {"sellers": 1, "products": 5, "reviews": 20, "hot_reviews": 5, "price_changes": 5}

    out, _ = seed(bulk=None, **tiny)
    assert "in bulk" in out

    out, _ = seed(bulk=False, force=True, **tiny)
    assert "through the services" in out


def _schema(table: str) -> tuple[list[str], list[str]]:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
            [table],
        )
        indexes = sorted(row[0] for row in cursor.fetchall())
        cursor.execute(
            "SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass",
            [table],
        )
        constraints = sorted(row[0] for row in cursor.fetchall())
    return indexes, constraints


@pytest.mark.postgres
def test_indexes_and_constraints_dropped_for_the_load_are_all_back(monkeypatch):
    tables = ["reviews_review", "projections_event", "catalog_pricechange", "auth_user"]
    before = {table: _schema(table) for table in tables}
    monkeypatch.setattr(bulk_tables, "REBUILD_FROM_ROWS", 1)

    _, err = seed()

    assert "indexes:" in err  # they were rebuilt
    assert {table: _schema(table) for table in tables} == before
