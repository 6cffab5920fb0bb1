from decimal import Decimal

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from queries.selectors import ORDERINGS, Cursor
from tests.api.factories import ProductRowFactory, SellerRowFactory
from tests.api.schema import assert_documented

pytestmark = pytest.mark.django_db(databases=["default", "read"])
URL = "/api/products/"


def ids(response):
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


@pytest.fixture
def catalog():
    """Eight products with distinct prices, names, ratings and stock."""
    rows = [
        ProductRowFactory(
            name="Anvil",
            price=Decimal("99.00"),
            seller_id=1,
            stock_quantity=0,
            rating_histogram=[0, 0, 0, 0, 4],
        ),
        ProductRowFactory(
            name="Bucket",
            price=Decimal("5.50"),
            seller_id=1,
            stock_quantity=3,
            rating_histogram=[1, 0, 0, 0, 0],
        ),
        ProductRowFactory(
            name="Chisel",
            price=Decimal("12.00"),
            seller_id=2,
            stock_quantity=50,
            rating_histogram=[0, 0, 2, 2, 0],
        ),
        ProductRowFactory(
            name="Drill",
            price=Decimal("149.99"),
            seller_id=2,
            stock_quantity=7,
            rating_histogram=[0, 0, 0, 0, 0],
        ),
        ProductRowFactory(
            name="Epoxy glue",
            price=Decimal("7.25"),
            seller_id=3,
            stock_quantity=100,
            rating_histogram=[0, 1, 0, 0, 1],
        ),
        ProductRowFactory(
            name="File set",
            price=Decimal("12.00"),
            seller_id=3,
            stock_quantity=1,
            rating_histogram=[0, 0, 0, 5, 0],
        ),
        ProductRowFactory(
            name="Gloves",
            price=Decimal("3.00"),
            seller_id=1,
            stock_quantity=9,
            rating_histogram=[0, 0, 0, 0, 0],
        ),
        ProductRowFactory(
            name="Hammer",
            price=Decimal("21.00"),
            seller_id=2,
            stock_quantity=0,
            rating_histogram=[0, 0, 0, 1, 1],
        ),
    ]
    ProductRowFactory(name="Retired item", is_active=False, price=Decimal("1.00"))
    return {row.name: row for row in rows}


def by_name(catalog, *names):
    return [catalog[name].product_id for name in names]


