"""A detail read with nothing to wait for skips DRF's request machinery
(``queries.apis.plain_read``); it must answer exactly as the viewset does.
A query string sends the same read through the viewset, so each answer is
compared with its twin."""

import pytest

from queries.apis import QueryViewSet
from tests.api.factories import ProductRowFactory, SellerRowFactory, set_checkpoints
from tests.api.schema import assert_documented

pytestmark = pytest.mark.django_db(databases=["default", "read"])

# Headers that may differ between two answers of the same thing.
VARIABLE = {"date"}
URLS = {
    "/api/products/42/": "/api/products/{product_id}/",
    "/api/sellers/7/": "/api/sellers/{seller_id}/",
    "/api/products/41/": "/api/products/{product_id}/",
    "/api/sellers/8/": "/api/sellers/{seller_id}/",
}


@pytest.fixture
def rows():
    set_checkpoints("products", 10, 10)
    set_checkpoints("sellers", 10, 10)
    ProductRowFactory(product_id=42, seller_id=7)
    SellerRowFactory(seller_id=7)


def same(plain, through_drf) -> None:
    assert plain.status_code == through_drf.status_code
    assert plain.content == through_drf.content
    headers = {k.lower(): v for k, v in plain.headers.items() if k.lower() not in VARIABLE}
    other = {k.lower(): v for k, v in through_drf.headers.items() if k.lower() not in VARIABLE}
    assert headers == other


@pytest.fixture
def no_viewset(monkeypatch):
    """Any request that reaches the viewset fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a plain read went through DRF")

    monkeypatch.setattr(QueryViewSet, "dispatch", refuse)


@pytest.mark.parametrize("url", list(URLS))
def test_a_plain_read_answers_as_the_viewset_does(api, rows, url):
    through_drf = api.get(url + "?via=viewset")
    plain = api.get(url)

    same(plain, through_drf)
    assert_documented(plain, URLS[url], "GET")


@pytest.mark.parametrize("url", ["/api/products/42/", "/api/sellers/7/"])
def test_a_plain_conditional_read_answers_as_the_viewset_does(api, rows, url):
    etag = api.get(url)["ETag"]
    for condition in ({"HTTP_IF_NONE_MATCH": etag}, {"HTTP_IF_MATCH": '"other"'}):
        same(api.get(url, **condition), api.get(url + "?via=viewset", **condition))


def test_a_plain_read_over_the_limit_answers_as_the_viewset_does(api, rows, settings):
    settings.QUERY_THROTTLE_RATE = "1/d"
    api.get("/api/products/42/", REMOTE_ADDR="10.9.9.1")
    api.get("/api/products/42/", REMOTE_ADDR="10.9.9.2")

    plain = api.get("/api/products/42/", REMOTE_ADDR="10.9.9.1")
    through_drf = api.get("/api/products/42/?via=viewset", REMOTE_ADDR="10.9.9.2")

    assert plain.status_code == 429
    assert plain.json()["detail"].startswith("Request was throttled.")
    same(plain, through_drf)


def test_plain_reads_never_reach_the_viewset(api, rows, no_viewset):
    for url in URLS:
        assert api.get(url).status_code in (200, 404)
        assert api.head(url).status_code in (200, 404)


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("get", {"HTTP_X_CONSISTENCY_TOKEN": "x"}),
        ("get", {"QUERY_STRING": "consistency_token=x"}),
        ("options", {}),
        ("post", {}),
    ],
)
def test_reads_with_something_to_check_go_through_the_viewset(api, rows, no_viewset, method, extra):
    with pytest.raises(AssertionError, match="through DRF"):
        getattr(api, method)("/api/products/42/", **extra)
