"""Server-rendered product pages, read from the read models.

The detail page is one read-model row; after a signed-in user posts a review
it first waits (briefly) for the read model to apply it, so the author sees
their own review on the page that follows. While the read database cannot be
reached the pages answer 503 with ``Retry-After``.
"""

import functools
import logging
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.messages import get_messages
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils.dateparse import parse_datetime
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_safe

from kernel.pages import RETRY_AFTER_SECONDS, pending_write
from projections.models import ProductReadModel
from queries import caching, consistency, selectors
from queries.caching import FragmentCache, source_fingerprint, strong_etag
from queries.charts import price_history_svg
from queries.serializers import FILTER_NAMES, ProductListQuerySerializer, query_data
from queries.throttling import check_query_rate

logger = logging.getLogger(__name__)

PAGE_SIZE = 24
RATING_CHOICES = [
    ("5", "★★★★★ Excellent"),
    ("4", "★★★★☆ Good"),
    ("3", "★★★☆☆ Fair"),
    ("2", "★★☆☆☆ Poor"),
    ("1", "★☆☆☆☆ Bad"),
]
MIN_RATING_CHOICES = [("4", "4 stars & up"), ("3", "3 stars & up"), ("2", "2 stars & up")]


def read_model_page[**P](
    view: Callable[P, HttpResponse],
) -> Callable[P, HttpResponse]:
    """Answer 503 with ``Retry-After`` while the read database cannot be reached."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        try:
            return view(*args, **kwargs)
        except (OperationalError, InterfaceError) as error:
            logger.warning("The read database is unreachable: %r", error)
            request = args[0]
            assert isinstance(request, HttpRequest)
            response = render(request, "products/unavailable.html", status=503)
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response

    return wrapper


def query_rate_limited[**P](
    view: Callable[P, HttpResponse],
) -> Callable[P, HttpResponse]:
    """Answer 429 with ``Retry-After`` to a client address over
    ``QUERY_THROTTLE_RATE`` (``queries.throttling``), as the query API does."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        request = args[0]
        assert isinstance(request, HttpRequest)
        verdict = check_query_rate(request)
        if not verdict.allowed:
            response = render(request, "products/too_many_requests.html", status=429)
            response["Retry-After"] = str(max(1, math.ceil(verdict.retry_after)))
            return response
        return view(*args, **kwargs)

    return wrapper


def stars(rating: Any) -> str:
    """Five stars, the rating rounded to whole ones filled."""
    if rating is None:
        return "☆☆☆☆☆"
    filled = min(5, max(0, int(Decimal(str(rating)).to_integral_value())))
    return "★" * filled + "☆" * (5 - filled)


def histogram_bars(row: ProductReadModel) -> list[dict[str, int]]:
    counts = list(row.rating_histogram or [0] * 5)
    total = sum(counts)
    return [
        {
            "stars": star,
            "count": counts[star - 1],
            "percent": round(100 * counts[star - 1] / total) if total else 0,
        }
        for star in range(5, 0, -1)
    ]


def _reviews(row: ProductReadModel) -> list[dict[str, Any]]:
    return [
        {
            **entry,
            "stars": stars(entry.get("rating")),
            "created": parse_datetime(str(entry.get("created_at"))),
            "edited": parse_datetime(str(entry["edited_at"])) if entry.get("edited_at") else None,
        }
        for entry in row.recent_reviews
    ]


def _related(row: ProductReadModel) -> list[dict[str, Any]]:
    return [{**entry, "stars": stars(entry.get("avg_rating"))} for entry in row.related_products]


fragments = FragmentCache(size=512)
# Whole anonymous detail pages, by row version (``queries.caching``).
pages = FragmentCache(size=512)
# What else a page's bytes depend on: its templates and the code that fills them.
PAGE_FINGERPRINT = source_fingerprint(
    [*(settings.BASE_DIR / "templates").rglob("*.html"), *caching.QUERY_SOURCES]
)
PAGE_VARY = ("Cookie",)


def product_fragments(row: ProductReadModel) -> tuple[SafeString, SafeString]:
    """The parts of the detail page that depend on the row alone: the main
    column (product, chart, reviews) and the side column (ratings, seller,
    related products)."""

    def render() -> tuple[SafeString, SafeString]:
        context = {
            "product": row,
            "stars": stars(row.avg_rating),
            "histogram": histogram_bars(row),
            "chart": price_history_svg(row.price_history, currency=row.currency),
            "reviews": _reviews(row),
            "related": _related(row),
        }
        return (
            mark_safe(render_to_string("products/_detail_main.html", context)),  # noqa: S308
            mark_safe(render_to_string("products/_detail_aside.html", context)),  # noqa: S308
        )

    return fragments.get_or_render(
        (row.product_id, row.last_position, row.updated_at.isoformat()), render
    )


