"""A per-client rate limit for the public query endpoints and pages.

Queries need no account, so they are counted per client address
(``kernel.clients.client_address``: the connection's own, or the one a
trusted proxy in front put in ``X-Forwarded-For`` when
``TRUSTED_PROXY_COUNT`` says how many proxies there are). A client-sent header
is never believed otherwise, so it cannot spread its requests over made-up
addresses. The limit is ``QUERY_THROTTLE_RATE`` (e.g. ``100/s``) in fixed
windows.

Counting is local first. Each process counts a client's hits in memory and
adds them to the shared count in Redis once every ``batch`` hits (a
twentieth of the limit, at least 1), learning the other processes' hits in
the same round trip. So a reader under a twentieth of the limit never waits
on Redis at all, a client over the limit is refused from memory, and every
process together lets a client through at most ``batch - 1`` hits per
process beyond the limit in a window (5% of it per process). With a limit
under 40 per window, every hit is counted in Redis and the limit is exact.
While Redis is down the limit fails open; without Redis each process counts
alone.
"""

import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle

from kernel.cache import shared_counter
from kernel.clients import client_address

KEY = "throttle:queries:{client}:{window}"
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A process reports its hits to the shared count every limit / BATCH_DIVISOR hits.
BATCH_DIVISOR = 20
# Clients one process keeps counts of in a window (about 170 bytes each);
# beyond them, hits are counted in Redis alone, one round trip each.
MAX_LOCAL_CLIENTS = 100_000


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


@dataclass
class _Count:
    known: int = 0  # the shared count when this process last reported (its own hits included)
    unreported: int = 0  # this process's hits since


class LocalFirstCounter:
    """One process's counts of the current window, reported in batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window: tuple[int, int] | None = None
        self._counts: dict[str, _Count] = {}

    def hit(self, client: str, *, limit: int, seconds: int, window: int) -> bool:
        """Count one hit of ``client``; whether it is within the limit."""
        batch = max(1, limit // BATCH_DIVISOR)
        with self._lock:
            if self._window is None or self._window[0] != seconds or self._window[1] < window:
                self._window, self._counts = (seconds, window), {}  # a new window, or rate
            elif self._window[1] > window:
                return True  # a hit of a window that just ended, counted late
            count = self._counts.get(client)
            if count is None:
                if len(self._counts) >= MAX_LOCAL_CLIENTS:
                    # Too many clients in one window to keep: this one is
                    # counted in the shared count alone, one hit at a time.
                    count, batch = _Count(), 1
                else:
                    count = self._counts[client] = _Count()
            count.unreported += 1
            if count.known + count.unreported > limit:
                return False  # over already, whatever the others did
            if count.unreported < batch:
                return True
            hits, count.unreported = count.unreported, 0
        total = self._report(client, hits, seconds=seconds, window=window, count=count)
        return total is None or total <= limit

    def _report(
        self, client: str, hits: int, *, seconds: int, window: int, count: _Count
    ) -> int | None:
        """Add ``hits`` to the shared count; the new total (None: unknown, fail open)."""
        shared = shared_counter()
        if shared is None:
            total: int | None = count.known + hits  # this process is the only counter
        else:
            total = shared.add_hits(KEY.format(client=client, window=window), hits, seconds)
        if total is not None:
            with self._lock:
                count.known = max(count.known, total)
        return total


_counter = LocalFirstCounter()


def check_query_rate(request: HttpRequest) -> Verdict:
    limit = parse_rate(settings.QUERY_THROTTLE_RATE)
    if limit is None:
        return Verdict(True)
    allowed, seconds = limit
    now = time.time()
    window = int(now // seconds)
    client = client_address(request)
    if _counter.hit(client, limit=allowed, seconds=seconds, window=window):
        return Verdict(True)
    return Verdict(False, retry_after=(window + 1) * seconds - now)


COUNTED = "_storefront_query_rate_counted"


def mark_counted(request: HttpRequest) -> None:
    """This request has been counted already (by a view in front of DRF's)."""
    setattr(request, COUNTED, True)


class QueryRateThrottle(BaseThrottle):
    """DRF's face of ``check_query_rate``: 429 with ``Retry-After``."""

    def __init__(self) -> None:
        self.retry_after = 0.0

    def allow_request(self, request: Any, view: Any) -> bool:
        if getattr(request._request, COUNTED, False):
            return True
        verdict = check_query_rate(request._request)
        self.retry_after = verdict.retry_after
        return verdict.allowed

    def wait(self) -> float | None:
        return self.retry_after
