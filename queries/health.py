"""``/healthz``: both databases, the broker when there is one, projector lag.

200 when all is well, 503 otherwise. Everyone gets the status; staff (signed
in) and callers from ``HEALTH_INTERNAL_NETWORKS`` also get the reasons and
every named check with its figures. The checks are cheap and bounded:
``SELECT 1``, a Redis ``PING`` with a short timeout, and one lag query that
counts at most ``HEALTH_LAG_COUNT_CAP`` events per projector, run at most once
per ``HEALTH_LAG_CACHE_SECONDS`` in a process however many requests come.
"""

import dataclasses
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from eventstore import eventlog
from eventstore.databases import READ_DB, WRITE_DB
from eventstore.eventlog import START, LogPosition
from kernel.clients import address_in
from projections.models import Checkpoint
from projections.status import as_moment, events_behind
from queries.consistency import PRODUCTS, SELLERS

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 0.5
PROJECTORS = (PRODUCTS, SELLERS)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _database(alias: str) -> dict[str, Any]:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def _broker() -> dict[str, Any]:
    client = redis.Redis.from_url(
        settings.CELERY_BROKER_URL,
        socket_timeout=BROKER_TIMEOUT_SECONDS,
        socket_connect_timeout=BROKER_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
    finally:
        client.close()
    return {}


def slowest_checkpoint(projector: str) -> LogPosition:
    """The lowest position over the projector's partitions; a missing one is at the start."""
    rows = list(
        Checkpoint.objects.using(READ_DB)
        .filter(projector=projector)
        .values_list("transaction_id", "position", "partitions")
    )
    # Each row says how many there are (``Checkpoint.partitions``).
    if not rows or len(rows) < max(count for *_, count in rows):
        return START
    return min(LogPosition(int(txid), int(position)) for txid, position, _ in rows)


def projector_lags() -> dict[str, dict[str, Any]]:
    """Each projector's slowest partition: its position and how far behind it is.

    ``events_behind`` stops at ``HEALTH_LAG_COUNT_CAP``, with
    ``events_behind_capped`` true when there are more.
    """
    cap = settings.HEALTH_LAG_COUNT_CAP
    positions = {projector: slowest_checkpoint(projector) for projector in PROJECTORS}
    now = timezone.now()
    lags = {}
    for projector, (behind, oldest_value) in events_behind(positions, cap).items():
        oldest = as_moment(oldest_value)
        seconds = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
        lags[projector] = {
            "position": positions[projector].token(),
            "events_behind": min(behind, cap),
            "events_behind_capped": behind > cap,
            "seconds_behind": round(seconds, 3),
        }
    return lags


def _timed(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = {"ok": True, **check()}
    except Exception as error:
        # The details (hosts, ports) are for the log, not for the answer.
        logger.warning("Health check failed", exc_info=True)
        result = {"ok": False, "error": type(error).__name__}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _projector_checks() -> dict[str, dict[str, Any]]:
    started = time.perf_counter()
    try:
        lags = projector_lags()
    except Exception as error:
        logger.warning("Health check failed", exc_info=True)
        lags = {projector: {"ok": False, "error": type(error).__name__} for projector in PROJECTORS}
    else:
        lags = {projector: {"ok": True, **lag} for projector, lag in lags.items()}
    ms = round((time.perf_counter() - started) * 1000, 1)
    checks = {f"projector_{projector}": {**check, "ms": ms} for projector, check in lags.items()}
    checks["event_writers"] = _timed(_stalled_writers)
    return checks


def _stalled_writers() -> dict[str, Any]:
    """Event writers' transactions open longer than ``PROJECTION_STALL_SECONDS``:
    every projector waits for them (``eventlog.stalled_writers``)."""
    stalled = eventlog.stalled_writers(settings.PROJECTION_STALL_SECONDS)
    return {"stalled": [dataclasses.asdict(writer) for writer in stalled]}


class LagCache:
    """The projector checks, kept per process for ``HEALTH_LAG_CACHE_SECONDS``.

    Requests that come while they are computed wait for that computation
    instead of starting their own, so a flood of ``/healthz`` costs one lag
    query per process and interval.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checks: dict[str, dict[str, Any]] | None = None
        self._until = 0.0

    def get(self, compute: Callable[[], dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
        with self._lock:
            if self._checks is None or time.monotonic() >= self._until:
                self._checks = compute()
                self._until = time.monotonic() + settings.HEALTH_LAG_CACHE_SECONDS
            return self._checks

    def clear(self) -> None:
        with self._lock:
            self._checks = None


lag_cache = LagCache()


def is_internal(request: HttpRequest) -> bool:
    """Whether the caller's address (``kernel.clients.client_address``'s rule)
    is in ``HEALTH_INTERNAL_NETWORKS``."""
    return address_in(request, tuple(settings.HEALTH_INTERNAL_NETWORKS))


def shows_details(request: HttpRequest) -> bool:
    if is_internal(request):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, dict[str, Any]] = {
        "database_default": _timed(lambda: _database(WRITE_DB)),
        "database_read": _timed(lambda: _database(READ_DB)),
    }
    if settings.CELERY_BROKER_URL:
        checks["broker"] = _timed(_broker)
    reasons = [f"{name}: {check['error']}" for name, check in checks.items() if not check["ok"]]
    if not reasons:
        limit = settings.HEALTH_MAX_LAG_SECONDS
        for name, check in lag_cache.get(_projector_checks).items():
            checks[name] = check
            if not check["ok"]:
                reasons.append(f"{name}: {check['error']}")
            elif name == "event_writers":
                reasons.extend(
                    f"projectors stalled behind {eventlog.StalledWriter(**writer).describe()}"
                    for writer in check["stalled"]
                )
            elif check["seconds_behind"] > limit:
                events = f"{check['events_behind']}{'+' if check['events_behind_capped'] else ''}"
                reasons.append(
                    f"{name}: {check['seconds_behind']:.0f} s behind "
                    f"({events} events), more than {limit:.0f} s"
                )
    status = 503 if reasons else 200
    body: dict[str, Any] = {"status": "unhealthy" if reasons else "ok"}
    if shows_details(request):
        body.update(reasons=reasons, checks=checks)
    return JsonResponse(body, status=status)
