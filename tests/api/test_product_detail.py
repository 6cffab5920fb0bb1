import datetime as dt
import json
from decimal import Decimal

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from projections.models import ProductReadModel
from queries import selectors
from queries.serializers import ProductDetailSerializer
from tests.api.factories import ProductRowFactory, SellerRowFactory, price_history, review
from tests.api.schema import assert_documented

pytestmark = pytest.mark.django_db(databases=["default", "read"])
DETAIL = "/api/products/{product_id}/"
FIELDS = [field.attname for field in ProductReadModel._meta.concrete_fields]
SELLER = "/api/sellers/{seller_id}/"


@pytest.fixture
def product():
    return ProductRowFactory(
        product_id=42,
        name="Espresso machine",
        slug="espresso-machine",
        description="Makes coffee.\nLoudly.",
        price=Decimal("249.00"),
        stock_quantity=3,
        rating_histogram=[1, 0, 0, 2, 7],
        seller_id=7,
        seller_name="Bean & Co",
        seller_reputation=Decimal("4.85"),
        related_products=[
            {"id": 43, "name": "Grinder", "price": "89.00", "avg_rating": "4.20"},
            {"id": 44, "name": "Tamper", "price": "19.50", "avg_rating": None},
        ],
        price_history=price_history("279.00", "259.00", "249.00"),
        recent_reviews=[review(3, author="dana", rating=5), review(2, author="erin", rating=1)],
        last_position=1234,
    )


def test_answers_the_whole_row(api, product):
    response = api.get(DETAIL.format(product_id=42))
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "id": 42,
        "name": "Espresso machine",
        "slug": "espresso-machine",
        "description": "Makes coffee.\nLoudly.",
        "is_active": True,
        "price": "249.00",
        "currency": "EUR",
        "stock_quantity": 3,
        "stock_status": "low_stock",
        "avg_rating": "4.40",
        "review_count": 10,
        "rating_sum": 44,
        "rating_histogram": [1, 0, 0, 2, 7],
        "seller": {"id": 7, "name": "Bean & Co", "reputation": "4.85"},
        "related_products": [
            {"id": 43, "name": "Grinder", "price": "89.00", "avg_rating": "4.20"},
            {"id": 44, "name": "Tamper", "price": "19.50", "avg_rating": None},
        ],
        "price_history": [
            {"id": 3, "price": "249.00", "changed_at": "2025-01-15T00:00:00.000000+00:00"},
            {"id": 2, "price": "259.00", "changed_at": "2025-01-08T00:00:00.000000+00:00"},
            {"id": 1, "price": "279.00", "changed_at": "2025-01-01T00:00:00.000000+00:00"},
        ],
        "recent_reviews": [
            {
                "id": 3,
                "author": "dana",
                "rating": 5,
                "title": "",
                "body": "Great value.",
                "created_at": "2025-01-01T03:00:00.000000+00:00",
                "edited_at": None,
            },
            {
                "id": 2,
                "author": "erin",
                "rating": 1,
                "title": "",
                "body": "Great value.",
                "created_at": "2025-01-01T02:00:00.000000+00:00",
                "edited_at": None,
            },
        ],
        "last_position": 1234,
        "updated_at": body["updated_at"],
    }
    assert dt.datetime.fromisoformat(body["updated_at"]) == product.updated_at
    assert_documented(response, DETAIL, "GET")


def test_the_fast_reader_returns_what_the_orm_returns(product):
    orm = ProductReadModel.objects.get(product_id=42)
    fast = selectors.product_get(product_id=42)
    assert fast is not None
    assert {field: getattr(fast, field) for field in FIELDS} == {
        field: getattr(orm, field) for field in FIELDS
    }
    assert selectors.product_get(product_id=41) is None
    seller = SellerRowFactory(seller_id=77)
    fetched = selectors.seller_get(seller_id=77)
    assert fetched is not None
    assert (fetched.name, fetched.reputation, fetched.updated_at) == (
        seller.name,
        seller.reputation,
        seller.updated_at,
    )


def test_the_answer_copies_the_stored_json_exactly_as_decoding_it_would(product):
    as_text = selectors.product_get(product_id=42, json_as_text=True)
    decoded = selectors.product_get(product_id=42)
    assert as_text is not None
    assert isinstance(as_text.price_history, str)
    assert json.loads(ProductDetailSerializer().to_json(as_text)) == json.loads(
        json.dumps(ProductDetailSerializer(decoded).data)
    )


def test_non_ascii_text_survives(api):
    ProductRowFactory(
        product_id=9,
        name="Crème brûlée torch 🔥",
        recent_reviews=[review(1, author="zoë", body='Très bien, "quoted" \\ back\\slash')],
    )
    body = api.get(DETAIL.format(product_id=9)).json()
    assert body["name"] == "Crème brûlée torch 🔥"
    assert body["recent_reviews"][0]["author"] == "zoë"
    assert body["recent_reviews"][0]["body"] == 'Très bien, "quoted" \\ back\\slash'


