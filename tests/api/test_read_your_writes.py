"""A client that sends back the command's consistency token reads its own write."""

import time

import pytest
from rest_framework.test import APIClient

from projections.registry import project_all
from tests import factories
from tests.api.projector import projector_running

pytestmark = pytest.mark.django_db(databases=["default", "read"], transaction=True)
REVIEW_BODY = "Brews a lovely cup."


@pytest.fixture
def product():
    product = factories.product(price="30.00", stock=10)
    project_all()
    return product


def signed_in(user):
    client = APIClient()
    client.force_login(user)
    return client


def post_review(user, product):
    response = signed_in(user).post(
        "/api/reviews/", {"product": product.pk, "rating": 4, "body": REVIEW_BODY}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()["consistency_token"]


def test_with_a_running_projector_the_read_includes_the_review(user, product):
    with projector_running(interval=0.3):
        token = post_review(user, product)
        started = time.monotonic()
        response = APIClient().get(f"/api/products/{product.pk}/", HTTP_X_CONSISTENCY_TOKEN=token)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert "X-Read-Model-Stale" not in response
    body = response.json()
    assert body["review_count"] == 1
    assert body["avg_rating"] == "4.00"
    assert body["rating_histogram"] == [0, 0, 0, 1, 0]
    assert [review["body"] for review in body["recent_reviews"]] == [REVIEW_BODY]
    assert elapsed < 1.5


def test_with_a_running_projector_the_list_and_the_seller_include_it_too(user, product):
    with projector_running(interval=0.3):
        token = post_review(user, product)
        listed = APIClient().get("/api/products/", {"consistency_token": token})
        seller = APIClient().get(
            f"/api/sellers/{product.seller_id}/", HTTP_X_CONSISTENCY_TOKEN=token
        )
    assert "X-Read-Model-Stale" not in listed
    assert listed.json()["results"][0]["review_count"] == 1
    assert "X-Read-Model-Stale" not in seller
    assert seller.json()["review_count"] == 1


def test_with_a_running_projector_staff_see_their_new_price(staff_user, product):
    with projector_running(interval=0.3):
        response = signed_in(staff_user).post(
            f"/api/products/{product.pk}/price/", {"price": "27.50"}, format="json"
        )
        token = response.json()["consistency_token"]
        detail = APIClient().get(f"/api/products/{product.pk}/", HTTP_X_CONSISTENCY_TOKEN=token)
    assert "X-Read-Model-Stale" not in detail
    assert detail.json()["price"] == "27.50"
    assert detail.json()["price_history"][0]["price"] == "27.50"


def test_with_the_projector_stopped_the_read_answers_in_time_and_says_stale(
    user, product, settings
):
    settings.CONSISTENCY_WAIT_SECONDS = 0.5
    token = post_review(user, product)
    started = time.monotonic()
    response = APIClient().get(f"/api/products/{product.pk}/", HTTP_X_CONSISTENCY_TOKEN=token)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response["X-Read-Model-Stale"] == "true"
    assert response.json()["review_count"] == 0
    assert 0.5 <= elapsed < 1.2

    project_all()
    response = APIClient().get(f"/api/products/{product.pk}/", HTTP_X_CONSISTENCY_TOKEN=token)
    assert "X-Read-Model-Stale" not in response
    assert response.json()["review_count"] == 1
