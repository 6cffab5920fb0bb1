"""A table of hostile inputs for every command endpoint: each gets a 4xx
that the OpenAPI document lists, and nothing is written (no row, no event)."""

import json
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from reviews import services as review_services
from tests import factories
from tests.api.schema import assert_documented
from tests.fuzz.conftest import answered
from tests.support import nothing_written

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db(databases=["default", "read"])]

UNKNOWN_ID = 987_654_321
INJECTIONS = [
    "1; DROP TABLE catalog_product; --",
    "1 OR 1=1",
    "' OR ''='",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "{{ 7*7 }}",
    "${jndi:ldap://x}",
    "../../etc/passwd",
]
RAW_BODIES = [
    pytest.param(b"", "application/json", id="empty"),
    pytest.param(b"   ", "application/json", id="blank"),
    pytest.param(b"{", "application/json", id="truncated"),
    pytest.param(b"null", "application/json", id="null"),
    pytest.param(b"[]", "application/json", id="array"),
    pytest.param(b'"text"', "application/json", id="string"),
    pytest.param(b"42", "application/json", id="number"),
    pytest.param(b"\x00\x00\x00\x00", "application/json", id="nul-bytes"),
    pytest.param(b'{"body": "\x00"}', "application/json", id="nul-in-json"),
    pytest.param(b'{"a": "\xff\xfe\xfd"}', "application/json", id="invalid-utf8"),
    pytest.param(b'\xef\xbb\xbf{"a": 1}', "application/json", id="utf8-bom"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "application/json", id="deep-array"),
    pytest.param(b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json", id="deep-object"),
    pytest.param(b'{"x": "' + b"A" * 3_000_000 + b'"}', "application/json", id="3MB"),
    pytest.param(b"price=1&quantity=1", "text/plain", id="text-plain"),
    pytest.param(b"<xml/>", "application/xml", id="xml"),
    pytest.param(b"--b\r\n\xff--b--\r\n", "multipart/form-data; boundary=b", id="bad-multipart"),
    pytest.param(b"--b\r\n", "multipart/form-data", id="multipart-no-boundary"),
    pytest.param(b"a=%ff%fe&b", "application/x-www-form-urlencoded", id="bad-form"),
]
PRICES: list[Any] = [
    "1e309",
    "-1e309",
    "1e-7",
    "NaN",
    "-NaN",
    "sNaN",
    "Infinity",
    "-0",
    "0",
    "0.00",
    "0.001",
    "-0.01",
    "100000000",
    "9" * 400,
    "1_000",
    "١٢",  # Arabic-Indic digits
    "12,50",
    "0x10",
    "",
    None,
    True,
    [],
    {},
    *INJECTIONS,
]
RAW_PRICES = [b"1e309", b"-1e309", b"NaN", b"Infinity", b"-0", b"1" + b"0" * 5000]
# DRF's IntegerField takes "1.0" and 1.0 as 1, on purpose; that is left alone.
QUANTITIES: list[Any] = [
    -1,
    2**31,
    2**63,
    10**400,
    1.5,
    "1.5",
    "",
    None,
    True,
    "ten",
    [],
    {},
    *INJECTIONS,
]
IDS: list[Any] = [0, -1, UNKNOWN_ID, 2**31, 2**63, 10**30, 1.5, "", None, True, [], {}, *INJECTIONS]
RATINGS: list[Any] = [0, 6, -1, 2.5, "", None, True, 10**400, [], {}, *INJECTIONS]
BODIES: list[Any] = ["", "short", "x" * 5001, "ten chars\x00", None, 42, [], {}]


@pytest.fixture(autouse=True)
def _unthrottled(monkeypatch):
    monkeypatch.setattr(
        ScopedRateThrottle, "THROTTLE_RATES", {"reviews": "100000/min", "commands": "100000/min"}
    )


@pytest.fixture
def shop(staff_user, user):
    product = factories.product(price="19.99", stock=10)
    other = factories.product(price="5.00", stock=3)
    own = review_services.review_add(
        product_id=other.pk, author=staff_user, rating=4, body="My own review here."
    )
    foreign = review_services.review_add(
        product_id=product.pk, author=user, rating=2, body="Somebody else wrote this."
    )
    return {"product": product.pk, "own_review": own.pk, "foreign_review": foreign.pk}


@pytest.fixture
def staff(staff_user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff_user).key}")
    return client


def endpoints(shop):
    """(method, concrete path, documented path) of every command."""
    return [
        ("POST", "/api/reviews/", "/api/reviews/"),
        ("PATCH", f"/api/reviews/{shop['own_review']}/", "/api/reviews/{review_id}/"),
        ("POST", f"/api/products/{shop['product']}/price/", "/api/products/{product_id}/price/"),
        ("POST", f"/api/products/{shop['product']}/stock/", "/api/products/{product_id}/stock/"),
    ]


