"""Who a request comes from: its client address, by one rule for every rate
limit, lockout and internal check."""

import ipaddress

from django.http import HttpRequest
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle


def client_address(request: HttpRequest) -> str:
    """The caller's IP address, by the rule the API's throttles use:
    ``REMOTE_ADDR``, or with ``TRUSTED_PROXY_COUNT`` proxies in front the
    address the outermost of them saw. What is not an address counts as
    ``REMOTE_ADDR``, so a lockout is never keyed on text a client made up."""
    remote = request.META.get("REMOTE_ADDR", "")
    if not api_settings.NUM_PROXIES or "HTTP_X_FORWARDED_FOR" not in request.META:
        return remote  # the server's own say: the connection's address (the hot path)
    ident = BaseThrottle().get_ident(request)  # type: ignore[arg-type]
    try:
        return str(ipaddress.ip_address(ident))
    except ValueError:
        return remote