def test_an_inactive_product_is_still_served_and_says_so(api):
    ProductRowFactory(product_id=5, is_active=False)
    response = api.get(DETAIL.format(product_id=5))
    assert response.status_code == 200
    assert response.json()["is_active"] is False


def test_the_row_once_then_only_its_version_and_nothing_on_default(
    api, product, django_assert_num_queries
):
    with (
        CaptureQueriesContext(connections["default"]) as on_default,
        django_assert_num_queries(2, connection=connections["read"]),
    ):
        first = api.get(DETAIL.format(product_id=42))
    with django_assert_num_queries(1, connection=connections["read"]) as again:
        second = api.get(DETAIL.format(product_id=42))

    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second["ETag"] == first["ETag"]
    selected = again.captured_queries[0]["sql"].split("FROM")[0]
    assert '"last_position"' in selected
    assert '"description"' not in selected
    assert len(on_default) == 0


def test_a_changed_row_is_answered_afresh(api, product):
    first = api.get(DETAIL.format(product_id=42)).json()
    product.review_count += 1
    product.last_position += 1  # what the projector does with every change
    product.save(using="read")

    second = api.get(DETAIL.format(product_id=42)).json()

    assert second["review_count"] == first["review_count"] + 1


def test_a_signed_in_client_still_costs_no_query_on_default(api, product, user):
    api.force_login(user)
    with CaptureQueriesContext(connections["default"]) as on_default:
        assert api.get(DETAIL.format(product_id=42)).status_code == 200
    assert len(on_default) == 0


@pytest.mark.parametrize("product_id", [41, 999999, 2**63 - 1, 2**63, 10**30])
def test_unknown_product_is_a_404(api, product, product_id):
    response = api.get(DETAIL.format(product_id=product_id))
    assert response.status_code == 404
    assert response.json() == {"detail": "No such product."}
    assert_documented(response, DETAIL, "GET")


@pytest.mark.parametrize("path", ["/api/products/-1/", "/api/products/abc/", "/api/products/4 2/"])
def test_malformed_ids_do_not_route(api, product, path):
    assert api.get(path).status_code == 404


def test_strong_etag_and_conditional_get(api, product):
    first = api.get(DETAIL.format(product_id=42))
    etag = first["ETag"]
    assert etag.startswith('"')
    assert not etag.startswith("W/")
    assert "max-age=0" in first["Cache-Control"]

    again = api.get(DETAIL.format(product_id=42), HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag
    assert_documented(again, DETAIL, "GET")

    for header in [f'"other", {etag}', "*", f"W/{etag}"]:
        assert api.get(DETAIL.format(product_id=42), HTTP_IF_NONE_MATCH=header).status_code == 304
    assert api.get(DETAIL.format(product_id=42), HTTP_IF_NONE_MATCH='"other"').status_code == 200


def test_the_etag_changes_with_the_row(api, product):
    etag = api.get(DETAIL.format(product_id=42))["ETag"]
    product.last_position += 1
    product.review_count += 1
    product.save(using="read")
    response = api.get(DETAIL.format(product_id=42), HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200
    assert response["ETag"] != etag
    assert response.json()["review_count"] == 11

    product.updated_at = timezone.now() + dt.timedelta(seconds=1)  # a rebuild: same position
    product.save(using="read")
    assert api.get(DETAIL.format(product_id=42))["ETag"] != response["ETag"]


def test_head_answers_headers_only(api, product):
    response = api.head(DETAIL.format(product_id=42))
    assert response.status_code == 200
    assert response["ETag"]
    assert response.content == b""


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_query_side_refuses_writes(api, product, method):
    response = getattr(api, method)(DETAIL.format(product_id=42), {}, format="json")
    assert response.status_code == 405


def test_seller(api):
    seller = SellerRowFactory(seller_id=7, name="Bean & Co", reputation=Decimal("4.85"))
    with CaptureQueriesContext(connections["default"]) as on_default:
        response = api.get(SELLER.format(seller_id=7))
    assert len(on_default) == 0
    assert response.status_code == 200
    assert response.json() == {
        "id": 7,
        "name": "Bean & Co",
        "reputation": "4.85",
        "product_count": 3,
        "review_count": 10,
        "avg_rating": "4.00",
        "last_position": seller.last_position,
        "updated_at": response.json()["updated_at"],
    }
    assert_documented(response, SELLER, "GET")
    etag = response["ETag"]
    not_modified = api.get(SELLER.format(seller_id=7), HTTP_IF_NONE_MATCH=etag)
    assert not_modified.status_code == 304
    assert_documented(not_modified, SELLER, "GET")


def test_unknown_seller_is_a_404(api):
    response = api.get(SELLER.format(seller_id=8))
    assert response.status_code == 404
    assert response.json() == {"detail": "No such seller."}
    assert_documented(response, SELLER, "GET")