def test_lists_active_products_by_name_with_their_summary(api, catalog):
    response = api.get(URL)
    assert ids(response) == by_name(
        catalog, "Anvil", "Bucket", "Chisel", "Drill", "Epoxy glue", "File set", "Gloves", "Hammer"
    )
    first = response.json()["results"][0]
    anvil = catalog["Anvil"]
    assert first == {
        "id": anvil.product_id,
        "name": "Anvil",
        "slug": anvil.slug,
        "price": "99.00",
        "currency": "EUR",
        "stock_quantity": 0,
        "stock_status": "out_of_stock",
        "avg_rating": "5.00",
        "review_count": 4,
        "seller": {"id": 1, "name": "Acme Goods", "reputation": "4.50"},
        "updated_at": first["updated_at"],
    }
    assert_documented(response, URL, "GET")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"seller": 2}, ["Chisel", "Drill", "Hammer"]),
        ({"min_rating": "4"}, ["Anvil", "File set", "Hammer"]),
        ({"min_rating": "3.5"}, ["Anvil", "Chisel", "Epoxy glue", "File set", "Hammer"]),
        ({"min_rating": "0"}, ["Anvil", "Bucket", "Chisel", "Epoxy glue", "File set", "Hammer"]),
        ({"max_price": "12"}, ["Bucket", "Chisel", "Epoxy glue", "File set", "Gloves"]),
        ({"max_price": "11.99"}, ["Bucket", "Epoxy glue", "Gloves"]),
        ({"in_stock": "true"}, ["Bucket", "Chisel", "Drill", "Epoxy glue", "File set", "Gloves"]),
        ({"in_stock": "false"}, ["Anvil", "Hammer"]),
        ({"search": "e"}, ["Bucket", "Chisel", "Epoxy glue", "File set", "Gloves", "Hammer"]),
        ({"search": "  GLUE "}, ["Epoxy glue"]),
        ({"search": "%"}, []),
        ({"search": "_"}, []),
        ({"seller": 1, "in_stock": "true", "max_price": "10"}, ["Bucket", "Gloves"]),
        ({"seller": 999}, []),
        (
            {"seller": "", "search": ""},
            ["Anvil", "Bucket", "Chisel", "Drill", "Epoxy glue", "File set", "Gloves", "Hammer"],
        ),
    ],
)
def test_filters(api, catalog, query, expected):
    assert ids(api.get(URL, query)) == by_name(catalog, *expected)


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        (
            "name",
            ["Anvil", "Bucket", "Chisel", "Drill", "Epoxy glue", "File set", "Gloves", "Hammer"],
        ),
        (
            "-name",
            ["Hammer", "Gloves", "File set", "Epoxy glue", "Drill", "Chisel", "Bucket", "Anvil"],
        ),
        # Chisel and File set cost the same: the product id breaks the tie.
        (
            "price",
            ["Gloves", "Bucket", "Epoxy glue", "Chisel", "File set", "Hammer", "Anvil", "Drill"],
        ),
        (
            "-price",
            ["Drill", "Anvil", "Hammer", "File set", "Chisel", "Epoxy glue", "Bucket", "Gloves"],
        ),
        # Unrated products (Drill, Gloves) come last, best rated first.
        (
            "-avg_rating",
            ["Anvil", "Hammer", "File set", "Chisel", "Epoxy glue", "Bucket", "Drill", "Gloves"],
        ),
        (
            "avg_rating",
            ["Gloves", "Drill", "Bucket", "Epoxy glue", "Chisel", "File set", "Hammer", "Anvil"],
        ),
        (
            "-review_count",
            ["File set", "Anvil", "Chisel", "Epoxy glue", "Hammer", "Bucket", "Drill", "Gloves"],
        ),
        (
            "review_count",
            ["Gloves", "Drill", "Bucket", "Hammer", "Epoxy glue", "Chisel", "Anvil", "File set"],
        ),
    ],
)
def test_orderings(api, catalog, ordering, expected):
    assert set(ORDERINGS) >= {ordering}
    assert ids(api.get(URL, {"ordering": ordering})) == by_name(catalog, *expected)


def walk(api, url, params=None, *, direction="next"):
    pages = []
    response = api.get(url, params)
    while True:
        assert response.status_code == 200, response.content
        pages.append([item["id"] for item in response.json()["results"]])
        link = response.json()[direction]
        if link is None:
            return pages
        response = api.get(link)


@pytest.mark.parametrize("ordering", list(ORDERINGS))
def test_cursor_pages_cover_the_list_once_forwards_and_back(api, catalog, ordering):
    everything = ids(api.get(URL, {"ordering": ordering, "page_size": 100}))
    pages = walk(api, URL, {"ordering": ordering, "page_size": 3})
    assert [len(page) for page in pages] == [3, 3, 2]
    assert [pk for page in pages for pk in page] == everything

    last_page = api.get(URL, {"ordering": ordering, "page_size": 3})
    while last_page.json()["next"]:
        last_page = api.get(last_page.json()["next"])
    backwards = walk(api, last_page.json()["previous"], direction="previous")
    assert backwards == pages[-2::-1]


def test_first_page_has_no_previous_and_last_has_no_next(api, catalog):
    first = api.get(URL, {"page_size": 5}).json()
    assert first["previous"] is None
    assert first["next"].startswith("http://testserver/api/products/?")
    last = api.get(first["next"]).json()
    assert last["next"] is None
    assert last["previous"] is not None


