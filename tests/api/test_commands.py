import contextlib
import json

import pytest
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from catalog import services as catalog_services
from catalog.models import PriceChange, Product, Recommendation, Seller
from eventstore.eventlog import LogPosition
from eventstore.models import Event
from eventstore.tokens import InvalidToken, read_token
from kernel import errors as kernel_errors
from kernel.http import UNSUPPORTED_SCHEME
from reviews import errors as review_errors
from reviews import services as review_services
from reviews.models import Review
from tests import factories
from tests.api.schema import assert_documented

pytestmark = pytest.mark.django_db(databases=["default", "read"])

REVIEWS = "/api/reviews/"
REVIEW = "/api/reviews/{review_id}/"
PRICE = "/api/products/{product_id}/price/"
STOCK = "/api/products/{product_id}/stock/"
WRITE_MODELS = (Seller, Product, PriceChange, Recommendation, Review, Event, get_user_model())


def write_side():
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in WRITE_MODELS}


@contextlib.contextmanager
def nothing_written():
    """Fail unless the block leaves every write-side table, events included, as it was."""
    before = write_side()
    yield
    assert write_side() == before


def new_events(since):
    return list(Event.objects.filter(position__gt=since).order_by("position"))


def last_position():
    last = Event.objects.order_by("-position").first()
    return last.position if last else 0


class token_of:
    """Equal to the consistency token a command answers for ``event``: issued
    by this server and naming the event's position and product."""

    def __init__(self, event, *, tail=False):
        self.position = LogPosition(event.transaction_id, event.position)
        key = event.payload.get("product_id")
        # The log's tail, answered by a command that recorded nothing, names no key.
        self.keys = frozenset({key}) if type(key) is int and not tail else None

    def __eq__(self, answered):
        try:
            token = read_token(answered)[0]
        except InvalidToken:
            return False
        return token.position == self.position and token.keys == self.keys

    def __repr__(self):
        return f"<token of {self.position.token()}>"


@pytest.fixture
def product():
    return factories.product(price="19.99", stock=10)


@pytest.fixture
def as_user(user):
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def as_other(other_user):
    client = APIClient()
    client.force_login(other_user)
    return client


@pytest.fixture
def as_staff(staff_user):
    client = APIClient()
    client.force_login(staff_user)
    return client


# POST /api/reviews/ ----------------------------------------------------------


def test_add_review(as_user, user, product):
    since = last_position()
    response = as_user.post(
        REVIEWS, {"product": product.pk, "rating": 5, "body": "Excellent kettle."}, format="json"
    )
    assert response.status_code == 201, response.content
    review = Review.objects.get()
    assert (review.product, review.author, review.rating, review.body) == (
        product,
        user,
        5,
        "Excellent kettle.",
    )
    [event] = new_events(since)
    assert event.event_type == "ReviewAdded"
    assert response.json() == {
        "id": review.pk,
        "product": product.pk,
        "consistency_token": token_of(event),
    }
    assert_documented(response, REVIEWS, "POST")


