"""Site users sign in and out on pages of their own (not the admin's)."""

import pytest
from django.urls import reverse

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
