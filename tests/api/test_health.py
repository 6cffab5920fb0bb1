import datetime as dt

import pytest
from django.utils import timezone

from projections.engine import project_all
from projections.models import Event
from tests import factories

both_databases = pytest.mark.django_db(databases=["default", "read"])


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
    five_minutes_ago = timezone.now() - dt.timedelta(minutes=5)
    for stream_type, event_type in (("seller", "SellerRegistered"), ("product", "ProductCreated")):
        # Not applied by any projector here: only their number and age count.
        Event.objects.create(
            stream_type=stream_type,
            stream_id=1,
            event_type=event_type,
            version=1,
            payload={},
            occurred_at=five_minutes_ago,
        )
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
