"""Bad input to every catalog command: a domain error naming the field, and nothing written."""

from decimal import Decimal

import pytest

from catalog import services
from kernel.errors import Conflict, InvalidInput, NotFound
from tests.factories import ProductFactory
from tests.support import nothing_written

pytestmark = pytest.mark.django_db

UNKNOWN_ID = 987_654_321
BAD_TEXT = ["", "   ", "x" * 201, "nul \x00 byte", "lone \ud800 surrogate", 42, None]
BAD_PRICES = [
    -1,
    0,
    "0.00",
    "-0.01",
    "1.234",
    "NaN",
    "sNaN",
    "Infinity",
    "1e12",
    "100000000",
    "12345678901234567890123456789.001",
    "not a price",
    1.5,
    True,
    None,
]
BAD_QUANTITIES = [-1, 2**31, 10**30, 1.5, "3", True, None, Decimal(3)]
BAD_REPUTATIONS = ["-0.01", "5.01", "4.555", "NaN", "abc", 4.5, True, None, "1e400"]
BAD_IDS = [UNKNOWN_ID, 0, -1, "1", 1.0, True, None, 2**70]
BAD_SLUGS = ["has spaces", "", "x" * 221, "ünïcode", "a/b", 7]


@pytest.fixture
def product():
    return ProductFactory.create(slug="the-product")


@pytest.fixture
def other():
    return ProductFactory.create(slug="taken")


def refused(error_class, field, command):
    with nothing_written(), pytest.raises(error_class) as raised:
        command()
    assert raised.value.field == field
    assert raised.value.message


@pytest.mark.parametrize("name", BAD_TEXT)
def test_seller_register_refuses_a_bad_name(name):
    refused(InvalidInput, "name", lambda: services.seller_register(name=name))


@pytest.mark.parametrize("reputation", BAD_REPUTATIONS)
def test_seller_register_refuses_a_bad_reputation(reputation):
    refused(
        InvalidInput,
        "reputation",
        lambda: services.seller_register(name="Acme", reputation=reputation),
    )


@pytest.mark.parametrize("reputation", BAD_REPUTATIONS)
def test_seller_change_reputation_refuses_a_bad_reputation(product, reputation):
    refused(
        InvalidInput,
        "reputation",
        lambda: services.seller_change_reputation(
            seller_id=product.seller_id, reputation=reputation
        ),
    )


@pytest.mark.parametrize("seller_id", BAD_IDS)
def test_seller_change_reputation_refuses_an_unknown_seller(seller_id):
    refused(
        NotFound,
        "seller",
        lambda: services.seller_change_reputation(seller_id=seller_id, reputation="4.00"),
    )


@pytest.mark.parametrize("price", BAD_PRICES)
def test_product_create_refuses_a_bad_price(product, price):
    refused(
        InvalidInput,
        "price",
        lambda: services.product_create(seller_id=product.seller_id, name="New", price=price),
    )


@pytest.mark.parametrize("quantity", BAD_QUANTITIES)
def test_product_create_refuses_a_bad_stock_quantity(product, quantity):
    refused(
        InvalidInput,
        "quantity",
        lambda: services.product_create(
            seller_id=product.seller_id, name="New", price="1.00", stock_quantity=quantity
        ),
    )


@pytest.mark.parametrize("name", BAD_TEXT)
def test_product_create_refuses_a_bad_name(product, name):
    refused(
        InvalidInput,
        "name",
        lambda: services.product_create(
            seller_id=product.seller_id, name=name, slug="new", price="1.00"
        ),
    )


@pytest.mark.parametrize("description", ["x" * 20_001, "nul \x00 byte", "\udfff", 3])
def test_product_create_refuses_a_bad_description(product, description):
    refused(
        InvalidInput,
        "description",
        lambda: services.product_create(
            seller_id=product.seller_id, name="New", price="1.00", description=description
        ),
    )


@pytest.mark.parametrize("slug", BAD_SLUGS)
def test_product_create_refuses_a_bad_slug(product, slug):
    refused(
        InvalidInput,
        "slug",
        lambda: services.product_create(
            seller_id=product.seller_id, name="New", price="1.00", slug=slug
        ),
    )


@pytest.mark.parametrize("seller_id", BAD_IDS)
def test_product_create_refuses_an_unknown_seller(seller_id):
    refused(
        NotFound,
        "seller",
        lambda: services.product_create(seller_id=seller_id, name="New", price="1.00"),
    )


def test_product_create_refuses_a_taken_slug(product):
    refused(
        Conflict,
        "slug",
        lambda: services.product_create(
            seller_id=product.seller_id, name="The product", slug="the-product", price="1.00"
        ),
    )


@pytest.mark.parametrize("product_id", BAD_IDS)
@pytest.mark.parametrize(
    "command",
    [
        lambda pk: services.product_change_details(product_id=pk, name="New"),
        lambda pk: services.product_change_price(product_id=pk, price="1.00"),
        lambda pk: services.product_change_stock(product_id=pk, quantity=1),
        lambda pk: services.product_set_recommendations(product_id=pk, related_ids=[]),
    ],
    ids=["details", "price", "stock", "recommendations"],
)
def test_product_commands_refuse_an_unknown_product(product, command, product_id):
    refused(NotFound, "product", lambda: command(product_id))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        *[({"name": name}, "name") for name in BAD_TEXT if name is not None],
        *[({"slug": slug}, "slug") for slug in BAD_SLUGS],
        ({"description": "x" * 20_001}, "description"),
        ({"description": "nul \x00 byte"}, "description"),
    ],
)
def test_product_change_details_refuses_bad_details(product, changes, field):
    refused(
        InvalidInput,
        field,
        lambda: services.product_change_details(product_id=product.pk, **changes),
    )


def test_product_change_details_refuses_a_taken_slug(product, other):
    refused(
        Conflict,
        "slug",
        lambda: services.product_change_details(product_id=product.pk, slug="taken"),
    )


@pytest.mark.parametrize("price", BAD_PRICES)
def test_product_change_price_refuses_a_bad_price(product, price):
    refused(
        InvalidInput,
        "price",
        lambda: services.product_change_price(product_id=product.pk, price=price),
    )


@pytest.mark.parametrize("quantity", BAD_QUANTITIES)
def test_product_change_stock_refuses_a_bad_quantity(product, quantity):
    refused(
        InvalidInput,
        "quantity",
        lambda: services.product_change_stock(product_id=product.pk, quantity=quantity),
    )


@pytest.mark.parametrize(
    "related",
    [
        lambda p, o: [p.pk],
        lambda p, o: [o.pk, o.pk],
        lambda p, o: [o.pk, UNKNOWN_ID],
        lambda p, o: list(range(o.pk, o.pk + 21)),
        lambda p, o: f"{o.pk}",
        lambda p, o: [str(o.pk)],
        lambda p, o: [True],
        lambda p, o: [0],
        lambda p, o: [-1],
        lambda p, o: None,
        lambda p, o: {o.pk},
    ],
    ids=[
        "itself",
        "twice",
        "unknown",
        "too-many",
        "a-string",
        "string-ids",
        "bool",
        "zero",
        "negative",
        "none",
        "a-set",
    ],
)
def test_product_set_recommendations_refuses_a_bad_list(product, other, related):
    refused(
        InvalidInput,
        "related_ids",
        lambda: services.product_set_recommendations(
            product_id=product.pk, related_ids=related(product, other)
        ),
    )
