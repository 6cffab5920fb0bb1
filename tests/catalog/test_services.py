"""Each catalog command records exactly its event, in its own transaction."""

import contextlib
from collections.abc import Iterator
from decimal import Decimal

import pytest

from catalog import services
from catalog.models import PriceChange, Recommendation
from eventstore.events import domain_event
from kernel.errors import Conflict
from reviews.services import review_add
from tests.factories import ProductFactory, SellerFactory, UserFactory
from tests.support import last_position, nothing_written, records_one_event

pytestmark = pytest.mark.django_db


def test_seller_register_records_seller_registered():
    with records_one_event("SellerRegistered", "seller") as events:
        seller = services.seller_register(name="  Acme  ", reputation="4.50")

    assert seller.name == "Acme"
    assert events[0].stream_id == seller.pk
    assert events[0].payload == {"seller_id": seller.pk, "name": "Acme", "reputation": "4.50"}


def test_seller_change_reputation_records_the_new_and_previous_value():
    seller = SellerFactory.create(reputation=Decimal("4.00"))

    with records_one_event("SellerReputationChanged", "seller") as events:
        services.seller_change_reputation(seller_id=seller.pk, reputation=Decimal("3.25"))

    seller.refresh_from_db()
    assert seller.reputation == Decimal("3.25")
    assert events[0].stream_id == seller.pk
    assert events[0].payload == {
        "seller_id": seller.pk,
        "reputation": "3.25",
        "previous_reputation": "4.00",
    }


def test_product_create_records_product_created_and_the_first_price():
    seller = SellerFactory.create()

    with records_one_event("ProductCreated", "product") as events:
        product = services.product_create(
            seller_id=seller.pk,
            name="Oak Chair",
            price="120.50",
            description="Sturdy.",
            stock_quantity=7,
        )

    assert product.slug == "oak-chair"
    first_price = PriceChange.objects.get(product=product)
    assert first_price.price == Decimal("120.50")
    assert events[0].stream_id == product.pk
    assert events[0].payload == {
        "product_id": product.pk,
        "seller_id": seller.pk,
        "name": "Oak Chair",
        "slug": "oak-chair",
        "description": "Sturdy.",
        "price": "120.50",
        "stock_quantity": 7,
        "is_active": True,
        "created_at": product.created_at.isoformat(),
        "price_change_id": first_price.pk,
    }


def test_product_change_details_records_the_new_details():
    product = ProductFactory.create(name="Old name", slug="old-name")

    with records_one_event("ProductDetailsChanged", "product") as events:
        services.product_change_details(
            product_id=product.pk, name="New name", slug="new-name", is_active=False
        )

    assert events[0].payload == {
        "product_id": product.pk,
        "name": "New name",
        "slug": "new-name",
        "description": "A fine product.",
        "is_active": False,
    }


def test_product_change_price_records_price_changed_and_appends_to_the_history():
    product = ProductFactory.create(price=Decimal("19.99"))

    with records_one_event("PriceChanged", "product") as events:
        services.product_change_price(product_id=product.pk, price="17.50")

    change = PriceChange.objects.filter(product=product).latest("id")
    assert change.price == Decimal("17.50")
    assert PriceChange.objects.filter(product=product).count() == 2
    assert events[0].payload == {
        "product_id": product.pk,
        "price_change_id": change.pk,
        "price": "17.50",
        "previous_price": "19.99",
        "changed_at": change.changed_at.isoformat(),
    }


def test_product_change_stock_records_stock_changed():
    product = ProductFactory.create(stock_quantity=10)

    with records_one_event("StockChanged", "product") as events:
        services.product_change_stock(product_id=product.pk, quantity=0)

    product.refresh_from_db()
    assert product.stock_quantity == 0
    assert events[0].payload == {"product_id": product.pk, "quantity": 0, "previous_quantity": 10}


def test_product_set_recommendations_records_the_ordered_list():
    product, first, second = (
        ProductFactory.create(),
        ProductFactory.create(),
        ProductFactory.create(),
    )

    with records_one_event("RecommendationsChanged", "product") as events:
        services.product_set_recommendations(
            product_id=product.pk, related_ids=[second.pk, first.pk]
        )

    assert list(
        Recommendation.objects.filter(product=product).values_list("related_id", "rank")
    ) == [(second.pk, 0), (first.pk, 1)]
    assert events[0].payload == {"product_id": product.pk, "related_ids": [second.pk, first.pk]}


@pytest.mark.parametrize(
    "command",
    [
        lambda p: services.seller_change_reputation(seller_id=p.seller_id, reputation="4.00"),
        lambda p: services.product_change_details(product_id=p.pk, name=p.name),
        lambda p: services.product_change_price(product_id=p.pk, price="19.990"),
        lambda p: services.product_change_stock(product_id=p.pk, quantity=10),
        lambda p: services.product_set_recommendations(product_id=p.pk, related_ids=[]),
    ],
    ids=["reputation", "details", "price", "stock", "recommendations"],
)
def test_a_command_that_changes_nothing_records_nothing(command):
    product = ProductFactory.create(price=Decimal("19.99"), stock_quantity=10)

    with nothing_written():
        command(product)


def test_a_refused_command_leaves_no_row_and_no_event():
    ProductFactory.create(slug="taken")
    seller = SellerFactory.create()

    with nothing_written(), pytest.raises(Conflict) as refused:
        services.product_create(seller_id=seller.pk, name="Another", slug="taken", price="5.00")

    assert refused.value.field == "slug"


class Boom(Exception):
    pass


@contextlib.contextmanager
def a_receiver_failing_after_the_event() -> Iterator[list[int]]:
    """Connects, after the event log's receiver, one that fails once the event row exists.

    It yields the log positions it saw, to show the event had been written.
    """
    seen: list[int] = []

    def explode(**kwargs):
        seen.append(last_position())
        raise Boom

    domain_event.connect(explode, dispatch_uid="tests.explode")
    try:
        yield seen
    finally:
        domain_event.disconnect(dispatch_uid="tests.explode")


@pytest.mark.parametrize(
    "command",
    [
        lambda p, u: services.seller_register(name="Rolled back"),
        lambda p, u: services.product_create(seller_id=p.seller_id, name="Gone", price="1.00"),
        lambda p, u: services.product_change_price(product_id=p.pk, price="1.00"),
        lambda p, u: services.product_change_stock(product_id=p.pk, quantity=3),
        lambda p, u: review_add(product_id=p.pk, author=u, rating=5, body="Great stuff here."),
    ],
    ids=["seller_register", "product_create", "price", "stock", "review_add"],
)
def test_a_command_failing_after_its_event_rolls_back_rows_and_event(command):
    product, author = ProductFactory.create(), UserFactory.create()
    start = last_position()

    with nothing_written(), a_receiver_failing_after_the_event() as seen, pytest.raises(Boom):
        command(product, author)

    assert seen[0] > start