def refused(client, method, path, documented, body, content_type="application/json"):
    with nothing_written():
        response = client.generic(method, path, body, content_type=content_type)
    answered[f"{response.status_code // 100}xx"] += 1
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert_documented(response, documented, method)
    return response


@pytest.mark.parametrize(("body", "content_type"), RAW_BODIES)
def test_malformed_bodies_are_refused_by_every_command(staff, shop, body, content_type):
    for method, path, documented in endpoints(shop):
        refused(staff, method, path, documented, body, content_type)


@pytest.mark.parametrize("price", PRICES, ids=repr)
def test_hostile_prices(staff, shop, price):
    path = f"/api/products/{shop['product']}/price/"
    refused(staff, "POST", path, "/api/products/{product_id}/price/", json.dumps({"price": price}))


@pytest.mark.parametrize("raw", RAW_PRICES, ids=lambda raw: raw[:20].decode())
def test_hostile_json_numbers_for_a_price(staff, shop, raw):
    path = f"/api/products/{shop['product']}/price/"
    body = b'{"price": ' + raw + b"}"
    refused(staff, "POST", path, "/api/products/{product_id}/price/", body)


@pytest.mark.parametrize("quantity", QUANTITIES, ids=repr)
def test_hostile_quantities(staff, shop, quantity):
    path = f"/api/products/{shop['product']}/stock/"
    body = json.dumps({"quantity": quantity})
    refused(staff, "POST", path, "/api/products/{product_id}/stock/", body)


@pytest.mark.parametrize("product", IDS, ids=repr)
def test_hostile_product_ids_in_a_review(staff, shop, product):
    body = json.dumps({"product": product, "rating": 4, "body": "A perfectly fine review."})
    refused(staff, "POST", "/api/reviews/", "/api/reviews/", body)


@pytest.mark.parametrize("rating", RATINGS, ids=repr)
def test_hostile_ratings(staff, shop, rating):
    body = json.dumps({"product": shop["product"], "rating": rating, "body": "Fine review text."})
    refused(staff, "POST", "/api/reviews/", "/api/reviews/", body)
    path = f"/api/reviews/{shop['own_review']}/"
    refused(staff, "PATCH", path, "/api/reviews/{review_id}/", json.dumps({"rating": rating}))


@pytest.mark.parametrize("text", BODIES, ids=repr)
def test_hostile_review_texts(staff, shop, text):
    body = json.dumps({"product": shop["product"], "rating": 4, "body": text})
    refused(staff, "POST", "/api/reviews/", "/api/reviews/", body)
    path = f"/api/reviews/{shop['own_review']}/"
    refused(staff, "PATCH", path, "/api/reviews/{review_id}/", json.dumps({"body": text}))


@pytest.mark.parametrize(
    "path_id", ["0", str(UNKNOWN_ID), str(2**63), "9" * 40, "-1", "1.5", "abc", "%00", "1%20OR%201"]
)
def test_unknown_and_malformed_ids_in_paths(staff, shop, path_id):
    cases = [
        (
            "POST",
            f"/api/products/{path_id}/price/",
            "/api/products/{product_id}/price/",
            {"price": "5.00"},
        ),
        (
            "POST",
            f"/api/products/{path_id}/stock/",
            "/api/products/{product_id}/stock/",
            {"quantity": 1},
        ),
        ("PATCH", f"/api/reviews/{path_id}/", "/api/reviews/{review_id}/", {"rating": 3}),
        ("DELETE", f"/api/reviews/{path_id}/", "/api/reviews/{review_id}/", None),
    ]
    for method, path, documented, payload in cases:
        body = json.dumps(payload) if payload is not None else b""
        response = refused(staff, method, path, documented, body)
        assert response.status_code == 404


def test_foreign_reviews_cannot_be_edited_or_removed(staff, shop):
    path = f"/api/reviews/{shop['foreign_review']}/"
    for method, body in (("PATCH", json.dumps({"rating": 5})), ("DELETE", b"")):
        response = refused(staff, method, path, "/api/reviews/{review_id}/", body)
        assert response.status_code == 403


def test_a_second_review_of_the_same_product_is_a_conflict(staff, shop):
    body = json.dumps({"product": shop["product"], "rating": 4, "body": "First of two reviews."})
    assert staff.post("/api/reviews/", body, content_type="application/json").status_code == 201
    response = refused(staff, "POST", "/api/reviews/", "/api/reviews/", body)
    assert response.status_code == 409


@pytest.mark.django_db(transaction=True, databases=["default", "read"])
def test_html_in_a_review_is_stored_as_text_and_shown_escaped(staff, shop, client):
    from tests.api.projector import project_all

    text = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    body = json.dumps({"product": shop["product"], "rating": 4, "body": text})
    assert staff.post("/api/reviews/", body, content_type="application/json").status_code == 201
    project_all()
    page = client.get(f"/products/{shop['product']}/").content.decode()
    assert "&lt;script&gt;alert(" in page
    assert "<script>alert(" not in page
    assert "<img src=x" not in page
