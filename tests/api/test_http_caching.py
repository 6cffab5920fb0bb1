"""What caches may do with each query answer (queries/caching.py): plain
reads are public and revalidated with their strong ETag, shared caches may
keep them for ``QUERY_SHARED_MAX_AGE_SECONDS``; a read that carried a
consistency token is one client's; errors and stale answers are never kept."""

import pytest
from django.db.models import F

from eventstore.eventlog import LogPosition
from eventstore.tokens import issue_token
from tests.api.factories import ProductRowFactory

pytestmark = pytest.mark.django_db(databases=["default", "read"])

PLAIN = "public, max-age=0, s-maxage=1, stale-while-revalidate=5"
READS = ["/api/products/42/", "/api/sellers/7/", "/api/products/"]


def vary(response) -> set[str]:
    return {part.strip() for part in response.get("Vary", "").split(",") if part.strip()}


@pytest.mark.parametrize("url", READS)
def test_a_plain_read_is_public_and_varies_on_the_token_header(api, detail_rows, url):
    response = api.get(url)

    assert response.status_code == 200
    assert response["Cache-Control"] == PLAIN
    assert "X-Consistency-Token" in vary(response)


def test_the_shared_cache_times_are_settings(api, detail_rows, settings):
    settings.QUERY_SHARED_MAX_AGE_SECONDS = 30
    settings.QUERY_STALE_WHILE_REVALIDATE_SECONDS = 300
    assert (
        api.get("/api/products/42/")["Cache-Control"]
        == "public, max-age=0, s-maxage=30, stale-while-revalidate=300"
    )

    settings.QUERY_SHARED_MAX_AGE_SECONDS = 0
    settings.QUERY_STALE_WHILE_REVALIDATE_SECONDS = 0
    assert api.get("/api/products/42/")["Cache-Control"] == "public, max-age=0, no-cache"


@pytest.mark.parametrize("url", ["/api/products/42/", "/api/sellers/7/"])
def test_a_304_says_the_same_as_the_answer_it_stands_for(api, detail_rows, url):
    first = api.get(url)
    again = api.get(url, HTTP_IF_NONE_MATCH=first["ETag"])

    assert again.status_code == 304
    assert again["ETag"] == first["ETag"]
    assert again["Cache-Control"] == first["Cache-Control"]


@pytest.mark.parametrize("url", READS)
def test_a_read_with_a_consistency_token_is_private(api, detail_rows, url):
    applied = issue_token(LogPosition(5, 5))
    by_header = api.get(url, HTTP_X_CONSISTENCY_TOKEN=applied)
    by_query = api.get(url, {"consistency_token": applied})

    for response in (by_header, by_query):
        assert response.status_code == 200
        assert "X-Read-Model-Stale" not in response
        assert response["Cache-Control"] == "private, no-cache"


def test_a_stale_answer_is_never_kept(api, detail_rows, settings):
    settings.CONSISTENCY_WAIT_SECONDS = 0.05
    ahead = issue_token(LogPosition(50, 50))

    response = api.get("/api/products/42/", HTTP_X_CONSISTENCY_TOKEN=ahead)

    assert response["X-Read-Model-Stale"] == "true"
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/products/41/", 404),
        ("/api/sellers/8/", 404),
        ("/api/products/?min_rating=9", 400),
        ("/api/products/42/?consistency_token=forged", 400),
    ],
)
def test_an_error_is_never_kept(api, detail_rows, url, status):
    response = api.get(url)

    assert response.status_code == status
    assert response["Cache-Control"] == "no-store"


def test_a_rate_limited_answer_is_never_kept(api, detail_rows, settings):
    settings.QUERY_THROTTLE_RATE = "1/d"
    address = "10.250.250.250"
    api.get("/api/products/42/", REMOTE_ADDR=address)

    response = api.get("/api/products/42/", REMOTE_ADDR=address)

    assert response.status_code == 429
    assert response["Cache-Control"] == "no-store"


def test_the_page_has_its_own_etag_and_revalidates_to_a_304(client, detail_rows):
    page = client.get("/products/42/")
    api_etag = client.get("/api/products/42/")["ETag"]

    assert page.status_code == 200
    assert page["ETag"].startswith('"')
    assert page["ETag"] != api_etag
    assert page["Cache-Control"] == PLAIN
    assert "Cookie" in vary(page)

    again = client.get("/products/42/", HTTP_IF_NONE_MATCH=page["ETag"])
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == page["ETag"]


def test_the_page_etag_changes_with_the_row(client, detail_rows):
    first = client.get("/products/42/")
    ProductRowFactory._meta.model.objects.using("read").filter(product_id=42).update(
        name="Grinder", last_position=F("last_position") + 1
    )

    response = client.get("/products/42/", HTTP_IF_NONE_MATCH=first["ETag"])

    assert response.status_code == 200
    assert response["ETag"] != first["ETag"]
    assert b"Grinder" in response.content
    assert b"Grinder" not in first.content


def test_a_signed_in_page_is_private_and_has_no_etag(client, detail_rows, user):
    client.force_login(user)
    response = client.get("/products/42/")

    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-cache"
    assert "ETag" not in response
    assert "Cookie" in vary(response)


def test_a_query_string_does_not_fill_the_page_cache(client, detail_rows):
    from queries.views import pages

    client.get("/products/42/?utm=1")
    assert len(pages._entries) == 0
    client.get("/products/42/")
    assert len(pages._entries) == 1