def test_add_review_with_an_api_token_and_a_form_body(user, product):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    response = client.post(REVIEWS, {"product": product.pk, "rating": "4", "body": "Good enough."})
    assert response.status_code == 201, response.content
    assert Review.objects.get().rating == 4


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "product"),
        ({"rating": 5, "body": "Excellent kettle."}, "product"),
        ({"product": "abc", "rating": 5, "body": "Excellent kettle."}, "product"),
        ({"product": None, "rating": 5, "body": "Excellent kettle."}, "product"),
        ({"product": 1.5, "rating": 5, "body": "Excellent kettle."}, "product"),
        ({"product": "PK", "body": "Excellent kettle."}, "rating"),
        ({"product": "PK", "rating": 0, "body": "Excellent kettle."}, "rating"),
        ({"product": "PK", "rating": 6, "body": "Excellent kettle."}, "rating"),
        ({"product": "PK", "rating": -1, "body": "Excellent kettle."}, "rating"),
        ({"product": "PK", "rating": 4.5, "body": "Excellent kettle."}, "rating"),
        ({"product": "PK", "rating": "five", "body": "Excellent kettle."}, "rating"),
        ({"product": "PK", "rating": True, "body": "Excellent kettle."}, "rating"),
        ({"product": "PK", "rating": 10**400, "body": "Excellent kettle."}, "rating"),
        ({"product": "PK", "rating": [5], "body": "Excellent kettle."}, "rating"),
        ({"product": "PK", "rating": 5}, "body"),
        ({"product": "PK", "rating": 5, "body": ""}, "body"),
        ({"product": "PK", "rating": 5, "body": "too short"}, "body"),
        ({"product": "PK", "rating": 5, "body": "x" * 5001}, "body"),
        ({"product": "PK", "rating": 5, "body": "NUL \x00 inside the text"}, "body"),
        ({"product": "PK", "rating": 5, "body": ["Excellent kettle."]}, "body"),
        ({"product": "PK", "rating": 5, "body": {"text": "Excellent kettle."}}, "body"),
    ],
)
def test_add_review_rejects_bad_input(as_user, product, payload, field):
    payload = {key: product.pk if value == "PK" else value for key, value in payload.items()}
    with nothing_written():
        response = as_user.post(
            REVIEWS, json.dumps(payload, default=str), content_type="application/json"
        )
    assert response.status_code == 400
    assert response.json()[field][0]
    assert_documented(response, REVIEWS, "POST")


def test_the_service_messages_reach_the_client(as_user, product):
    response = as_user.post(
        REVIEWS, {"product": product.pk, "rating": 9, "body": "short"}, format="json"
    )
    assert response.json() == {"rating": [review_errors.RATING_OUT_OF_RANGE]}
    response = as_user.post(
        REVIEWS, {"product": product.pk, "rating": 3, "body": "short"}, format="json"
    )
    assert response.json() == {"body": [review_errors.BODY_LENGTH]}


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"product": 1, "rating": 5,', "application/json", 400),
        (b"[1, 2, 3]", "application/json", 400),
        (b'"just a string"', "application/json", 400),
        (b"null", "application/json", 400),
        (b'{"product": NaN, "rating": 5, "body": "Excellent kettle."}', "application/json", 400),
        (b'{"product": 1, "rating": 5, "body": "\xff\xfe bad utf-8"}', "application/json", 400),
        (b"\x00\x00\x00", "application/json", 400),
        (b"product=1&rating=5&body=Excellent", "text/plain", 415),
    ],
)
def test_add_review_rejects_malformed_bodies(as_user, product, body, content_type, status):
    with nothing_written():
        response = as_user.post(REVIEWS, body, content_type=content_type)
    assert response.status_code == status


def test_add_review_needs_authentication(api, product):
    with nothing_written():
        response = api.post(
            REVIEWS, {"product": product.pk, "rating": 5, "body": "Excellent kettle."}
        )
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert_documented(response, REVIEWS, "POST")


def test_a_wrong_api_token_is_a_401(product):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    with nothing_written():
        response = client.post(
            REVIEWS, {"product": product.pk, "rating": 5, "body": "Excellent kettle."}
        )
    assert response.status_code == 401


@pytest.mark.parametrize(
    "authorization", ["Basic YWxpY2U6cHctYWxpY2UtMTIz", "Bearer abc", "Digest x", "basic"]
)
def test_another_authorization_scheme_is_a_clear_401(product, user, authorization):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization)
    with nothing_written():
        response = client.post(
            REVIEWS, {"product": product.pk, "rating": 5, "body": "Excellent kettle."}
        )
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"detail": UNSUPPORTED_SCHEME}
    assert_documented(response, REVIEWS, "POST")


def test_a_session_post_without_csrf_token_is_refused(user, product):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    with nothing_written():
        response = client.post(
            REVIEWS, {"product": product.pk, "rating": 5, "body": "Excellent kettle."}
        )
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


