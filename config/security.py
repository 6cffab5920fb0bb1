"""Who is signing in, and what a locked-out sign-in sees (django-axes hooks)."""

import math
from typing import Any

from axes.helpers import get_cool_off
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

JSON = "application/json"


def sign_in_locked_out(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """429 with ``Retry-After`` and a page that says why, for the site's and the
    admin's sign-in alike. The API's token endpoint answers its lockouts in
    JSON itself (``kernel.token_api``): that answer stands."""
    if original_response is not None and original_response.get("Content-Type") == JSON:
        return original_response
    cool_off = get_cool_off(request)
    seconds = max(1, round(cool_off.total_seconds())) if cool_off else None
    minutes = math.ceil(seconds / 60) if seconds else None
    response = render(request, "registration/locked_out.html", {"minutes": minutes}, status=429)
    if seconds:
        response["Retry-After"] = str(seconds)
    return response
