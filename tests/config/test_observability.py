"""What an operator reads: request ids on answers, events and log lines,
JSON logs, each line once, the metrics and who may scrape them."""

import json
import logging
from decimal import Decimal

import pytest
from django.test import Client
from prometheus_client import REGISTRY
from rest_framework.authtoken.models import Token

from catalog.services import product_change_price
from config import logs
from eventstore.models import Event
from kernel.errors import NotFound
from projections.metrics import collector
from tests import factories

both_databases = pytest.mark.django_db(databases=["default", "read"])
OUTSIDE = "203.0.113.9"  # TEST-NET-3


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def staff_client():
    token = Token.objects.create(user=factories.catalog_staff())
    return Client(HTTP_AUTHORIZATION=f"Token {token.key}")


@pytest.fixture(autouse=True)
def _fresh_figures(settings):
    settings.METRICS_CACHE_SECONDS = 0
    collector.clear()


# Request ids -------------------------------------------------------------


@pytest.fixture
def behind_a_proxy(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}


@both_databases
def test_a_clients_own_request_id_is_never_taken(client):
    answered = client.get("/api/products/", HTTP_X_REQUEST_ID="chosen-by-me")["X-Request-ID"]
    assert answered != "chosen-by-me"
    assert len(answered) == 32


@both_databases
def test_every_answer_has_a_request_id_and_a_well_formed_one_from_a_proxy_is_kept(
    client, behind_a_proxy
):
    first = client.get("/api/products/")["X-Request-ID"]
    second = client.get("/api/products/")["X-Request-ID"]
    assert len(first) == 32
    assert first != second
    kept = client.get("/api/products/", HTTP_X_REQUEST_ID="edge-7f3a.1")
    assert kept["X-Request-ID"] == "edge-7f3a.1"


@both_databases
@pytest.mark.parametrize(
    "given", ["a b", "x" * 65, "line\nbreak", '{"json":1}', "", "ümlaut"], ids=repr
)
def test_a_malformed_request_id_is_replaced(client, behind_a_proxy, given):
    answered = client.get("/api/products/", HTTP_X_REQUEST_ID=given)["X-Request-ID"]
    assert answered != given
    assert len(answered) == 32


@both_databases
def test_a_commands_events_carry_its_request_id(staff_client, behind_a_proxy):
    product = factories.product()
    answer = staff_client.post(
        f"/api/products/{product.pk}/price/",
        {"price": "12.34"},
        content_type="application/json",
        HTTP_X_REQUEST_ID="req-42",
    )
    assert answer.status_code == 202, answer.content
    event = Event.objects.filter(event_type="PriceChanged").latest("position")
    assert event.request_id == "req-42"


@both_databases
def test_an_event_recorded_outside_a_request_has_no_request_id():
    product = factories.product()
    product_change_price(product_id=product.pk, price=Decimal("3.00"))
    assert Event.objects.latest("position").request_id == ""


# Logs ----------------------------------------------------------------------