@pytest.mark.parametrize("product_id", [999_999, 0, -4, 2**63, 10**400])
def test_add_review_of_an_unknown_product_is_a_404(as_user, product, product_id):
    payload = f'{{"product": {product_id}, "rating": 5, "body": "Excellent kettle."}}'
    with nothing_written():
        response = as_user.post(REVIEWS, payload, content_type="application/json")
    assert response.status_code == 404
    assert response.json() == {"detail": kernel_errors.PRODUCT_NOT_FOUND}
    assert_documented(response, REVIEWS, "POST")


def test_a_second_review_of_the_same_product_is_a_409(as_user, user, product):
    factories.review(product_obj=product, author=user)
    with nothing_written():
        response = as_user.post(
            REVIEWS, {"product": product.pk, "rating": 1, "body": "Changed my mind."}
        )
    assert response.status_code == 409
    assert response.json() == {"detail": review_errors.REVIEW_EXISTS}
    assert_documented(response, REVIEWS, "POST")


def test_reviewing_a_product_off_sale_is_a_409(as_user, product):
    catalog_services.product_change_details(product_id=product.pk, is_active=False)
    with nothing_written():
        response = as_user.post(
            REVIEWS, {"product": product.pk, "rating": 5, "body": "Excellent kettle."}
        )
    assert response.status_code == 409
    assert response.json() == {"detail": kernel_errors.PRODUCT_INACTIVE}


def test_review_posting_is_throttled_per_user(as_user, as_other, settings):
    rate = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["reviews"]
    allowed = int(rate.split("/")[0])
    products = [factories.product() for _ in range(allowed + 1)]
    for product in products[:allowed]:
        response = as_user.post(
            REVIEWS, {"product": product.pk, "rating": 4, "body": "Nice product here."}
        )
        assert response.status_code == 201
    with nothing_written():
        response = as_user.post(
            REVIEWS, {"product": products[-1].pk, "rating": 4, "body": "Nice product here."}
        )
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert_documented(response, REVIEWS, "POST")
    # Another user is not held back by the first one's posts.
    response = as_other.post(
        REVIEWS, {"product": products[-1].pk, "rating": 4, "body": "Nice product here."}
    )
    assert response.status_code == 201


# PATCH and DELETE /api/reviews/{id}/ ------------------------------------------


@pytest.fixture
def review(product, user):
    return factories.review(product_obj=product, author=user, rating=3, body="It is all right.")


def test_edit_review(as_user, review):
    since = last_position()
    response = as_user.patch(REVIEW.format(review_id=review.pk), {"rating": 5}, format="json")
    assert response.status_code == 202, response.content
    [event] = new_events(since)
    assert event.event_type == "ReviewEdited"
    assert response.json() == {"id": review.pk, "consistency_token": token_of(event)}
    review.refresh_from_db()
    assert (review.rating, review.body) == (5, "It is all right.")
    assert_documented(response, REVIEW, "PATCH")


def test_an_edit_that_changes_nothing_records_nothing_and_still_gets_a_token(as_user, review):
    tail = Event.objects.order_by("-position").first()
    with nothing_written():
        response = as_user.patch(
            REVIEW.format(review_id=review.pk), {"rating": 3, "body": "It is all right."}
        )
    assert response.status_code == 202
    assert response.json()["consistency_token"] == token_of(tail, tail=True)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "non_field_errors"),
        ({"rating": 0}, "rating"),
        ({"rating": "x"}, "rating"),
        ({"body": "short"}, "body"),
        ({"body": "\x00" * 20}, "body"),
    ],
)
def test_edit_review_rejects_bad_input(as_user, review, payload, field):
    with nothing_written():
        response = as_user.patch(REVIEW.format(review_id=review.pk), payload, format="json")
    assert response.status_code == 400
    assert response.json()[field][0]
    assert_documented(response, REVIEW, "PATCH")


