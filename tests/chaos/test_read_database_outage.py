"""The read database unreachable for a while, under a steady stream of commands.

Every process (run_projectors, a Celery worker, gunicorn) reaches the read
database through a proxy of the test's own, which the test cuts and restores.
Meanwhile commands keep succeeding, queries answer 503 with ``Retry-After``,
``/healthz`` says which database is down, run_projectors backs off without
dying, and once the database is back everything catches up exactly.
"""

import json
import random
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from rest_framework.authtoken.models import Token

from catalog.models import Product
from eventstore import eventlog
from tests.chaos import tally
from tests.chaos.proxy import CuttableProxy
from tests.chaos.verify import assert_no_drift
from tests.projections.history import Writer, make_users, seed_catalog
from tests.projections.processes import (
    database_url,
    free_port,
    http,
    kill,
    process_env,
    start_beat,
    start_gunicorn,
    start_run_projectors,
    start_worker,
    wait_for_log,
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

OUTAGE_SECONDS = 6.0


def on_sale(rng: random.Random) -> int:
    """A product the writer has not taken off sale (a review of one would be refused)."""
    return rng.choice(list(Product.objects.filter(is_active=True).values_list("pk", flat=True)))


def review_on_sale(site: str, rng: random.Random, token: str, text: str) -> tuple[int, bytes, int]:
    """POST a review of a product on sale; the answer and the product. The
    writer may take the chosen product off sale before the POST lands, and
    the 409 is then the right answer: such a refusal picks another product,
    a few times at most."""
    for _ in range(5):
        product = on_sale(rng)
        status, _, body = http(
            "POST",
            f"{site}/api/reviews/",
            {"product": product, "rating": 3, "body": text},
            {"Authorization": f"Token {token}"},
        )
        if status != 409 or b"not on sale" not in body:
            break
    return status, body, product


@pytest.fixture
def read_proxy():
    settings = connections["read"].settings_dict
    proxy = CuttableProxy(settings.get("HOST") or "127.0.0.1", int(settings.get("PORT") or 5432))
    proxy.start()
    yield proxy
    proxy.stop()


def test_read_database_outage(broker, read_proxy, tmp_path):
    rng = random.Random(61)
    users = make_users()
    seed_catalog(rng, products=16)
    product_ids = list(Product.objects.values_list("pk", flat=True))
    reviewers = [
        Token.objects.create(user=get_user_model().objects.create_user(username=f"r{n}")).key
        for n in range(40)
    ]
    env = process_env(
        broker.url,
        READ_DATABASE_URL=database_url("read", port=read_proxy.port),
        REVIEW_THROTTLE_RATE="1000/min",
    )
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    loop_log = tmp_path / "run_projectors.log"
    processes = [
        start_run_projectors(env, loop_log, "--threads", "2"),
        start_worker(env, "reader", tmp_path / "worker.log"),
        start_beat(env, tmp_path),
        start_gunicorn(env, port, tmp_path / "gunicorn.log", workers=1),
    ]
    loop = processes[0]
    writer = Writer(seed=62, users=users)
    try:
        wait_for_log(loop_log, "Projecting")
        writer.start()
        wait_until_passed(eventlog.head(), 60, "the projectors never caught up")
        product = rng.choice(product_ids)
        assert http("GET", f"{site}/api/products/{product}/")[0] == 200

        read_proxy.cut()
        tally.count("read-database outages")
        answers: dict[str, set[int]] = {"query": set(), "page": set(), "health": set()}
        commands = 0
        ends = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < ends:
            status, headers, _ = http("GET", f"{site}/api/products/{rng.choice(product_ids)}/")
            answers["query"].add(status)
            assert status != 503 or headers.get("Retry-After") == "5"
            answers["page"].add(http("GET", f"{site}/products/{rng.choice(product_ids)}/")[0])
            status, _, body = http("GET", f"{site}/healthz")
            answers["health"].add(status)
            assert status == 200 or b"database_read" in body
            status, body, _ = review_on_sale(site, rng, reviewers.pop(), "Written in the dark.")
            assert status == 201, body
            commands += 1
            assert loop.poll() is None, loop_log.read_text()[-3000:]
            time.sleep(0.3)
        assert answers == {"query": {503}, "page": {503}, "health": {503}}
        assert read_proxy.refused > 0, "nobody tried the read database during the outage"
        head_at_restore = eventlog.head()
        read_proxy.restore()

        wait_until_passed(head_at_restore, 30, "the projectors did not catch up after the outage")
        # Its back-off is at most 5 s: by then it has tried again and got through.
        wait_for_log(loop_log, "reachable again", timeout=15)
        assert loop.poll() is None, loop_log.read_text()[-3000:]
        log = loop_log.read_text()
        attempts = log.count("A database is unreachable")
        # Backing off (0.5 s doubling to 5 s), not a crash loop or a busy loop.
        assert 1 <= attempts <= OUTAGE_SECONDS / 0.5, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        # Read your own write: the last command's token, answered fresh. The
        # writer stops first: it hides and removes reviews at random, ours too.
        writer.finish()
        status, body, product = review_on_sale(site, rng, reviewers.pop(), "Back in the light.")
        assert status == 201, body
        token = json.loads(body)["consistency_token"]
        status, headers, body = http(
            "GET", f"{site}/api/products/{product}/", headers={"X-Consistency-Token": token}
        )
        assert status == 200
        assert "X-Read-Model-Stale" not in headers
        assert b"Back in the light." in body
        wait_until_caught_up(60)
    finally:
        writer.stop.set()
        for process in processes:
            kill(process)
    assert_no_drift()
    tally.count("HTTP commands answered while the read database was down", commands)