class Lines(logging.Handler):
    """Log lines as the console handler writes them (filter and formatter)."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.addFilter(logs.RequestIdFilter())
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def json_lines():
    handler = Lines(logs.JsonLines())
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler.lines
    root.removeHandler(handler)


@both_databases
def test_a_server_error_is_one_json_line_with_the_request_id(
    json_lines, monkeypatch, behind_a_proxy
):
    from queries import selectors

    def broken(*args, **kwargs):
        raise RuntimeError("the read model is on fire")

    monkeypatch.setattr(selectors, "product_version", broken)
    client = Client(raise_request_exception=False)
    product = factories.product()
    answer = client.get(f"/api/products/{product.pk}/", HTTP_X_REQUEST_ID="trace-500")
    assert answer.status_code == 500
    records = [json.loads(line) for line in json_lines]
    errors = [record for record in records if record["logger"] == "django.request"]
    assert len(errors) == 1, records
    assert errors[0]["level"] == "ERROR"
    assert errors[0]["request_id"] == "trace-500"
    assert "RuntimeError: the read model is on fire" in errors[0]["exc_info"]
    assert "request" not in errors[0]  # Django's request object is not dumped


@both_databases
def test_client_errors_write_no_log_line(json_lines, client, staff_client, settings):
    client.get("/api/products/999999/")
    client.get("/api/products/?limit=zebra")
    staff_client.post("/api/products/1/price/", "{", content_type="application/json")
    client.post("/api/reviews/", {})
    client.get("/nowhere/")
    assert json_lines == []


@pytest.fixture
def thinned_json_lines():
    handler = Lines(logs.JsonLines())
    handler.addFilter(logs.SecurityRefusalsThinned())
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler.lines
    root.removeHandler(handler)


@both_databases
def test_security_refusals_are_one_line_a_minute_of_each_kind(thinned_json_lines, monkeypatch):
    """A wrong ALLOWED_HOSTS shows in the log; a flood of forged Hosts does not
    flood it."""
    import time

    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    for _ in range(20):
        Client().get("/api/products/", HTTP_HOST="evil.example")  # DisallowedHost: a 400
        Client(enforce_csrf_checks=True).post("/accounts/login/", {})  # no CSRF token: a 403
    records = [json.loads(line) for line in thinned_json_lines]
    assert [record["logger"] for record in records] == [
        "django.security.DisallowedHost",
        "django.security.csrf",
    ]
    assert "evil.example" in records[0]["message"]
    assert "exc_info" not in records[0]  # no traceback
    clock[0] += 61
    Client().get("/api/products/", HTTP_HOST="evil.example")
    last = json.loads(thinned_json_lines[-1])
    assert last["logger"] == "django.security.DisallowedHost"
    assert last["left_out"] == 19


def test_the_text_format_names_the_request_too(settings):
    line = logging.Formatter(settings.LOGGING["formatters"]["text"]["format"])
    handler = Lines(line)
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello", None, None)
    handler.handle(record)
    assert handler.lines[0].endswith("WARNING x [-] hello")


def test_production_logs_json_by_default(monkeypatch):
    import subprocess
    import sys

    code = (
        "from django.conf import settings; import django; django.setup(); "
        "print(settings.LOGGING['handlers']['console']['formatter'])"
    )
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "x" * 50,
        "DJANGO_ALLOWED_HOSTS": "shop.example.com",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "json", out.stderr
    env["LOG_FORMAT"] = "text"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "text", out.stderr
    env["LOG_FORMAT"] = "xml"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "LOG_FORMAT must be one of ('text', 'json'), not 'xml'" in out.stderr


def test_celery_workers_log_through_the_projects_handlers():
    """A worker sets up its logging with Celery's own handlers on the root
    logger unless told not to; then production's JSON lines would stop at the
    worker's door."""
    from config.celery_app import app

    root = logging.getLogger()
    handlers = list(root.handlers)
    app.log.already_setup = False  # type: ignore[misc]
    app.log.setup_logging_subsystem(loglevel="INFO")
    assert root.handlers == handlers


# Metrics -------------------------------------------------------------------


@both_databases
def test_commands_are_counted_by_outcome_and_timed():
    product = factories.product()
    ok = sample("storefront_commands_total", command="product_change_price", outcome="ok")
    missing = sample(
        "storefront_commands_total", command="product_change_price", outcome="not_found"
    )
    timed = sample("storefront_command_seconds_count", command="product_change_price")
    product_change_price(product_id=product.pk, price=Decimal("5.00"))
    with pytest.raises(NotFound):
        product_change_price(product_id=10**9, price=Decimal("5.00"))
    assert sample("storefront_commands_total", command="product_change_price", outcome="ok") == (
        ok + 1
    )
    assert (
        sample("storefront_commands_total", command="product_change_price", outcome="not_found")
        == missing + 1
    )
    assert sample("storefront_command_seconds_count", command="product_change_price") == timed + 2


@both_databases
def test_requests_are_timed_by_route_not_by_path(client):
    route = "api/products/<int:product_id>/"
    before = sample("storefront_http_responses_total", view=route, method="GET", status="404")
    for missing in (999991, 999992, 999993):
        client.get(f"/api/products/{missing}/")
    after = sample("storefront_http_responses_total", view=route, method="GET", status="404")
    assert after == before + 3
    client.generic("BREW", "/api/products/")
    assert (
        sample(
            "storefront_http_responses_total", view="api/products/", method="other", status="405"
        )
        >= 1
    )