def test_a_page_starts_after_the_last_row_seen_even_when_rows_arrive(api, catalog):
    first = api.get(URL, {"page_size": 4}).json()
    ProductRowFactory(name="Aardvark figurine")  # sorts before the cursor
    second = api.get(first["next"]).json()
    assert [item["name"] for item in second["results"]] == [
        "Epoxy glue",
        "File set",
        "Gloves",
        "Hammer",
    ]


def test_pagination_keeps_the_filters(api, catalog):
    pages = walk(api, URL, {"seller": 2, "ordering": "-price", "page_size": 2})
    assert pages == [by_name(catalog, "Drill", "Hammer"), by_name(catalog, "Chisel")]


def test_empty_list(api):
    response = api.get(URL)
    assert response.json() == {"next": None, "previous": None, "results": []}


def test_one_query_on_read_and_none_on_default(api, catalog, django_assert_num_queries):
    SellerRowFactory()
    with (
        CaptureQueriesContext(connections["default"]) as on_default,
        django_assert_num_queries(1, connection=connections["read"]),
    ):
        response = api.get(URL, {"seller": 1, "min_rating": "1", "ordering": "-avg_rating"})
    assert response.status_code == 200
    assert len(on_default) == 0


def test_big_columns_stay_on_the_server(api, catalog):
    with CaptureQueriesContext(connections["read"]) as queries:
        api.get(URL)
    sql = queries.captured_queries[0]["sql"]
    assert "recent_reviews" not in sql
    assert "price_history" not in sql


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"seller": "abc"}, "seller"),
        ({"seller": "0"}, "seller"),
        ({"seller": "99999999999999999999999"}, "seller"),
        ({"seller": "1.5"}, "seller"),
        ({"min_rating": "6"}, "min_rating"),
        ({"min_rating": "-1"}, "min_rating"),
        ({"min_rating": "four"}, "min_rating"),
        ({"min_rating": "NaN"}, "min_rating"),
        ({"min_rating": "Infinity"}, "min_rating"),
        ({"min_rating": "4.555"}, "min_rating"),
        ({"max_price": "-0.01"}, "max_price"),
        ({"max_price": "1e400"}, "max_price"),
        ({"max_price": "9" * 2000}, "max_price"),
        ({"in_stock": "maybe"}, "in_stock"),
        ({"ordering": "stock_quantity"}, "ordering"),
        ({"ordering": "-price; DROP TABLE x"}, "ordering"),
        ({"search": "x" * 201}, "search"),
        ({"search": "nul\x00byte"}, "search"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "101"}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "x" * 601}, "cursor"),
        ({"cursor": "W10"}, "cursor"),  # valid base64 of "[]"
        ({"consistency_token": "yesterday"}, "consistency_token"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_parameter(api, catalog, query, field):
    response = api.get(URL, query)
    assert response.status_code == 400
    assert field in response.json()
    assert response.json()[field][0]
    assert_documented(response, URL, "GET")


def test_a_cursor_from_another_ordering_is_a_400(api, catalog):
    link = api.get(URL, {"ordering": "price", "page_size": 2}).json()["next"]
    cursor = link.split("cursor=")[1].split("&")[0]
    response = api.get(URL, {"ordering": "name", "cursor": cursor})
    assert response.status_code == 400
    assert "another ordering" in response.json()["cursor"][0]


@pytest.mark.parametrize(
    "cursor",
    [
        Cursor("price", "abc", 1),
        Cursor("price", None, 1),
        Cursor("price", "1e999", 1),
        Cursor("review_count", "-5", 1),
        Cursor("name", "x", 0),
        Cursor("name", "x", 2**63),
    ],
)
def test_forged_cursors_are_a_400(api, catalog, cursor):
    response = api.get(URL, {"ordering": cursor.ordering, "cursor": cursor.encode()})
    assert response.status_code == 400
    assert response.json() == {"cursor": ["Invalid cursor."]}
