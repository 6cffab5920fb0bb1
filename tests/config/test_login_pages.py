"""Site users sign in and out on pages of their own (not the admin's); repeated
failed sign-ins, there and on the admin's page, lock out (django-axes)."""

import io

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.db.models import F
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from tests import factories
from tests.factories import USER_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_the_login_page_renders_a_sign_in_form(client):
    page = client.get(reverse("login"), {"next": "/products/7/"})

    html = page.content.decode()
    assert page.status_code == 200
    assert "<h1>Sign in</h1>" in html
    assert 'name="username"' in html
    assert 'name="password"' in html
    assert 'value="/products/7/"' in html
    assert 'name="viewport"' in html


def test_signing_in_goes_back_to_the_page_the_user_came_from(client):
    user = UserFactory.create()

    response = client.post(
        reverse("login"),
        {"username": user.username, "password": USER_PASSWORD, "next": "/products/7/"},
    )

    assert response.status_code == 302
    assert response.url == "/products/7/"
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_wrong_password_is_a_form_error(client):
    user = UserFactory.create()

    response = client.post(reverse("login"), {"username": user.username, "password": "nope"})

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert "_auth_user_id" not in client.session


def test_the_layout_offers_sign_out_as_a_post_form_to_a_signed_in_user(client):
    user = UserFactory.create(username="erin")
    client.force_login(user)

    html = client.get(reverse("login")).content.decode()

    assert "erin" in html
    assert f'<form method="post" action="{reverse("logout")}">' in html
    assert "Sign out" in html


def test_signing_out_takes_a_post_and_ends_the_session(client):
    client.force_login(UserFactory.create())

    refused = client.get(reverse("logout"))
    signed_out = client.post(reverse("logout"))

    assert refused.status_code == 405
    assert signed_out.status_code == 302
    assert "_auth_user_id" not in client.session


# Repeated failed sign-ins lock out that username from that address ----------------

SIGN_IN_PAGES = ["/accounts/login/", "/admin/login/"]
ELSEWHERE = "203.0.113.9"  # another client address (TEST-NET-3)


def sign_in(client, page, username, password, **extra):
    return client.post(page, {"username": username, "password": password}, **extra)


def signed_in(client):
    return "_auth_user_id" in client.session


def lock_out(client, page, username, settings, **extra):
    """Fail to sign in as ``username`` until the lockout, which the last failure meets."""
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        answer = sign_in(client, page, username, "wrong password", **extra)
        assert answer.status_code == 200, "below the limit, a wrong password is a form error"
    assert_locked_out_page(sign_in(client, page, username, "wrong password", **extra), settings)


def assert_locked_out_page(answer, settings):
    assert answer.status_code == 429
    assert int(answer["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert "Too many failed sign-ins for this account from your address." in answer.content.decode()


@pytest.mark.parametrize("page", SIGN_IN_PAGES)
def test_repeated_wrong_passwords_lock_out_that_username_from_that_address(client, page, settings):
    victim = UserFactory.create(is_staff=True)
    other = UserFactory.create(is_staff=True)

    lock_out(client, page, victim.username, settings)
    right_password = sign_in(client, page, victim.username, USER_PASSWORD)

    assert_locked_out_page(right_password, settings)
    assert not signed_in(client)
    assert sign_in(client, page, other.username, USER_PASSWORD).status_code == 302
    assert signed_in(client), "another user from the same address signs in"
    elsewhere = Client()
    answer = sign_in(elsewhere, page, victim.username, USER_PASSWORD, REMOTE_ADDR=ELSEWHERE)
    assert answer.status_code == 302
    assert signed_in(elsewhere), "the same user from another address signs in"


def test_the_lockout_on_the_site_holds_on_the_admin_too(client, settings):
    victim = UserFactory.create(is_staff=True)
    lock_out(client, "/accounts/login/", victim.username, settings)

    assert_locked_out_page(
        sign_in(client, "/admin/login/", victim.username, USER_PASSWORD), settings
    )
    assert not signed_in(client)


def test_a_forged_forwarded_for_header_does_not_escape_a_lockout(client, settings):
    victim = UserFactory.create()
    lock_out(client, "/accounts/login/", victim.username, settings)

    answer = sign_in(
        client, "/accounts/login/", victim.username, USER_PASSWORD, HTTP_X_FORWARDED_FOR=ELSEWHERE
    )

    assert_locked_out_page(answer, settings)
    assert not signed_in(client)


def test_behind_a_trusted_proxy_each_forwarded_client_counts_alone(client, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}  # TRUSTED_PROXY_COUNT
    victim = UserFactory.create()
    lock_out(
        client, "/accounts/login/", victim.username, settings, HTTP_X_FORWARDED_FOR="198.51.100.7"
    )

    answer = sign_in(
        client, "/accounts/login/", victim.username, USER_PASSWORD, HTTP_X_FORWARDED_FOR=ELSEWHERE
    )

    assert answer.status_code == 302, "another client behind the same proxy is not locked out"
    assert AccessAttempt.objects.get().ip_address == "198.51.100.7"


def test_the_lockout_ends_after_the_cool_off(client, settings):
    victim = UserFactory.create()
    lock_out(client, "/accounts/login/", victim.username, settings)
    # As if the cool-off had passed since the last try.
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME)

    assert sign_in(client, "/accounts/login/", victim.username, USER_PASSWORD).status_code == 302
    assert signed_in(client)
    assert not AccessAttempt.objects.exists(), "a successful sign-in forgets the failures"


def test_an_operator_lifts_a_lockout_with_axes_reset_username(client, settings):
    victim = UserFactory.create()
    lock_out(client, "/accounts/login/", victim.username, settings)

    call_command("axes_reset_username", victim.username, stdout=io.StringIO())

    assert sign_in(client, "/accounts/login/", victim.username, USER_PASSWORD).status_code == 302
    assert signed_in(client)


def test_a_few_mistakes_then_the_right_password_start_the_count_again(client, settings):
    user = UserFactory.create()
    for _ in range(2):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            sign_in(client, "/accounts/login/", user.username, "wrong password")
        assert sign_in(client, "/accounts/login/", user.username, USER_PASSWORD).status_code == 302
        client.post(reverse("logout"))


@pytest.mark.django_db(databases=["default", "read"])
def test_the_api_still_takes_sessions_from_the_sign_in_page_and_tokens(client, settings):
    product = factories.product()
    author, other = UserFactory.create(), UserFactory.create()
    assert sign_in(client, "/accounts/login/", author.username, USER_PASSWORD).status_code == 302
    by_session = client.post(
        "/api/reviews/", {"product": product.pk, "rating": 5, "body": "Signed in on the page."}
    )
    token = Token.objects.create(user=other).key
    by_token = Client().post(
        "/api/reviews/",
        {"product": product.pk, "rating": 4, "body": "Sent with a token."},
        HTTP_AUTHORIZATION=f"Token {token}",
    )

    assert by_session.status_code == 201
    assert by_token.status_code == 201
