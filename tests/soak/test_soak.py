"""Mixed load against gunicorn (2 workers, 127.0.0.1 only) with run_projectors
running, for SOAK_SECONDS (30 by default; CI runs this short form): about 100
reads to 1 write, zero errors, bounded projector lag, and zero drift at the end.
"""

import json
import os
import random
import statistics
import threading
import time
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from catalog.models import Product, Seller
from tests import factories
from tests.chaos.verify import assert_no_drift
from tests.projections.history import seed_catalog
from tests.projections.processes import (
    free_port,
    http,
    kill,
    process_env,
    start_gunicorn,
    start_run_projectors,
    wait_for_log,
    wait_until_caught_up,
)
from tests.soak.figures import figures

pytestmark = [
    pytest.mark.soak,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "30"))
READERS = 4
READS_PER_WRITE = 100
MAX_LAG_SECONDS = 5.0


class Load:
    def __init__(self, site: str, product_ids: list[int], seller_ids: list[int]) -> None:
        self.site = site
        self.product_ids = product_ids
        self.seller_ids = seller_ids
        self.lock = threading.Lock()
        self.reads = 0
        self.writes = 0
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def timed(self, method: str, path: str, expected: set[int], **kwargs) -> bytes:
        started = time.perf_counter()
        status, _, body = http(method, self.site + path, **kwargs)
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latencies.append(elapsed)
            if status not in expected:
                self.errors.append(f"{method} {path}: {status} {body[:200]!r}")
        return body

    def read(self, rng: random.Random) -> None:
        roll = rng.random()
        if roll < 0.45:
            self.timed("GET", f"/api/products/{rng.choice(self.product_ids)}/", {200})
        elif roll < 0.65:
            query = rng.choice(
                ["", "?ordering=price", "?in_stock=true", "?min_rating=3", "?search=Product"]
            )
            self.timed("GET", f"/api/products/{query}", {200})
        elif roll < 0.90:
            self.timed("GET", f"/products/{rng.choice(self.product_ids)}/", {200})
        else:
            self.timed("GET", f"/api/sellers/{rng.choice(self.seller_ids)}/", {200})
        with self.lock:
            self.reads += 1

    def reader(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            self.read(rng)

    def writer(self, reviewers: list[str], staff: str, seed: int) -> None:
        rng = random.Random(seed)
        pairs = [(token, pk) for token in reviewers for pk in self.product_ids]
        rng.shuffle(pairs)
        while not self.stop.is_set():
            with self.lock:
                due = self.reads >= (self.writes + 1) * READS_PER_WRITE
            if not due:
                time.sleep(0.01)
                continue
            if rng.random() < 0.6 and pairs:
                token, product = pairs.pop()
                body = self.timed(
                    "POST",
                    "/api/reviews/",
                    {201},
                    body={"product": product, "rating": rng.randint(1, 5), "body": "Soak test."},
                    headers={"Authorization": f"Token {token}"},
                )
            else:
                product = rng.choice(self.product_ids)
                body = self.timed(
                    "POST",
                    f"/api/products/{product}/price/",
                    {202},
                    body={"price": str(Decimal(rng.randint(100, 99999)) / 100)},
                    headers={"Authorization": f"Token {staff}"},
                )
            with self.lock:
                self.writes += 1
            # Read your own write: the next read of that product waits for it.
            written = json.loads(body) if body else {}
            if "consistency_token" in written:
                self.timed(
                    "GET",
                    f"/api/products/{product}/",
                    {200},
                    headers={"X-Consistency-Token": written["consistency_token"]},
                )


def test_mixed_load_against_gunicorn_with_zero_errors_bounded_lag_and_no_drift(tmp_path):
    rng = random.Random(101)
    seed_catalog(rng, sellers=5, products=60)
    users = get_user_model().objects
    reviewers = [
        Token.objects.create(user=users.create_user(username=f"soak{n}")).key for n in range(20)
    ]
    staff = Token.objects.create(user=factories.catalog_staff(username="soak-staff")).key
    product_ids = list(Product.objects.values_list("pk", flat=True))
    seller_ids = list(Seller.objects.values_list("pk", flat=True))
    # No broker: run_projectors projects, and each web worker counts throttles alone.
    env = process_env("", REVIEW_THROTTLE_RATE="100000/min", COMMAND_THROTTLE_RATE="100000/min")
    port = free_port()
    loop_log = tmp_path / "run_projectors.log"
    loop = start_run_projectors(env, loop_log)
    server = start_gunicorn(env, port, tmp_path / "gunicorn.log", workers=2)
    load = Load(f"http://127.0.0.1:{port}", product_ids, seller_ids)
    lags: list[float] = []
    behind: list[int] = []
    try:
        wait_for_log(loop_log, "Projecting")
        wait_until_caught_up(60)
        threads = [
            threading.Thread(target=load.reader, args=(n,), daemon=True) for n in range(READERS)
        ]
        threads.append(
            threading.Thread(target=load.writer, args=(reviewers, staff, 7), daemon=True)
        )
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while time.monotonic() - started < SOAK_SECONDS:
            time.sleep(1)
            status, _, body = http("GET", f"{load.site}/healthz")
            health = json.loads(body)
            if status != 200:
                load.errors.append(f"/healthz {status}: {health['reasons']}")
                continue
            lags.append(health["checks"]["projector_products"]["seconds_behind"])
            behind.append(health["checks"]["projector_products"]["events_behind"])
        load.stop.set()
        for thread in threads:
            thread.join(30)
        elapsed = time.monotonic() - started
        wait_until_caught_up(60)
        assert loop.poll() is None
        assert server.poll() is None
    finally:
        load.stop.set()
        kill(server)
        kill(loop)
    latencies = sorted(load.latencies)
    figures.update(
        {
            "seconds": round(elapsed, 1),
            "requests": len(latencies),
            "requests per second": round(len(latencies) / elapsed, 1),
            "reads : writes": f"{load.reads} : {load.writes}",
            "p50 latency ms": round(1000 * statistics.median(latencies), 1),
            "p99 latency ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1),
            "max projector lag s": max(lags, default=0.0),
            "max events behind": max(behind, default=0),
            "errors": len(load.errors),
        }
    )
    assert load.errors == [], load.errors[:10]
    assert load.writes >= 5, f"only {load.writes} writes: the load did not run"
    assert load.reads >= 90 * load.writes
    assert max(lags) <= MAX_LAG_SECONDS, f"the projectors fell {max(lags)} s behind"
    assert_no_drift()
