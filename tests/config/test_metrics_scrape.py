"""``/metrics`` as Prometheus scrapes it: gunicorn with 2 workers and a
``run_projectors`` process sharing one ``PROMETHEUS_MULTIPROC_DIR``, real
PostgreSQL. After a few commands every metric is there with the values those
commands explain; a poison event halts the product partitions and the halted,
parked and lag figures say so."""

import json
import signal
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from eventstore.models import Event
from eventstore.recording import command_transaction
from projections.models import Checkpoint
from projections.projectors.product_store import partition_of
from tests import factories
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

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]

PRICE_ROUTE = "api/products/<int:product_id>/price/"
PARTITIONS = 4


class Scrape:
    """One scrape: each sample's value by name and labels."""

    def __init__(self, text: str) -> None:
        self.values: dict[str, dict[frozenset[tuple[str, str]], float]] = defaultdict(dict)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.values[sample.name][frozenset(sample.labels.items())] = sample.value

    def get(self, name: str, **labels: str) -> float:
        return self.values[name].get(frozenset(labels.items()), 0.0)

    def total(self, name: str, **labels: str) -> float:
        wanted = set(labels.items())
        return sum(value for key, value in self.values[name].items() if wanted <= key)


def scrape(site: str) -> Scrape:
    status, headers, body = http("GET", f"{site}/metrics")
    assert status == 200, body[:300]
    assert headers["Content-Type"].startswith("text/plain; version=")
    return Scrape(body.decode())


def wait_for(site: str, check, why: str, timeout: float = 30.0) -> Scrape:
    deadline = time.monotonic() + timeout
    while True:
        figures = scrape(site)
        if check(figures):
            return figures
        assert time.monotonic() < deadline, why
        time.sleep(0.2)


def record_poison(product_id: int) -> None:
    """A price change of a product nobody created: the product projector's
    handler fails on it (there are no facts to change), every time."""
    with command_transaction():
        Event.objects.create(
            stream_type="product",
            stream_id=product_id,
            event_type="PriceChanged",
            version=1,
            payload={
                "product_id": product_id,
                "price_change_id": 10**9,
                "price": "1.00",
                "previous_price": "2.00",
                "changed_at": datetime.now(UTC).isoformat(),
            },
        )


