"""Anonymous queries take a lean middleware stack (config/handlers.py); the
rest, Django's full one. Driven through the WSGI application itself, as
gunicorn calls it, with the production security settings."""

import io
from decimal import Decimal
from http.cookies import SimpleCookie

import pytest
from django.contrib.messages import constants
from django.contrib.messages.storage.base import Message
from django.contrib.messages.storage.cookie import CookieStorage
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.http import HttpRequest
from django.test import Client

from config.handlers import StorefrontApplication, is_anonymous_query
from tests.api.factories import ProductRowFactory

pytestmark = pytest.mark.django_db(databases=["default", "read"])

SECURITY_HEADERS = (
    "Strict-Transport-Security",
    "Content-Security-Policy",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
)


def environ(path: str, method: str = "GET", body: bytes = b"", **extra: str) -> dict:
    query = ""
    if "?" in path:
        path, query = path.split("?", 1)
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "shop.example.com",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "shop.example.com",
        "REMOTE_ADDR": "10.1.2.3",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        **extra,
    }


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status_code = int(status.split()[0])
        self.headers = {name.lower(): value for name, value in headers}
        self.content = body

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]


@pytest.fixture
def production_headers(settings):
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_CONTENT_TYPE_NOSNIFF = True
    settings.SECURE_REFERRER_POLICY = "same-origin"
    settings.SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
    settings.X_FRAME_OPTIONS = "DENY"
    settings.SECURE_CSP = {"default-src": ["'self'"]}


@pytest.fixture
def app(production_headers):
    """The application, made after the settings (middleware reads them once)."""
    application = StorefrontApplication()
    # As Django's test client does: the test's transaction keeps its connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield application
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def call(app: StorefrontApplication, env: dict) -> Answer:
    seen: dict = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers

    body = b"".join(app(env, start_response))
    return Answer(seen["status"], seen["headers"], body)


@pytest.fixture
def row():
    return ProductRowFactory(product_id=42, name="Espresso machine", price=Decimal("249.00"))


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    cookie: SimpleCookie = client.cookies
    return "; ".join(f"{name}={morsel.value}" for name, morsel in cookie.items())


@pytest.mark.parametrize(
    "path",
    ["/api/products/", "/api/products/42/", "/api/sellers/7/", "/products/", "/products/42/"],
)
def test_anonymous_reads_of_the_query_side_are_lean(path):
    assert is_anonymous_query(environ(path))
    assert is_anonymous_query(environ(path, method="HEAD"))
    assert is_anonymous_query(environ(path, HTTP_COOKIE="csrftoken=abc"))


@pytest.mark.parametrize(
    ("path", "method", "extra"),
    [
        ("/products/42/", "POST", {}),
        ("/api/products/42/", "OPTIONS", {}),
        ("/products/42/reviews/", "GET", {}),
        ("/api/reviews/", "GET", {}),
        ("/api/products/42/price/", "GET", {}),
        ("/admin/", "GET", {}),
        ("/accounts/login/", "GET", {}),
        ("/healthz", "GET", {}),
        ("/products/42/", "GET", {"HTTP_COOKIE": "sessionid=abc"}),
        ("/products/42/", "GET", {"HTTP_COOKIE": "csrftoken=x; messages=abc"}),
        ("/api/products/42/", "GET", {"HTTP_AUTHORIZATION": "Token abc"}),
        ("/api/products/42/", "GET", {"HTTP_AUTHORIZATION": "Basic YTpi"}),
        ("/products/42", "GET", {}),
    ],
)
def test_everything_else_takes_the_full_stack(path, method, extra):
    assert not is_anonymous_query(environ(path, method=method, **extra))


@pytest.mark.parametrize("path", ["/api/products/42/", "/products/42/", "/api/products/"])
def test_a_lean_answer_keeps_every_security_header(app, row, path):
    lean = call(app, environ(path))
    # The same request with a cookie the full stack must read: anonymous all the same.
    full = call(app, environ(path, HTTP_COOKIE="sessionid=not-a-session"))

    assert lean.status_code == full.status_code == 200
    for header in SECURITY_HEADERS:
        assert lean[header] == full[header], header
    assert lean.content == full.content


def test_a_lean_request_still_checks_the_host(app, row):
    answer = call(app, environ("/api/products/42/", HTTP_HOST="evil.example.net"))
    assert answer.status_code == 400


def test_a_lean_request_loads_no_session_and_sets_no_cookie(app, row, monkeypatch):
    def no_session(*args, **kwargs):
        raise AssertionError("the lean stack loaded a session")

    monkeypatch.setattr("django.contrib.sessions.middleware.SessionMiddleware.__call__", no_session)
    for path in ("/products/42/", "/api/products/42/"):
        answer = call(app, environ(path))
        assert answer.status_code == 200
        assert "set-cookie" not in answer.headers


def test_a_signed_in_visitor_gets_the_full_page_with_the_review_form(app, row, user):
    answer = call(app, environ("/products/42/", HTTP_COOKIE=session_cookie(user)))

    assert answer.status_code == 200
    assert b'name="csrfmiddlewaretoken"' in answer.content
    assert b"alice" in answer.content
    assert answer["Cache-Control"] == "private, no-cache"
    assert "Cookie" in answer["Vary"]


def test_an_anonymous_visitor_gets_the_page_without_a_form_or_a_name(app, row, user):
    answer = call(app, environ("/products/42/"))

    assert answer.status_code == 200
    assert b"Sign in</a> to write a review" in answer.content
    assert b"csrfmiddlewaretoken" not in answer.content
    assert answer["Cache-Control"].startswith("public")
    assert "Cookie" in answer["Vary"]


def test_a_review_post_without_its_csrf_token_is_still_refused(app, row, user):
    body = b"rating=5&body=Great"
    answer = call(
        app,
        environ(
            "/products/42/reviews/",
            method="POST",
            body=body,
            CONTENT_TYPE="application/x-www-form-urlencoded",
            HTTP_COOKIE=session_cookie(user),
        ),
    )
    assert answer.status_code == 403


def messages_cookie(text: str) -> str:
    storage = CookieStorage(HttpRequest())
    return "messages=" + storage._encode([Message(constants.INFO, text)])  # type: ignore[attr-defined]


def test_a_page_with_a_message_for_its_visitor_is_neither_kept_nor_shared(app, row):
    mine = call(app, environ("/products/42/", HTTP_COOKIE=messages_cookie("Secret for alice")))
    anyone = call(app, environ("/products/42/"))

    assert b"Secret for alice" in mine.content
    assert mine["Cache-Control"] == "private, no-cache"
    assert b"Secret for alice" not in anyone.content
    assert anyone["Cache-Control"].startswith("public")


def test_a_failed_precondition_on_a_page_is_never_kept(app, row):
    answer = call(app, environ("/products/42/", HTTP_IF_MATCH='"nope"'))

    assert answer.status_code == 412
    assert answer["Cache-Control"] == "no-store"


def test_a_page_is_kept_per_path(app, row):
    call(app, environ("/products/00042/"))
    answer = call(app, environ("/products/42/"))

    assert b"next=/products/42/" in answer.content
    assert b"00042" not in answer.content