@both_databases
def test_metrics_answer_the_allowed_networks_and_the_token_only(client, settings):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE).status_code == 404
    # Not even a method's refusal tells an outsider that something is here.
    assert client.post("/metrics", REMOTE_ADDR=OUTSIDE).status_code == 404
    assert client.options("/metrics", REMOTE_ADDR=OUTSIDE).status_code == 404
    assert client.post("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 405
    # No token is set: a bearer of anything is still refused.
    assert (
        client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer ").status_code == 404
    )
    settings.METRICS_TOKEN = "s3cret-token"
    for wrong in ("Bearer s3cret", "Token s3cret-token", "Basic czNjcmV0LXRva2Vu", "s3cret-token"):
        assert (
            client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=wrong).status_code == 404
        )
    scraped = client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert scraped.status_code == 200
    assert scraped["Content-Type"].startswith("text/plain")
    assert "no-cache" in scraped["Cache-Control"]
    settings.METRICS_ALLOWED_NETWORKS = ["203.0.113.0/24"]
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE).status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 404


@both_databases
def test_a_request_through_an_untrusted_proxy_on_the_same_host_is_not_let_in(client):
    """nginx on the same host connects from 127.0.0.1 for every client; with
    TRUSTED_PROXY_COUNT 0 its X-Forwarded-For is the sign of it."""
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    for header, value in [
        ("HTTP_X_FORWARDED_FOR", OUTSIDE),
        ("HTTP_X_REAL_IP", OUTSIDE),
        ("HTTP_FORWARDED", f"for={OUTSIDE}"),
        ("HTTP_X_FORWARDED_PROTO", "https"),
        ("HTTP_X_FORWARDED_HOST", "shop.example.com"),
    ]:
        through_proxy = {"REMOTE_ADDR": "127.0.0.1", header: value}
        assert client.get("/metrics", **through_proxy).status_code == 404, header
        health = client.get("/healthz", **through_proxy).json()
        assert "checks" not in health, header  # nor /healthz's details


@both_databases
def test_a_forwarded_address_counts_only_behind_a_trusted_proxy(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    spoofed = {"REMOTE_ADDR": OUTSIDE, "HTTP_X_FORWARDED_FOR": "10.1.2.3"}
    assert client.get("/metrics", **spoofed).status_code == 404
    settings.TRUSTED_PROXY_COUNT = 1
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert client.get("/metrics", **spoofed).status_code == 200


@pytest.mark.django_db(transaction=True, databases=["default", "read"])
def test_the_projections_figures_follow_the_log(client, settings):
    from projections.registry import project_all

    project_all()
    factories.product()
    scraped = client.get("/metrics").content.decode()
    behind = [
        line
        for line in scraped.splitlines()
        if line.startswith('storefront_projection_events_behind{partition="0",projector="sellers"}')
    ]
    assert behind
    assert float(behind[0].split()[-1]) >= 1
    assert "storefront_projection_status_up 1.0" in scraped
    project_all()
    collector.clear()
    scraped = client.get("/metrics").content.decode()
    assert 'storefront_projection_events_behind{partition="0",projector="sellers"} 0.0' in scraped


@pytest.mark.django_db(transaction=True, databases=["default", "read"])
def test_a_process_reads_the_projections_figures_once_per_cache_period(
    client, settings, django_assert_num_queries
):
    settings.METRICS_CACHE_SECONDS = 60
    client.get("/metrics")
    factories.product()
    with django_assert_num_queries(0, using="read"), django_assert_num_queries(0):
        scraped = client.get("/metrics").content.decode()
    # Still the figures of the first scrape: nothing behind.
    assert 'storefront_projection_events_behind{partition="0",projector="sellers"} 0.0' in scraped
    settings.METRICS_CACHE_SECONDS = 0
    collector.clear()
    scraped = client.get("/metrics").content.decode()
    assert 'storefront_projection_events_behind{partition="0",projector="sellers"} 0.0' not in (
        scraped
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=["default", "read"])
def test_a_database_that_hangs_makes_the_figures_unreadable_not_the_scrape(client, monkeypatch):
    import time

    import psycopg

    from projections import metrics
    from tests.projections.processes import database_url

    monkeypatch.setattr(metrics, "FIGURES_TIMEOUT_SECONDS", 0.5)
    with psycopg.connect(database_url("default")) as blocker:
        blocker.execute("LOCK TABLE projections_event IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        scraped = client.get("/metrics").content.decode()
        assert time.monotonic() - started < 5
        blocker.rollback()
    assert "storefront_projection_status_up 0.0" in scraped
    assert "storefront_projection_events_behind{" not in scraped
