"""``/healthz``: both databases, the broker when there is one, projector lag.

200 with the figures when all is well, 503 with the reasons otherwise. The
checks are cheap and bounded: ``SELECT 1``, a Redis ``PING`` with a short
timeout, and a count of the events behind the slowest checkpoint.
"""

import datetime as dt
import functools
import logging
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

from projections import eventlog
from projections.consistency import PRODUCTS, SELLERS, partition_count
from projections.eventlog import START, LogPosition
from projections.models import Checkpoint

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 0.5


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
    rows = (
        Checkpoint.objects.using("read")
        .filter(projector=projector, partition__lt=partition_count(projector))
        .values_list("transaction_id", "position")
    )
    positions = [LogPosition(int(txid), int(position)) for txid, position in rows]
    if len(positions) < partition_count(projector):
        return START
    return min(positions)


def projector_lag(projector: str) -> dict[str, Any]:
    position = slowest_checkpoint(projector)
    behind = eventlog.count_after(position)
    oldest = eventlog.oldest_after(position) if behind else None
    if oldest is not None and timezone.is_naive(oldest):
        oldest = oldest.replace(tzinfo=dt.UTC)  # SQLite keeps UTC without an offset
    seconds = max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0.0
    return {
        "position": position.token(),
        "events_behind": behind,
        "seconds_behind": round(seconds, 3),
    }


def _timed(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = {"ok": True, **check()}
    except Exception as error:
        # The details (hosts, ports) are for the log, not for the public answer.
        logger.warning("Health check failed", exc_info=True)
        result = {"ok": False, "error": type(error).__name__}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, dict[str, Any]] = {
        "database_default": _timed(lambda: _database("default")),
        "database_read": _timed(lambda: _database("read")),
    }
    if settings.CELERY_BROKER_URL:
        checks["broker"] = _timed(_broker)
    reasons = [f"{name}: {check['error']}" for name, check in checks.items() if not check["ok"]]
    if not reasons:
        limit = settings.HEALTH_MAX_LAG_SECONDS
        for projector in (PRODUCTS, SELLERS):
            name = f"projector_{projector}"
            checks[name] = _timed(functools.partial(projector_lag, projector))
            check = checks[name]
            if not check["ok"]:
                reasons.append(f"{name}: {check['error']}")
            elif check["seconds_behind"] > limit:
                reasons.append(
                    f"{name}: {check['seconds_behind']:.0f} s behind "
                    f"({check['events_behind']} events), more than {limit:.0f} s"
                )
    body = {"status": "unhealthy" if reasons else "ok", "reasons": reasons, "checks": checks}
    return JsonResponse(body, status=503 if reasons else 200)