def test_metrics_of_every_process_and_of_a_halted_partition(tmp_path):
    seller = factories.seller()
    products = [factories.product(seller_obj=seller) for _ in range(PARTITIONS)]
    staff = Token.objects.create(user=factories.catalog_staff()).key
    reviewer = Token.objects.create(user=get_user_model().objects.create_user("metrics")).key
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = process_env(
        "",  # no broker: run_projectors projects
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        PROJECTION_PARTITIONS=str(PARTITIONS),
        PROJECTION_MAX_ATTEMPTS="1",
        METRICS_CACHE_SECONDS="0",
        COMMAND_THROTTLE_RATE="100000/min",
    )
    loop_log = tmp_path / "run_projectors.log"
    loop = start_run_projectors(env, loop_log)
    port = free_port()
    server = start_gunicorn(env, port, tmp_path / "gunicorn.log", workers=2)
    site = f"http://127.0.0.1:{port}"
    staff_headers = {"Authorization": f"Token {staff}"}
    try:
        wait_for_log(loop_log, "Projecting")
        wait_until_caught_up(60)
        for n, product in enumerate(products):
            status, _, body = http(
                "POST",
                f"{site}/api/products/{product.pk}/price/",
                {"price": f"{10 + n}.50"},
                staff_headers,
            )
            assert status == 202, body
        status, _, _ = http(
            "POST", f"{site}/api/products/999999999/price/", {"price": "1.00"}, staff_headers
        )
        assert status == 404
        status, _, body = http(
            "POST",
            f"{site}/api/reviews/",
            {"product": products[0].pk, "rating": 4, "body": "Counted in the metrics."},
            {"Authorization": f"Token {reviewer}"},
        )
        assert status == 201, body
        token = json.loads(body)["consistency_token"]
        status, headers, _ = http(
            "GET", f"{site}/api/products/{products[0].pk}/", headers={"X-Consistency-Token": token}
        )
        assert status == 200
        assert "X-Read-Model-Stale" not in headers
        wait_until_caught_up(30)
        applied_in_db = sum(
            Checkpoint.objects.filter(projector="products").values_list("events_applied", flat=True)
        )

        # Every figure is there, with the values the commands above explain.
        figures = wait_for(
            site,
            lambda f: (
                f.total("storefront_projection_events_applied_total", projector="products")
                == applied_in_db
            ),
            "the projector process's counters never reached the scrape",
        )
        ok = figures.get("storefront_commands_total", command="product_change_price", outcome="ok")
        assert ok == PARTITIONS
        assert (
            figures.get(
                "storefront_commands_total", command="product_change_price", outcome="not_found"
            )
            == 1
        )
        assert figures.get("storefront_commands_total", command="review_add", outcome="ok") == 1
        assert figures.get("storefront_command_seconds_count", command="product_change_price") == (
            PARTITIONS + 1
        )
        assert figures.get("storefront_command_seconds_sum", command="review_add") > 0
        assert (
            figures.get(
                "storefront_http_responses_total", view=PRICE_ROUTE, method="POST", status="202"
            )
            == PARTITIONS
        )
        assert (
            figures.get("storefront_http_request_seconds_count", view=PRICE_ROUTE, method="POST")
            == PARTITIONS + 1
        )
        assert figures.total("storefront_consistency_waits_total", projector="products") == 1
        assert figures.get("storefront_projection_batch_seconds_count", projector="products") >= 1
        assert figures.get("storefront_projection_status_up") == 1
        for partition in range(PARTITIONS):
            labels = {"projector": "products", "partition": str(partition)}
            assert figures.get("storefront_projection_events_behind", **labels) == 0
            assert figures.get("storefront_projection_halted", **labels) == 0
            assert figures.get("storefront_projection_parked_events", **labels) == 0
            assert figures.get("storefront_projection_stalled", **labels) == 0
        assert 0 <= figures.get("storefront_event_log_horizon_age_seconds") < 5
        assert figures.get("storefront_event_writers_stalled") == 0
        # The projector process wrote its own files into the shared folder.
        assert any(path.name.endswith(f"_{loop.pid}.db") for path in metrics_dir.iterdir())

        # A poison event halts the partitions; the lag piles up behind it.
        victim = products[0]
        halted = str(partition_of(victim.pk, PARTITIONS))
        record_poison(victim.pk + 1000 * PARTITIONS)
        labels = {"projector": "products", "partition": halted}
        wait_for(
            site,
            lambda f: f.get("storefront_projection_halted", **labels) == 1,
            "the halted partition never showed in the metrics",
        )
        status, _, _ = http(
            "POST", f"{site}/api/products/{victim.pk}/price/", {"price": "99.00"}, staff_headers
        )
        assert status == 202
        sellers = {"projector": "sellers", "partition": "0"}
        figures = wait_for(
            site,
            lambda f: (
                f.get("storefront_projection_events_behind", **labels) >= 1
                and f.get("storefront_projection_seconds_behind", **labels) > 0
                # the sellers' projector goes on past the same events
                and f.get("storefront_projection_events_behind", **sellers) == 0
            ),
            "the halted partition's lag never showed, or the sellers' projector stopped too",
        )
        assert figures.get("storefront_projection_parked_events", **labels) == 1
        assert figures.get("storefront_projection_oldest_parked_age_seconds", **labels) > 0
        # Only the product's partition applies this event (and fails on it);
        # the other partitions pass it, and the sellers' projector has no use for it.
        for partition in range(PARTITIONS):
            assert figures.get(
                "storefront_projection_halted", projector="products", partition=str(partition)
            ) == int(str(partition) == halted)
        assert figures.get("storefront_projection_halted", **sellers) == 0
        assert figures.get("storefront_projection_events_behind", **sellers) == 0
        assert loop.poll() is None
        assert server.poll() is None
    finally:
        kill(server, signal.SIGTERM)  # the master stops its workers: none left behind
        kill(loop)


def metrics_folders(under: Path) -> set[Path]:
    return set(under.glob("storefront-metrics-*"))


def test_gunicorn_alone_sums_its_workers_and_logs_each_requests_id(tmp_path):
    """With no PROMETHEUS_MULTIPROC_DIR, gunicorn.conf.py gives the workers a
    folder of their own: every scrape, whichever worker answers it, counts
    every worker's requests. The access log names each request's id."""
    env = process_env("", TMPDIR=str(tmp_path))  # where gunicorn makes its folder
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    log = tmp_path / "gunicorn.log"
    before = metrics_folders(tmp_path)
    server = start_gunicorn(env, port, log, options=("--access-logfile", "-"))
    site = f"http://127.0.0.1:{port}"
    try:
        ours = metrics_folders(tmp_path) - before
        assert len(ours) == 1
        ids = []
        for _ in range(30):
            status, headers, _ = http("GET", f"{site}/api/products/999999/")
            assert status == 404
            ids.append(headers["X-Request-ID"])
        route = "api/products/<int:product_id>/"
        counts = {
            scrape(site).get(
                "storefront_http_responses_total", view=route, method="GET", status="404"
            )
            for _ in range(10)
        }
        assert counts == {30.0}
        # A reload (HUP) reads gunicorn.conf.py again: the server still knows
        # the folder is its own, and removes it when it stops.
        server.send_signal(signal.SIGHUP)
        time.sleep(2)
        assert (
            scrape(site).get(
                "storefront_http_responses_total", view=route, method="GET", status="404"
            )
            == 30.0
        )
        assert metrics_folders(tmp_path) - before == ours
    finally:
        kill(server, signal.SIGTERM)
    assert not (ours & metrics_folders(tmp_path)), "the server left its metrics folder behind"
    access = log.read_text()
    assert access.count('"GET /api/products/999999/ HTTP/1.1" 404') == 30
    assert all(access.count(request_id) == 1 for request_id in ids)
