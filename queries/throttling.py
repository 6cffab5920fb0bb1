"""A per-client rate limit for the public query endpoints and pages.

Queries need no account, so they are counted per client address
(``kernel.clients.client_address``: the connection's own, or the one a
trusted proxy in front put in ``X-Forwarded-For`` when
``TRUSTED_PROXY_COUNT`` says how many proxies there are). A client-sent header
is never believed otherwise, so it cannot spread its requests over made-up
addresses. The count is one Redis round trip per
request in a fixed window (``QUERY_THROTTLE_RATE``, e.g. ``100/s``); while
Redis is down it fails open, and without Redis each process counts alone.
"""

import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle

from kernel.cache import count_hit
from kernel.clients import client_address

KEY = "throttle:queries:{client}:{window}"
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"100/s"`` as (100 requests, 1 second); None or "" means no limit."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period[:1]]


class Verdict:
    """Whether a request may go on, and if not, how long until its window ends."""

    def __init__(self, allowed: bool, retry_after: float = 0.0) -> None:
        self.allowed = allowed
        self.retry_after = retry_after


def check_query_rate(request: HttpRequest) -> Verdict:
    limit = parse_rate(settings.QUERY_THROTTLE_RATE)
    if limit is None:
        return Verdict(True)
    allowed, seconds = limit
    now = time.time()
    window = int(now // seconds)
    count = count_hit(KEY.format(client=client_address(request), window=window), seconds)
    if count is None or count <= allowed:
        return Verdict(True)
    return Verdict(False, retry_after=(window + 1) * seconds - now)


class QueryRateThrottle(BaseThrottle):
    """DRF's face of ``check_query_rate``: 429 with ``Retry-After``."""

    def __init__(self) -> None:
        self.retry_after = 0.0

    def allow_request(self, request: Any, view: Any) -> bool:
        verdict = check_query_rate(request._request)
        self.retry_after = verdict.retry_after
        return verdict.allowed

    def wait(self) -> float | None:
        return self.retry_after
