"""``POST /api/auth/token/``: a username and password in, the user's API token
out; rate-limited per client address and locked out by django-axes like the
sign-in pages."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from kernel.signin import LOCKED_OUT, WRONG_CREDENTIALS
from tests.api.schema import assert_documented
from tests.factories import USER_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/auth/token/"
PATH = "/api/auth/token/"
ELSEWHERE = "203.0.113.9"  # another client address (TEST-NET-3)
ROOT = Path(__file__).resolve().parents[2]


def ask(api, username, password, **extra):
    response = api.post(URL, {"username": username, "password": password}, format="json", **extra)
    assert_documented(response, PATH, "post")
    return response


@pytest.fixture
def unthrottled(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "tokens": "100000/min",
        },
    }


def test_the_right_password_gets_the_users_token_and_it_works_on_a_command(api):
    user = UserFactory.create()

    first = ask(api, user.username, USER_PASSWORD)
    again = ask(api, user.username, USER_PASSWORD)

    assert first.status_code == 200
    assert first.json() == {"token": Token.objects.get(user=user).key}
    assert again.json() == first.json(), "the same token every time"
    commands = APIClient()
    commands.credentials(HTTP_AUTHORIZATION=f"Token {first.json()['token']}")
    refused_body = commands.post("/api/reviews/", {}, format="json")
    assert refused_body.status_code == 400, "authenticated: the command only finds the body bad"


@pytest.mark.parametrize("form", ["multipart", "urlencoded"])
def test_a_form_body_is_refused_so_no_other_site_can_post_one(api, form):
    """A cross-site form post needs no preflight; JSON does."""
    user = UserFactory.create()
    if form == "multipart":
        response = api.post(URL, {"username": user.username, "password": USER_PASSWORD})
    else:
        body = f"username={user.username}&password={USER_PASSWORD}"
        response = api.post(URL, body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert not Token.objects.filter(user=user).exists()


@pytest.mark.parametrize("username", ["known", "nobody"])
def test_a_wrong_password_or_unknown_user_is_a_400_and_no_token(api, username):
    UserFactory.create(username="known")

    response = ask(api, username, "wrong password")

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": [WRONG_CREDENTIALS]}
    assert not Token.objects.exists()


def test_an_inactive_user_is_refused_like_a_wrong_password(api):
    user = UserFactory.create(is_active=False)

    response = ask(api, user.username, USER_PASSWORD)

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": [WRONG_CREDENTIALS]}
    assert not Token.objects.exists()


def test_repeated_failures_lock_out_that_username_from_that_address(api, settings, unthrottled):
    victim, other = UserFactory.create(), UserFactory.create()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert ask(api, victim.username, "wrong password").status_code == 400
    last_failure = ask(api, victim.username, "wrong password")
    right_password = ask(api, victim.username, USER_PASSWORD)

    for locked in (last_failure, right_password):
        assert locked.status_code == 429
        assert locked["Content-Type"] == "application/json"
        assert locked.json()["detail"].startswith(LOCKED_OUT)
        assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert not Token.objects.filter(user=victim).exists()
    assert ask(api, other.username, USER_PASSWORD).status_code == 200, "others sign in"
    elsewhere = ask(APIClient(), victim.username, USER_PASSWORD, REMOTE_ADDR=ELSEWHERE)
    assert elsewhere.status_code == 200, "the same user from another address signs in"


def test_the_lockout_is_shared_with_the_sign_in_page(api, client, settings, unthrottled):
    victim = UserFactory.create()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/accounts/login/", {"username": victim.username, "password": "wrong"})

    response = ask(api, victim.username, USER_PASSWORD)

    assert response.status_code == 429
    assert AccessAttempt.objects.get().username == victim.username


def test_a_success_forgets_the_failures(api, settings, unthrottled):
    user = UserFactory.create()
    for _ in range(2):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            ask(api, user.username, "wrong password")
        assert ask(api, user.username, USER_PASSWORD).status_code == 200


def test_token_requests_are_throttled_per_client_address(api, settings):
    rate = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["tokens"]
    allowed = int(rate.split("/")[0])
    user = UserFactory.create()

    answers = [ask(api, user.username, USER_PASSWORD).status_code for _ in range(allowed + 1)]
    forged = ask(api, user.username, USER_PASSWORD, HTTP_X_FORWARDED_FOR=ELSEWHERE)
    elsewhere = ask(APIClient(), user.username, USER_PASSWORD, REMOTE_ADDR=ELSEWHERE)

    assert answers == [200] * allowed + [429]
    assert forged.status_code == 429, "a client's own X-Forwarded-For is not believed"
    assert int(forged["Retry-After"]) > 0
    assert elsewhere.status_code == 200


def test_behind_a_trusted_proxy_each_forwarded_client_is_throttled_alone(api, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "NUM_PROXIES": 1,  # TRUSTED_PROXY_COUNT
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "tokens": "1/min",
        },
    }
    user = UserFactory.create()

    first = ask(api, user.username, USER_PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7")
    again = ask(api, user.username, USER_PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7")
    other = ask(api, user.username, USER_PASSWORD, HTTP_X_FORWARDED_FOR=ELSEWHERE)

    assert [first.status_code, again.status_code, other.status_code] == [200, 429, 200]


@pytest.mark.parametrize("settings_module", ["config.settings.test", "config.settings.production"])
def test_token_throttle_rate_comes_from_the_environment(settings_module, tmp_path):
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DJANGO_SECRET_KEY": "x" * 50,
        "DJANGO_ALLOWED_HOSTS": "shop.example.com",
        "STOREFRONT_VAR_DIR": str(tmp_path),
        "TOKEN_THROTTLE_RATE": "7/h",
    }
    script = (
        "import django; django.setup(); "
        "from kernel.token_api import TokenRateThrottle; "
        "t = TokenRateThrottle(); print(t.rate, t.num_requests, t.duration)"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )

    assert shown.stdout.split() == ["7/h", "7", "3600"]


HOSTILE_BODIES = [
    pytest.param(b"", "application/json", id="empty"),
    pytest.param(b"{", "application/json", id="broken-json"),
    pytest.param(b"[]", "application/json", id="a-list"),
    pytest.param(b'"text"', "application/json", id="a-string"),
    pytest.param(b"\xff\xfe", "application/json", id="not-utf8"),
    pytest.param(b"[" * 100_000, "application/json", id="nested-deep"),
    pytest.param(b'{"username": "a"}', "application/json", id="no-password"),
    pytest.param(b'{"password": "a"}', "application/json", id="no-username"),
    pytest.param(b'{"username": null, "password": null}', "application/json", id="nulls"),
    pytest.param(b'{"username": ["a"], "password": {"b": 1}}', "application/json", id="types"),
    pytest.param(b'{"username": "a\\u0000b", "password": "x"}', "application/json", id="nul"),
    pytest.param(b'{"username": "\\ud800", "password": "x"}', "application/json", id="surrogate"),
    pytest.param(
        json.dumps({"username": "u" * 100_000, "password": "p"}).encode(),
        "application/json",
        id="huge-username",
    ),
    pytest.param(
        json.dumps({"username": "u", "password": "p" * 100_000}).encode(),
        "application/json",
        id="huge-password",
    ),
    pytest.param(b"username=a%00&password=b", "application/x-www-form-urlencoded", id="form-nul"),
    pytest.param(b"<xml/>", "application/xml", id="xml"),
]


@pytest.mark.parametrize(("body", "content_type"), HOSTILE_BODIES)
def test_hostile_bodies_get_a_clear_4xx(api, unthrottled, body, content_type):
    UserFactory.create(username="a")

    response = api.generic("POST", URL, body, content_type=content_type)

    assert 400 <= response.status_code < 500
    assert response.status_code in (400, 413, 415)
    assert_documented(response, PATH, "post")
    assert not Token.objects.exists()


def test_a_body_over_the_upload_limit_is_a_413(api, unthrottled, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"username": "a", "password": "p" * 2000}).encode()

    response = api.generic("POST", URL, body, content_type="application/json")

    assert response.status_code == 413
    assert_documented(response, PATH, "post")


def test_only_post_is_allowed(api):
    assert api.get(URL).status_code == 405
