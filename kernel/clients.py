"""Who a request comes from: its client address, by one rule for every rate
limit, lockout and internal check."""

import functools
import ipaddress
import logging

from django.http import HttpRequest
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# What reverse proxies add to a request they pass on (nginx's usual
# X-Real-IP and X-Forwarded-*, HAProxy's forwardfor, RFC 7239's Forwarded).
PROXY_HEADERS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_REAL_IP",
    "HTTP_FORWARDED",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
)


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


@functools.cache
def networks_of(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """The networks among ``cidrs``; what is not one is left out (the
    settings that hold such lists have system checks that report it)."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            logger.warning("%r is not a network; left out", cidr)
    return tuple(networks)


def address_in(request: HttpRequest, cidrs: tuple[str, ...]) -> bool:
    """Whether the caller's address, by ``client_address``'s rule, is in one
    of the networks ``cidrs``. A header a client wrote itself never counts.

    A request that came through a proxy (it carries one of the headers
    proxies add: ``PROXY_HEADERS``) while no proxy is trusted
    (``TRUSTED_PROXY_COUNT`` 0) is from nowhere we know: the connection's
    address is the proxy's (often loopback, on the same host), not the
    client's. It is never inside.
    """
    if not api_settings.NUM_PROXIES and any(header in request.META for header in PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(client_address(request))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks_of(cidrs))
