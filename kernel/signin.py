"""Signing in with a username and password for an API token.

The one write here is the user's token, made on first use. Every try goes
through Django's ``authenticate``, so django-axes sees it as it sees the
sign-in pages': a locked-out username and address are refused before any
password is checked, and each failure counts against that pair.
"""

import math

from axes.helpers import get_cool_off
from django.contrib.auth import authenticate, user_logged_in
from django.http import HttpRequest
from rest_framework.authtoken.models import Token

from kernel.errors import DomainError, InvalidInput

WRONG_CREDENTIALS = "Unable to sign in with that username and password."
LOCKED_OUT = (
    "Too many failed sign-ins for this username from this address: "
    "try again after Retry-After seconds."
)


class SignInLockedOut(DomainError):
    """django-axes refused the sign-in: too many failures for this username
    from this address. ``retry_after`` is the cool-off left, in seconds."""

    def __init__(self, retry_after: int | None) -> None:
        super().__init__(LOCKED_OUT)
        self.retry_after = retry_after


def api_token_obtain(*, request: HttpRequest, username: str, password: str) -> str:
    """The API token of the user these credentials sign in, made on first use.

    ``request`` is the Django request the credentials came with: django-axes
    reads the client address from it (``kernel.clients.client_address``). A
    wrong password, an unknown username and an inactive user are all the
    same ``InvalidInput``, so the answer tells nobody which accounts exist.
    A success is a sign-in like the site's (``user_logged_in``): it records
    the time and clears the pair's failures.
    """
    user = authenticate(request, username=username, password=password)
    if getattr(request, "axes_locked_out", False):
        raise SignInLockedOut(_cool_off_seconds(request))
    if user is None:
        raise InvalidInput(WRONG_CREDENTIALS)
    user_logged_in.send(sender=type(user), request=request, user=user)
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


def _cool_off_seconds(request: HttpRequest) -> int | None:
    cool_off = get_cool_off(request)
    return max(1, math.ceil(cool_off.total_seconds())) if cool_off else None
