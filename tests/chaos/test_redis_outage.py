"""Redis stopped for a while and started again, twice, under a steady stream
of commands: commands keep succeeding (services and HTTP), nothing is lost,
and the Celery workers resume consuming on their own."""

import random
import time

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Product
from eventstore import eventlog
from eventstore.models import Event
from tests import factories
from tests.chaos import tally
from tests.chaos.verify import assert_no_drift
from tests.projections.history import Writer, make_users, seed_catalog
from tests.projections.processes import (
    process_env,
    running,
    start_beat,
    start_worker,
    wait_until_caught_up,
    wait_until_passed,
)

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.postgres,
    pytest.mark.broker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]

OUTAGES = 2
OUTAGE_SECONDS = 3.0


def api_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_commands_go_on_while_redis_is_down_and_the_workers_resume(broker, tmp_path, settings):
    # The throttle counts live in this Redis too: its outage must not 500 a command.
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "BACKEND": "kernel.cache.FailOpenRedisCache",
            "LOCATION": broker.url,
        }
    }
    rng = random.Random(31)
    users = make_users()
    seed_catalog(rng, products=20)
    model = get_user_model()
    reviewers = [model.objects.create_user(username=f"http{n}") for n in range(12)]
    staff = api_client(factories.catalog_staff(username="http-staff"))
    product_ids = list(Product.objects.values_list("pk", flat=True))
    env = process_env(broker.url)
    worker = start_worker(env, "steady", tmp_path / "worker.log")
    beat = start_beat(env, tmp_path)
    http_commands = 0
    slowest_http = 0.0
    with running(worker, beat):
        writer = Writer(seed=32, users=users)
        writer.start()
        wait_until_passed(eventlog.head(), 60, "the worker never caught up")
        for outage in range(OUTAGES):
            time.sleep(1.5)
            broker.stop()
            events_before = Event.objects.count()
            ends = time.monotonic() + OUTAGE_SECONDS
            while time.monotonic() < ends:
                reviewer = reviewers.pop()
                started = time.monotonic()
                on_sale = list(  # the writer takes products off sale now and then
                    Product.objects.filter(pk__in=product_ids, is_active=True).values_list(
                        "pk", flat=True
                    )
                )
                review = api_client(reviewer).post(
                    "/api/reviews/",
                    {"product": rng.choice(on_sale), "rating": 4, "body": "Still works."},
                    format="json",
                )
                price = staff.post(
                    f"/api/products/{rng.choice(product_ids)}/price/",
                    {"price": f"{rng.randint(100, 9999) / 100:.2f}"},
                    format="json",
                )
                slowest_http = max(slowest_http, time.monotonic() - started)
                assert (review.status_code, price.status_code) == (201, 202), (
                    review.content,
                    price.content,
                )
                http_commands += 2
                time.sleep(0.5)
            during = Event.objects.count() - events_before
            assert during > 10, f"outage {outage}: only {during} events while Redis was down"
            head_at_restart = eventlog.head()
            broker.start()
            # Nobody but the Celery worker projects here: this is it consuming again.
            wait_until_passed(head_at_restart, 30, "the worker did not resume after Redis")
            tally.count("Redis outages (stopped and restarted)")
        writer.finish()
        wait_until_caught_up(60)
    assert writer.slowest < 2.0, f"a command hung for {writer.slowest:.2f} s on the dead broker"
    assert slowest_http < 2.0, f"an HTTP command hung for {slowest_http:.2f} s"
    assert_no_drift()
    tally.count("HTTP commands answered during Redis outages", http_commands)
