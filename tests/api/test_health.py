import datetime as dt
import threading

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from eventstore.models import Event
from projections.registry import project_all
from queries import health
from tests import factories
from tests.support import record_old_events

both_databases = pytest.mark.django_db(databases=["default", "read"])
OUTSIDE = "203.0.113.9"  # a client address from outside (TEST-NET-3)


@pytest.fixture(autouse=True)
def _fresh_lag(settings):
    """Each test reads the lag afresh; the tests of the cache set its time themselves."""
    settings.HEALTH_LAG_CACHE_SECONDS = 0
    health.lag_cache.clear()
    yield
    health.lag_cache.clear()


@both_databases
def test_healthy(client, settings):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["reasons"] == []
    assert body["checks"]["database_default"]["ok"]
    assert body["checks"]["database_read"]["ok"]
    assert body["checks"]["projector_products"]["events_behind"] == 0
    assert body["checks"]["projector_sellers"]["seconds_behind"] == 0
    assert ("broker" in body["checks"]) == bool(settings.CELERY_BROKER_URL)
    assert response["Cache-Control"].startswith("max-age=0")


@both_databases
def test_a_projector_far_behind_is_unhealthy(client, settings):
    settings.HEALTH_MAX_LAG_SECONDS = 60
    record_old_events(2, age=dt.timedelta(minutes=5))  # a seller's and a product's
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["projector_products"]["events_behind"] == 2  # seller, product
    assert body["checks"]["projector_products"]["seconds_behind"] >= 300
    assert any(reason.startswith("projector_products: ") for reason in body["reasons"])
    assert any(reason.startswith("projector_sellers: ") for reason in body["reasons"])


@pytest.mark.django_db(databases=["default", "read"], transaction=True)
def test_a_projector_a_little_behind_is_healthy_and_caught_up_is_at_zero(client):
    factories.product()
    behind = client.get("/healthz").json()["checks"]["projector_products"]
    assert behind["events_behind"] == 2
    assert behind["seconds_behind"] < 60
    project_all()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["projector_products"]["events_behind"] == 0


@both_databases
def test_an_unreachable_broker_is_unhealthy(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["reasons"] == ["broker: ConnectionError"]
    assert response.json()["checks"]["broker"]["ms"] < 2000


@both_databases
def test_health_only_answers_reads(client):
    assert client.post("/healthz").status_code == 405


# Details for staff and internal callers only ----------------------------------


@both_databases
def test_anonymous_callers_from_outside_get_the_status_alone(client, settings):
    healthy = client.get("/healthz", REMOTE_ADDR=OUTSIDE)
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    unhealthy = client.get("/healthz", REMOTE_ADDR=OUTSIDE)

    assert healthy.status_code == 200
    assert healthy.json() == {"status": "ok"}
    assert unhealthy.status_code == 503
    assert unhealthy.json() == {"status": "unhealthy"}


@both_databases
def test_staff_from_outside_get_the_details_and_other_users_do_not(client, django_user_model):
    shopper = django_user_model.objects.create_user(username="shopper")
    staff = django_user_model.objects.create_user(username="ops", is_staff=True)

    client.force_login(shopper)
    as_shopper = client.get("/healthz", REMOTE_ADDR=OUTSIDE).json()
    client.force_login(staff)
    as_staff = client.get("/healthz", REMOTE_ADDR=OUTSIDE).json()

    assert as_shopper == {"status": "ok"}
    assert as_staff["reasons"] == []
    assert as_staff["checks"]["projector_products"]["events_behind"] == 0


@both_databases
@pytest.mark.parametrize(
    ("address", "internal"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.1.2.3", False),
        (OUTSIDE, False),
        ("2001:db8::1", False),
    ],
)
def test_loopback_callers_are_internal_by_default(client, address, internal):
    body = client.get("/healthz", REMOTE_ADDR=address).json()
    assert ("checks" in body) is internal


@both_databases
def test_the_internal_networks_are_a_setting(client, settings):
    settings.HEALTH_INTERNAL_NETWORKS = ["10.0.0.0/8", "fd00::/8"]
    assert "checks" in client.get("/healthz", REMOTE_ADDR="10.1.2.3").json()
    assert "checks" in client.get("/healthz", REMOTE_ADDR="fd00::7").json()
    assert "checks" not in client.get("/healthz", REMOTE_ADDR="127.0.0.1").json()


@both_databases
def test_a_forged_forwarded_for_header_gets_no_details(client, settings):
    forged = client.get("/healthz", REMOTE_ADDR=OUTSIDE, HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert forged.json() == {"status": "ok"}
    # Behind one trusted proxy, only the address that proxy appended counts.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = "127.0.0.1"
    forged = client.get("/healthz", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"127.0.0.1, {OUTSIDE}")
    internal = client.get("/healthz", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"{OUTSIDE}, ::1")
    assert forged.json() == {"status": "ok"}
    assert "checks" in internal.json()


# The lag query is bounded -------------------------------------------------------


def lag_queries(captured):
    return [query for query in captured if Event._meta.db_table in query["sql"]]


@both_databases
def test_repeated_calls_within_the_cache_window_run_the_lag_query_once(client, settings):
    settings.HEALTH_LAG_CACHE_SECONDS = 60
    factories.product()
    with CaptureQueriesContext(connections["default"]) as captured:
        answers = [client.get("/healthz", REMOTE_ADDR=OUTSIDE) for _ in range(20)]
        answers.append(client.get("/healthz"))
    assert {answer.status_code for answer in answers} == {200}
    assert len(lag_queries(captured)) == 1, "one statement for both projectors, once"
    assert answers[-1].json()["checks"]["projector_products"]["events_behind"] == 2
    health.lag_cache.clear()
    with CaptureQueriesContext(connections["default"]) as captured:
        client.get("/healthz")
    assert len(lag_queries(captured)) == 1, "after the window, the next call reads afresh"


@pytest.mark.django_db(databases=["default", "read"], transaction=True)
def test_concurrent_calls_run_the_lag_query_once(settings):
    settings.HEALTH_LAG_CACHE_SECONDS = 60
    factories.product()
    callers = 8
    ready = threading.Barrier(callers)
    counted: list[int] = []
    statuses: list[int] = []

    def call() -> None:
        def count(execute, sql, params, many, context):
            if Event._meta.db_table in sql:
                counted.append(1)
            return execute(sql, params, many, context)

        with connections["default"].execute_wrapper(count):
            ready.wait(timeout=10)
            statuses.append(Client().get("/healthz").status_code)
        connections.close_all()

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * callers
    assert len(counted) == 1


@both_databases
def test_the_count_stops_at_the_cap(client, settings):
    settings.HEALTH_LAG_COUNT_CAP = 5
    settings.HEALTH_MAX_LAG_SECONDS = 60
    record_old_events(8, age=dt.timedelta(minutes=5))

    body = client.get("/healthz").json()

    products = body["checks"]["projector_products"]
    assert products["events_behind"] == 5
    assert products["events_behind_capped"] is True
    assert products["seconds_behind"] >= 300
    assert any(
        reason.startswith("projector_products: 30") and "s behind (5+ events)" in reason
        for reason in body["reasons"]
    )
    settings.HEALTH_LAG_COUNT_CAP = 8
    health.lag_cache.clear()
    exact = client.get("/healthz").json()["checks"]["projector_products"]
    assert (exact["events_behind"], exact["events_behind_capped"]) == (8, False)
