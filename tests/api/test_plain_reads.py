"""A detail read with nothing to wait for skips DRF's request machinery
(``queries.apis.plain_read``); it must answer exactly as the viewset does.
A query string sends the same read through the viewset, so each answer is
compared with its twin."""

import pytest
from django.test import RequestFactory
from rest_framework.viewsets import ViewSet

from eventstore.eventlog import LogPosition
from eventstore.tokens import issue_token
from queries.apis import FOREIGN_CONSISTENCY, MALFORMED_CONSISTENCY, ProductViewSet, QueryViewSet
from tests.api.schema import assert_documented

pytestmark = pytest.mark.django_db(databases=["default", "read"])

# Headers that may differ between two answers of the same thing.
VARIABLE = {"date", "x-request-id"}  # new for every request
URLS = {
    "/api/products/42/": "/api/products/{product_id}/",
    "/api/sellers/7/": "/api/sellers/{seller_id}/",
    "/api/products/41/": "/api/products/{product_id}/",
    "/api/sellers/8/": "/api/sellers/{seller_id}/",
}


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
def test_a_plain_read_answers_as_the_viewset_does(api, detail_rows, url):
    through_drf = api.get(url + "?via=viewset")
    plain = api.get(url)

    same(plain, through_drf)
    assert_documented(plain, URLS[url], "GET")


@pytest.mark.parametrize("url", ["/api/products/42/", "/api/sellers/7/"])
def test_a_plain_conditional_read_answers_as_the_viewset_does(api, detail_rows, url):
    etag = api.get(url)["ETag"]
    for condition in ({"HTTP_IF_NONE_MATCH": etag}, {"HTTP_IF_MATCH": '"other"'}):
        same(api.get(url, **condition), api.get(url + "?via=viewset", **condition))


def test_a_plain_read_over_the_limit_answers_as_the_viewset_does(api, detail_rows, settings):
    settings.QUERY_THROTTLE_RATE = "1/d"
    api.get("/api/products/42/", REMOTE_ADDR="10.9.9.1")
    api.get("/api/products/42/", REMOTE_ADDR="10.9.9.2")

    plain = api.get("/api/products/42/", REMOTE_ADDR="10.9.9.1")
    through_drf = api.get("/api/products/42/?via=viewset", REMOTE_ADDR="10.9.9.2")

    assert plain.status_code == 429
    assert plain.json()["detail"].startswith("Request was throttled.")
    same(plain, through_drf)


def test_plain_reads_never_reach_the_viewset(api, detail_rows, no_viewset):
    for url in URLS:
        assert api.get(url).status_code in (200, 404)
        assert api.head(url).status_code in (200, 404)


def valid_token() -> str:
    return issue_token(LogPosition(5, 5))


def forged_token() -> str:
    """A well-formed token whose signature this server never made."""
    token = valid_token()
    return token[:-1] + ("A" if token[-1] != "A" else "B")


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("get", {"HTTP_X_CONSISTENCY_TOKEN": "valid"}),
        ("get", {"QUERY_STRING": "consistency_token=valid"}),
        ("get", {"QUERY_STRING": "via=viewset"}),
        ("options", {}),
        ("post", {}),
    ],
)
def test_reads_with_something_to_wait_for_go_through_the_viewset(
    api, detail_rows, no_viewset, method, extra
):
    extra = {name: value.replace("valid", valid_token()) for name, value in extra.items()}
    with pytest.raises(AssertionError, match="through DRF"):
        getattr(api, method)("/api/products/42/", **extra)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"HTTP_X_CONSISTENCY_TOKEN": "x"}, MALFORMED_CONSISTENCY),
        ({"QUERY_STRING": "consistency_token="}, MALFORMED_CONSISTENCY),
        ({"HTTP_X_CONSISTENCY_TOKEN": "forged"}, FOREIGN_CONSISTENCY),
        ({"QUERY_STRING": "consistency_token=forged"}, FOREIGN_CONSISTENCY),
    ],
)
def test_a_bad_token_is_refused_before_the_viewset(api, detail_rows, no_viewset, extra, message):
    extra = {name: value.replace("forged", forged_token()) for name, value in extra.items()}
    response = api.get("/api/products/42/", **extra)

    assert response.status_code == 400
    assert response.json() == {"consistency_token": [message]}
    assert response["Cache-Control"] == "no-store"
    assert_documented(response, URLS["/api/products/42/"], "GET")


@pytest.mark.parametrize("token", ["x", "forged"])
def test_a_bad_token_is_answered_as_the_viewset_answers_it(api, detail_rows, token):
    token = token.replace("forged", forged_token())
    # The viewset's own view, without the check in front of it.
    drf_view = ViewSet.as_view.__func__(ProductViewSet, {"get": "retrieve"})  # type: ignore[attr-defined]
    request = RequestFactory().get("/api/products/42/", HTTP_X_CONSISTENCY_TOKEN=token)
    through_drf = drf_view(request, product_id=42)
    through_drf.render()

    plain = api.get("/api/products/42/", HTTP_X_CONSISTENCY_TOKEN=token)

    assert plain.status_code == through_drf.status_code == 400
    assert plain.content == through_drf.content
    for header in ("Content-Type", "Cache-Control", "Allow"):
        assert plain[header] == through_drf[header]


def test_a_read_handed_to_the_viewset_is_counted_once(api, detail_rows, settings):
    settings.QUERY_THROTTLE_RATE = "2/d"
    address = "10.9.9.3"
    with_token = api.get(
        "/api/products/42/", HTTP_X_CONSISTENCY_TOKEN=valid_token(), REMOTE_ADDR=address
    )
    plain = api.get("/api/products/42/", REMOTE_ADDR=address)
    over = api.get("/api/products/42/", REMOTE_ADDR=address)

    assert [with_token.status_code, plain.status_code, over.status_code] == [200, 200, 429]
