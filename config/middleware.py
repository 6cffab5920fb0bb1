"""Middleware of the project's own, first in both stacks (``MIDDLEWARE`` and
``config.handlers.LEAN_MIDDLEWARE``): a request id for every request, and
the HTTP metrics."""

import os
import re
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Histogram

from eventstore.correlation import REQUEST_ID_MAX_LENGTH, request_id_scope

REQUEST_ID_HEADER = "X-Request-ID"
# What a proxy in front may pass on (nginx's $request_id, a UUID, a trace id):
# a few safe characters, so the id is never a way into the logs.
REQUEST_ID_SHAPE = re.compile(rf"[A-Za-z0-9._-]{{1,{REQUEST_ID_MAX_LENGTH}}}")

HTTP_SECONDS = Histogram(
    "storefront_http_request_seconds",
    "How long requests took in Django, by route and method.",
    ["view", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
HTTP_ANSWERS = Counter(
    "storefront_http_responses",
    "Answers by route, method and status code.",
    ["view", "method", "status"],
)
# Any other method counts as "other": a client never adds a label value.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"

Handler = Callable[[HttpRequest], HttpResponse]


class RequestIdMiddleware:
    """Gives each request an id: the ``X-Request-ID`` a trusted proxy in front
    sent (``TRUSTED_PROXY_COUNT`` above 0), when it is well formed, or a new
    one; a client's own header is never taken, since the id is kept with its
    events. The id is on the answer's ``X-Request-ID``, on each log line
    written while serving it (``config.logs``) and on every event its command
    records."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.META.get("HTTP_X_REQUEST_ID", "") if settings.TRUSTED_PROXY_COUNT else ""
        # 128 random bits in hex, as uuid4().hex but without building a UUID.
        request_id = given if REQUEST_ID_SHAPE.fullmatch(given) else os.urandom(16).hex()
        request.request_id = request_id  # type: ignore[attr-defined]
        with request_id_scope(request_id):
            response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


def route_of(request: HttpRequest) -> str:
    """The URL pattern that served the request (``api/products/<int:pk>/``),
    never the path itself, so labels stay few whatever clients ask for."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    return match.route or match.view_name or UNMATCHED


class RequestMetricsMiddleware:
    """Times every request and counts its answer (``/metrics``). The labelled
    series are kept by their labels (a few dozen: routes, methods, statuses),
    so a request skips ``labels()``'s lock and checks."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        self.timers: dict[tuple[str, str], Any] = {}
        self.counters: dict[tuple[str, str, int], Any] = {}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        view = route_of(request)
        method = request.method if request.method in KNOWN_METHODS else "other"
        timer = self.timers.get((view, method))
        if timer is None:
            timer = self.timers[view, method] = HTTP_SECONDS.labels(view, method)
        timer.observe(time.perf_counter() - started)
        status = response.status_code
        counter = self.counters.get((view, method, status))
        if counter is None:
            counter = HTTP_ANSWERS.labels(view, method, str(status))
            self.counters[view, method, status] = counter
        counter.inc()
        return response