def test_only_the_author_edits_or_removes(as_other, review):
    with nothing_written():
        edit = as_other.patch(REVIEW.format(review_id=review.pk), {"rating": 1}, format="json")
        remove = as_other.delete(REVIEW.format(review_id=review.pk))
    for response, method in [(edit, "PATCH"), (remove, "DELETE")]:
        assert response.status_code == 403
        assert response.json() == {"detail": review_errors.REVIEW_NOT_YOURS}
        assert_documented(response, REVIEW, method)


def test_editing_or_removing_needs_authentication(api, review):
    with nothing_written():
        edit = api.patch(REVIEW.format(review_id=review.pk), {"rating": 1}, format="json")
        remove = api.delete(REVIEW.format(review_id=review.pk))
    assert (edit.status_code, remove.status_code) == (401, 401)
    assert_documented(edit, REVIEW, "PATCH")
    assert_documented(remove, REVIEW, "DELETE")


@pytest.mark.parametrize("review_id", [999_999, 2**63, 10**30])
def test_unknown_reviews_are_a_404(as_user, review, review_id):
    with nothing_written():
        edit = as_user.patch(REVIEW.format(review_id=review_id), {"rating": 1}, format="json")
        remove = as_user.delete(REVIEW.format(review_id=review_id))
    assert (edit.status_code, remove.status_code) == (404, 404)
    assert edit.json() == {"detail": review_errors.REVIEW_NOT_FOUND}
    assert_documented(edit, REVIEW, "PATCH")
    assert_documented(remove, REVIEW, "DELETE")


def test_a_hidden_review_cannot_be_edited(as_user, review, staff_user):
    review_services.review_hide(review_id=review.pk, moderator=staff_user)
    with nothing_written():
        response = as_user.patch(REVIEW.format(review_id=review.pk), {"rating": 1}, format="json")
    assert response.status_code == 409
    assert_documented(response, REVIEW, "PATCH")


def test_remove_review(as_user, review):
    since = last_position()
    response = as_user.delete(REVIEW.format(review_id=review.pk))
    assert response.status_code == 202
    [event] = new_events(since)
    assert event.event_type == "ReviewRemoved"
    assert response.json() == {"id": review.pk, "consistency_token": token_of(event)}
    assert not Review.objects.exists()
    assert_documented(response, REVIEW, "DELETE")


def test_get_on_a_command_endpoint_is_a_405(as_user, review):
    assert as_user.get(REVIEW.format(review_id=review.pk)).status_code == 405
    assert as_user.get(REVIEWS).status_code == 405


# POST /api/products/{id}/price/ and /stock/ --------------------------------------


def test_staff_change_the_price(as_staff, product):
    since = last_position()
    response = as_staff.post(PRICE.format(product_id=product.pk), {"price": "24.5"}, format="json")
    assert response.status_code == 202, response.content
    [event] = new_events(since)
    assert event.event_type == "PriceChanged"
    assert response.json() == {
        "product": product.pk,
        "price": "24.50",
        "consistency_token": token_of(event),
    }
    product.refresh_from_db()
    assert str(product.price) == "24.50"
    assert PriceChange.objects.filter(product=product).count() == 2
    assert_documented(response, PRICE, "POST")


def test_a_json_number_price_is_accepted(as_staff, product):
    response = as_staff.post(
        PRICE.format(product_id=product.pk), '{"price": 7.25}', content_type="application/json"
    )
    assert response.status_code == 202
    assert response.json()["price"] == "7.25"


def test_staff_change_the_stock(as_staff, product):
    since = last_position()
    response = as_staff.post(STOCK.format(product_id=product.pk), {"quantity": 0}, format="json")
    assert response.status_code == 202, response.content
    [event] = new_events(since)
    assert event.event_type == "StockChanged"
    assert response.json() == {
        "product": product.pk,
        "quantity": 0,
        "consistency_token": token_of(event),
    }
    assert_documented(response, STOCK, "POST")


