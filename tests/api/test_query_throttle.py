"""Queries are rate-limited per client address, and the limit fails open."""

import secrets

import pytest

from tests.api.factories import ProductRowFactory
from tests.api.schema import assert_documented

pytestmark = pytest.mark.django_db(databases=["default", "read"])

DETAIL = "/api/products/{product_id}/"
# A day's window: a test never straddles two of them in practice.
RATE = "3/d"


def an_address() -> str:
    """A client address no other test has counted."""
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


@pytest.fixture
def limited(settings):
    settings.QUERY_THROTTLE_RATE = RATE
    ProductRowFactory(product_id=42)


@pytest.mark.parametrize("url", ["/api/products/", "/api/products/42/", "/api/sellers/1/"])
def test_a_client_over_the_rate_gets_a_429_with_retry_after(api, limited, url):
    address = an_address()
    answers = [api.get(url, REMOTE_ADDR=address) for _ in range(4)]

    assert 429 not in [answer.status_code for answer in answers[:3]]
    assert answers[3].status_code == 429
    assert 0 < int(answers[3]["Retry-After"]) <= 86400
    template = {"/api/products/42/": DETAIL, "/api/sellers/1/": "/api/sellers/{seller_id}/"}
    assert_documented(answers[3], template.get(url, url), "GET")


def test_other_clients_are_not_slowed_by_one_over_the_rate(api, limited):
    greedy = an_address()
    for _ in range(4):
        api.get(DETAIL.format(product_id=42), REMOTE_ADDR=greedy)

    assert api.get(DETAIL.format(product_id=42), REMOTE_ADDR=an_address()).status_code == 200


def test_a_made_up_forwarded_for_header_does_not_make_a_new_client(api, limited):
    address = an_address()
    answers = [
        api.get(DETAIL.format(product_id=42), REMOTE_ADDR=address, HTTP_X_FORWARDED_FOR=fake)
        for fake in (an_address(), an_address(), an_address(), an_address())
    ]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]


def test_behind_a_trusted_proxy_the_address_it_saw_is_the_client(api, limited, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}  # TRUSTED_PROXY_COUNT
    proxy = an_address()
    first, second = an_address(), an_address()

    for _ in range(3):
        api.get(DETAIL.format(product_id=42), REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=first)
    over = api.get(
        DETAIL.format(product_id=42), REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"spoofed, {first}"
    )
    other = api.get(DETAIL.format(product_id=42), REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=second)

    assert over.status_code == 429
    assert other.status_code == 200


@pytest.mark.parametrize("url", ["/products/", "/products/42/"])
def test_the_pages_share_the_limit(client, limited, url):
    address = an_address()
    answers = [client.get(url, REMOTE_ADDR=address) for _ in range(4)]

    assert [answer.status_code for answer in answers[:3]] == [200, 200, 200]
    assert answers[3].status_code == 429
    assert int(answers[3]["Retry-After"]) >= 1
    assert b"Too many requests" in answers[3].content


def test_without_its_cache_the_limit_fails_open(api, limited, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "kernel.cache.FailOpenRedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.1, "socket_timeout": 0.1},
        }
    }
    address = an_address()
    answers = [api.get(DETAIL.format(product_id=42), REMOTE_ADDR=address) for _ in range(5)]

    assert [answer.status_code for answer in answers] == [200] * 5
