"""``/metrics``: every metric of the deployment in Prometheus' text format.

The counters and histograms are the processes' own (``kernel.metrics``,
``projections.engine.metrics``, ``queries.consistency``,
``config.middleware``); with ``PROMETHEUS_MULTIPROC_DIR`` set they are summed
over every process that shares that folder. Where the projections stand is
read from the databases at each scrape (``projections.metrics``).

Only callers from ``METRICS_ALLOWED_NETWORKS`` or with
``Authorization: Bearer <METRICS_TOKEN>`` are answered; others get a 404, as
if there were nothing here.
"""

import functools
import hmac
import os

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.cache import never_cache
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from kernel.clients import address_in
from projections.metrics import collector as projection_collector


def may_scrape(request: HttpRequest) -> bool:
    if address_in(request, tuple(settings.METRICS_ALLOWED_NETWORKS)):
        return True
    expected = settings.METRICS_TOKEN
    if not expected:
        return False
    given = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), expected.encode()
    )


@functools.cache
def scrape_registry() -> CollectorRegistry:
    """The registry a scrape reads: the process's own, or, in multiprocess
    mode, one that sums the folder's files; the projections' figures beside."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    registry.register(projection_collector)
    return registry


# A process's own counters would each add a ``_created`` series (the summed
# multiprocess ones have none): left out, so both modes export the same names.
disable_created_metrics()


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not may_scrape(request):
        raise Http404  # before anything else, so others cannot tell it is here
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)
