"""The app's URLs plus the benchmark's own endpoints (bench settings only).

- ``bench/naive/<id>/``: the reference's five-table query on the write
  database, as JSON: what the page would cost without the read model.
- ``bench/ceiling/<id>/``: the least a Django endpoint can do, one stored JSON
  row by primary key, returned as it is (``bench.bare_urls``), here inside the
  project's settings and middleware.
- ``bench/cached/<id>/``: the reference's cache-aside baseline, the naive
  query behind Redis with a TTL.
"""

import json
from functools import cache
from typing import Any

import redis
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from bench.bare_urls import ceiling
from bench.naive import FIVE_TABLE_QUERY
from config.urls import urlpatterns as app_urlpatterns


def five_table_row(product_id: int) -> dict[str, Any] | None:
    with connections["default"].cursor() as cursor:
        cursor.execute(FIVE_TABLE_QUERY, [product_id])
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([column.name for column in cursor.description], row, strict=True))


def naive(request: HttpRequest, product_id: int) -> HttpResponse:
    row = five_table_row(product_id)
    if row is None:
        return JsonResponse({"detail": "No such product."}, status=404)
    return JsonResponse(row, encoder=DjangoJSONEncoder)


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(getattr(settings, "BENCH_CACHE_URL", "redis://127.0.0.1:6379/8"))


def cached(request: HttpRequest, product_id: int) -> HttpResponse:
    """Cache-aside as the reference writes it: get, or query and set with a TTL."""
    key = f"product:{product_id}"
    body = _redis().get(key)
    if body is None:
        row = five_table_row(product_id)
        if row is None:
            return JsonResponse({"detail": "No such product."}, status=404)
        body = json.dumps(row, cls=DjangoJSONEncoder).encode()
        ttl = getattr(settings, "BENCH_CACHE_TTL", 300.0)
        _redis().set(key, body, px=max(1, round(1000 * ttl)))
    return HttpResponse(body, content_type="application/json")


urlpatterns = [
    path("bench/naive/<int:product_id>/", naive),
    path("bench/ceiling/<int:product_id>/", ceiling),
    path("bench/cached/<int:product_id>/", cached),
    *app_urlpatterns,
]