def render_product_page(
    request: HttpRequest,
    product_id: int,
    *,
    review_form: forms.Form | None = None,
    status: int = 200,
) -> HttpResponse:
    """The detail page; ``review_form`` is a bound review form to show again
    with its errors (the template draws the fields itself, so the query side
    needs no write-side form)."""
    notice = None
    pending = pending_write(request, product_id)
    if pending is not None:
        if consistency.wait_for(pending.position, consistency.PRODUCTS, keys=pending.keys):
            notice = ("success", "Thank you! Your review is published.")
        else:
            notice = (
                "info",
                "Thank you! Your review is being published; it will show up here shortly.",
            )
    row = selectors.product_get(product_id=product_id)
    if row is None:
        raise Http404("No such product.")
    return _product_page(request, row, review_form=review_form, notice=notice, status=status)


def _product_page(
    request: HttpRequest,
    row: ProductReadModel,
    *,
    review_form: forms.Form | None = None,
    notice: tuple[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    main, aside = product_fragments(row)
    context = {
        "product": row,
        "main": main,
        "aside": aside,
        "can_review": request.user.is_authenticated and row.is_active,
        "review_form": review_form,
        "rating_choices": RATING_CHOICES,
        "notice": notice,
    }
    return render(request, "products/detail.html", context, status=status)


def page_etag(version: selectors.RowVersion) -> str:
    return strong_etag("page", PAGE_FINGERPRINT, *version.parts)


def anonymous_product_page(request: HttpRequest, product_id: int) -> HttpResponse:
    """The page as every anonymous visitor sees it: 304 when the visitor has
    this version, else the page kept for the row's version (when the URL has
    no query string, which would only change its sign-in link) or rendered."""
    current = selectors.product_version(product_id=product_id)
    if current is None:
        raise Http404("No such product.")
    etag = page_etag(current)
    condition = caching.conditional_answer(request, etag)
    if condition is not None:
        return condition
    plain = not request.META.get("QUERY_STRING")
    key = (request.path, current.parts)  # the path is in the page (its sign-in link)
    body = pages.get(key) if plain else None
    if body is None:
        row = selectors.product_get(product_id=product_id)
        if row is None:
            raise Http404("No such product.")
        response = _product_page(request, row)
        rendered = selectors.RowVersion.of(row)
        etag = page_etag(rendered)
        if plain:
            pages.put((request.path, rendered.parts), response.content)
    else:
        response = HttpResponse(body)
    response["ETag"] = etag
    return response


@require_safe
@query_rate_limited
@read_model_page
def product_detail(request: HttpRequest, product_id: int) -> HttpResponse:
    if is_personal(request):
        response = render_product_page(request, product_id)
        caching.private(response, vary=PAGE_VARY)
    else:
        response = anonymous_product_page(request, product_id)
        if response.status_code in caching.CACHEABLE_STATUSES:
            caching.shared(response, vary=PAGE_VARY)
        else:
            caching.never(response)  # a 412: nothing for a shared cache
    return response


def is_personal(request: HttpRequest) -> bool:
    """Whether the page shows something of this visitor's own: their name,
    the review form, a message waiting for them, or the session that holds
    them. Such a page is never kept nor shared."""
    return (
        request.user.is_authenticated
        or settings.SESSION_COOKIE_NAME in request.COOKIES
        or len(get_messages(request)) > 0
    )


def _page_link(request: HttpRequest, cursor: selectors.Cursor | None) -> str | None:
    if cursor is None:
        return None
    params = request.GET.copy()
    params["cursor"] = cursor.encode()
    return f"?{params.urlencode()}"


@require_safe
@query_rate_limited
@read_model_page
def product_list(request: HttpRequest) -> HttpResponse:
    query = ProductListQuerySerializer(data=query_data(request.GET, FILTER_NAMES))
    errors: dict[str, Any] = {}
    if query.is_valid():
        filters, ordering = query.filters(), query.validated_data["ordering"]
    else:
        errors = dict(query.errors)
        filters, ordering = selectors.ProductFilters(), selectors.DEFAULT_ORDERING
    cursor = None
    if request.GET.get("cursor") and not errors:
        try:
            cursor = selectors.Cursor.decode(request.GET["cursor"], ordering=ordering)
        except selectors.InvalidCursor as error:
            errors["cursor"] = [str(error)]
    page = selectors.product_list(
        filters=filters, ordering=ordering, cursor=cursor, page_size=PAGE_SIZE
    )
    context = {
        "products": [{"row": row, "stars": stars(row.avg_rating)} for row in page.products],
        "next_link": _page_link(request, page.next_cursor),
        "previous_link": _page_link(request, page.previous_cursor),
        "errors": errors,
        "values": {name: request.GET.get(name, "") for name in FILTER_NAMES},
        "ordering": ordering,
        "orderings": list(selectors.ORDERING_LABELS.items()),
        "sellers": selectors.seller_choices(),
        "min_rating_choices": MIN_RATING_CHOICES,
    }
    return render(request, "products/list.html", context, status=400 if errors else 200)