@pytest.mark.parametrize(
    "price",
    [
        "0",
        "-1",
        "0.001",
        "12.345",
        "100000000",
        "abc",
        "",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "9" * 1500,
        None,
        [],
        {"amount": 1},
        True,
        "12,50",
        " 12 . 5 ",
    ],
)
def test_bad_prices_are_a_400(as_staff, product, price):
    with nothing_written():
        response = as_staff.post(
            PRICE.format(product_id=product.pk),
            json.dumps({"price": price}),
            content_type="application/json",
        )
    assert response.status_code == 400
    assert response.json()["price"][0]
    assert_documented(response, PRICE, "POST")


@pytest.mark.parametrize(
    "raw", [b'{"price": 1e400}', b'{"price": Infinity}', b'{"price": 1' + b"0" * 5000 + b"}"]
)
def test_huge_json_numbers_are_a_400(as_staff, product, raw):
    with nothing_written():
        response = as_staff.post(
            PRICE.format(product_id=product.pk), raw, content_type="application/json"
        )
    assert response.status_code == 400


@pytest.mark.parametrize("quantity", [-1, 1.5, "x", 2**31, 10**400, True, None, "", [3]])
def test_bad_quantities_are_a_400(as_staff, product, quantity):
    with nothing_written():
        response = as_staff.post(
            STOCK.format(product_id=product.pk),
            json.dumps({"quantity": quantity}),
            content_type="application/json",
        )
    assert response.status_code == 400
    assert response.json()["quantity"][0]
    assert_documented(response, STOCK, "POST")


@pytest.mark.parametrize(("url", "payload"), [(PRICE, {"price": "5.00"}), (STOCK, {"quantity": 3})])
def test_catalog_commands_are_for_staff_only(api, as_user, product, url, payload):
    path = url.format(product_id=product.pk)
    with nothing_written():
        anonymous = api.post(path, payload, format="json")
        not_staff = as_user.post(path, payload, format="json")
    assert anonymous.status_code == 401
    assert not_staff.status_code == 403
    assert_documented(anonymous, url, "POST")
    assert_documented(not_staff, url, "POST")


@pytest.mark.parametrize(("url", "payload"), [(PRICE, {"price": "5.00"}), (STOCK, {"quantity": 3})])
def test_catalog_commands_need_the_change_product_permission_not_just_staff(product, url, payload):
    path = url.format(product_id=product.pk)
    staff_only = APIClient()
    staff_only.force_authenticate(factories.user(is_staff=True))
    with nothing_written():
        refused = staff_only.post(path, payload, format="json")
    assert refused.status_code == 403
    assert "catalog.change_product" in refused.json()["detail"]
    assert_documented(refused, url, "POST")
    allowed = APIClient()
    allowed.force_authenticate(factories.catalog_staff())
    response = allowed.post(path, payload, format="json")
    assert response.status_code == 202
    assert_documented(response, url, "POST")


@pytest.mark.parametrize(("url", "payload"), [(PRICE, {"price": "5.00"}), (STOCK, {"quantity": 3})])
@pytest.mark.parametrize("product_id", [999_999, 2**63, 10**30])
def test_catalog_commands_on_unknown_products_are_a_404(
    as_staff, product, url, payload, product_id
):
    with nothing_written():
        response = as_staff.post(url.format(product_id=product_id), payload, format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": kernel_errors.PRODUCT_NOT_FOUND}
    assert_documented(response, url, "POST")


# Nothing a client sends makes a 5xx ---------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=6,
)


@pytest.fixture
def unthrottled(monkeypatch):
    monkeypatch.setattr(
        ScopedRateThrottle, "THROTTLE_RATES", {"reviews": "100000/min", "commands": "100000/min"}
    )


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.dictionaries(
        st.sampled_from(["product", "rating", "body", "price", "quantity", "extra"]),
        json_values,
        max_size=4,
    )
)
def test_no_payload_makes_a_5xx(as_staff, product, unthrottled, payload):
    for url in [REVIEWS, PRICE.format(product_id=product.pk), STOCK.format(product_id=product.pk)]:
        response = as_staff.post(url, json.dumps(payload), content_type="application/json")
        assert response.status_code < 500
        if response.status_code >= 400:
            assert response.json()
