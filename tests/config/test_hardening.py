"""Production security settings, staff-only operations, throttled writes, a
Redis cache that fails open, and no secret in the repository."""

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.cache import caches
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from tests import factories
from tests.projections.processes import RedisServer

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_PROBE = """
import json
import django
django.setup()
from django.conf import settings
from django.test import Client
client = Client()
secure = client.get("/accounts/login/", secure=True, HTTP_HOST="shop.example.com")
plain = client.get("/accounts/login/", HTTP_HOST="shop.example.com")
docs = client.get("/api/docs/", secure=True, HTTP_HOST="shop.example.com")
print(json.dumps({
    "status": secure.status_code,
    "headers": dict(secure.headers),
    "cookies": {
        name: {key: morsel[key] for key in ("secure", "httponly", "samesite")}
        for name, morsel in secure.cookies.items()
    },
    "plain": [plain.status_code, plain.headers.get("Location")],
    "docs_csp": docs.headers.get("Content-Security-Policy"),
    "settings": {
        name: getattr(settings, name)
        for name in (
            "SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE",
            "CSRF_COOKIE_SECURE", "CSRF_TRUSTED_ORIGINS", "DEBUG",
        )
    },
}))
"""


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    """What a page answers under production settings, behind TLS and not."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    for name in ("DATABASE_URL", "READ_DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"):
        environment.pop(name, None)
    environment.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="shop.example.com",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://admin.example.com",
        STOREFRONT_VAR_DIR=str(tmp_path_factory.mktemp("var")),
    )
    probe = subprocess.run(
        [sys.executable, "-c", PRODUCTION_PROBE],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    return json.loads(probe.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_production_sends_the_security_headers(production):
    headers = production["headers"]
    assert production["status"] == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "cdn.jsdelivr.net" not in policy
    # The API docs' own policy: Swagger UI from our static files, no inline script.
    assert "script-src 'self';" in production["docs_csp"]
    assert "http" not in production["docs_csp"]


@pytest.mark.slow
def test_production_cookies_are_secure_and_plain_http_is_redirected(production):
    assert production["cookies"]["csrftoken"] == {
        "secure": True,
        "httponly": "",
        "samesite": "Lax",
    }
    assert production["plain"] == [301, "https://shop.example.com/accounts/login/"]


@pytest.mark.slow
def test_production_session_and_csrf_settings(production):
    assert production["settings"] == {
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SECURE": True,
        "CSRF_TRUSTED_ORIGINS": ["https://admin.example.com"],
        "DEBUG": False,
    }


# Staff only ------------------------------------------------------------------

STAFF_PAGES = [
    "/admin/",
    "/admin/catalog/product/",
    "/admin/catalog/seller/",
    "/admin/reviews/review/",
    "/admin/projections/checkpoint/",
    "/admin/projections/parkedevent/",
]


@pytest.mark.django_db(databases=["default", "read"])
@pytest.mark.parametrize("page", STAFF_PAGES)
def test_the_admin_is_for_staff_only(client, user, staff_user, page):
    anonymous = client.get(page)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/admin/login/")
    client.force_login(user)
    signed_in = client.get(page)
    assert signed_in.status_code == 302, "a signed-in shopper is not staff"
    assert signed_in["Location"].startswith("/admin/login/")
    client.force_login(staff_user)
    assert client.get(page).status_code == 200


@pytest.mark.django_db(databases=["default", "read"])
@pytest.mark.parametrize(
    ("command", "payload"), [("price", {"price": "9.99"}), ("stock", {"quantity": 3})]
)
def test_catalog_commands_are_for_staff_only(user, staff_user, command, payload):
    product = factories.product(price="19.99", stock=10)
    url = f"/api/products/{product.pk}/{command}/"
    client = APIClient()
    assert client.post(url, payload, format="json").status_code == 401
    client.force_authenticate(user)
    assert client.post(url, payload, format="json").status_code == 403
    client.force_authenticate(staff_user)
    assert client.post(url, payload, format="json").status_code == 202


# Throttling --------------------------------------------------------------------


@pytest.mark.django_db(databases=["default", "read"])
def test_every_command_is_throttled_per_user(staff_user, user, monkeypatch):
    caches["default"].clear()
    monkeypatch.setattr(
        ScopedRateThrottle, "THROTTLE_RATES", {"reviews": "100/min", "commands": "3/min"}
    )
    product = factories.product(price="19.99", stock=10)
    staff = APIClient()
    staff.force_authenticate(staff_user)
    url = f"/api/products/{product.pk}/stock/"
    answers = [staff.post(url, {"quantity": n}, format="json") for n in range(4)]
    assert [answer.status_code for answer in answers] == [202, 202, 202, 429]
    assert int(answers[-1]["Retry-After"]) > 0
    shopper = APIClient()
    shopper.force_authenticate(user)
    review = shopper.post(
        "/api/reviews/", {"product": product.pk, "rating": 4, "body": "Ten chars at least."}
    ).json()["id"]
    edits = [
        shopper.patch(f"/api/reviews/{review}/", {"rating": n}, format="json") for n in (1, 2, 3, 4)
    ]
    assert [edit.status_code for edit in edits] == [202, 202, 202, 429]
    caches["default"].clear()


# The Redis cache fails open ------------------------------------------------------


@pytest.mark.broker
def test_the_redis_cache_fails_open_when_redis_is_down(settings):
    server = RedisServer()
    server.start()
    settings.CACHES = {
        "default": {
            "BACKEND": "kernel.cache.FailOpenRedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
        }
    }
    cache = caches["default"]
    try:
        cache.set("count", [1, 2])
        assert cache.get("count") == [1, 2]
    finally:
        server.stop()
    started = time.monotonic()
    assert cache.get("count", "miss") == "miss"
    cache.set("count", [3])
    assert cache.add("other", 1) is False
    assert cache.get_many(["count"]) == {}
    cache.delete("count")
    assert time.monotonic() - started < 3, "a dead Redis must not hang a request"


# No secret in the repository -------------------------------------------------

SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA |PGP )?PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "password in a URL": re.compile(
        r"[a-z+]+://[^/\s:@'\"]+:(?!\{|\$|pw@|password@)[^@\s/'\"]{6,}@"
    ),
    "Django secret key": re.compile(
        r"(?:SECRET_KEY|DJANGO_SECRET_KEY)\s*[=:]\s*[\"'](?!test-only|local-development)[^\"'\s]{20,}"
    ),
}


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False, timeout=30
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed.stdout.decode().split("\0") if name]


def test_no_secret_is_committed():
    found: list[str] = []
    for path in tracked_files():
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        for what, pattern in SECRET_PATTERNS.items():
            found.extend(f"{path.relative_to(ROOT)}: {what}" for _ in pattern.finditer(text))
    assert found == []


def test_the_secret_check_catches_what_it_looks_for():
    # Built from pieces, so this file holds none of them.
    leaks = {
        "private key": "-----BEGIN RSA " + "PRIVATE KEY-----",
        "AWS access key": "AKIA" + "IOSFODNN7EXAMPLE",
        "GitHub token": "ghp_" + "a" * 36,
        "Slack token": "xoxb" + "-1234567890-abcdef",
        "password in a URL": "postgres://shop:" + "hunter2hunter2@db.example.com/shop",
        "Django secret key": "SECRET_KEY = " + '"q8w9e7r6t5y4u3i2o1p0asdfghjkl"',
    }
    for what, leak in leaks.items():
        assert SECRET_PATTERNS[what].search(leak), what
