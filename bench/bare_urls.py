"""One URL: ``bench/ceiling/<id>/``, the least a Django endpoint can do, one
stored JSON row by primary key on the read database, returned as it is: the
ceiling for any endpoint here. ``bench.urls`` serves it inside the project's
settings too; ``bench.bare_settings`` serves it alone, with no middleware."""

from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.urls import path

CEILING_TABLE = "bench_stored_json"


def ceiling(request: HttpRequest, product_id: int) -> HttpResponse:
    with connections["read"].cursor() as cursor:
        cursor.execute(f"SELECT body FROM {CEILING_TABLE} WHERE id = %s", [product_id])
        row = cursor.fetchone()
    if row is None:
        return HttpResponse(status=404)
    return HttpResponse(row[0], content_type="application/json")


urlpatterns = [path("bench/ceiling/<int:product_id>/", ceiling)]
