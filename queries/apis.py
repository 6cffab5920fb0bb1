"""The read-only query API. Every view reads alias ``read`` and nothing else:
no authentication (the user table lives on ``default``), one selector call,
one output serializer.

A query may carry a consistency token from a command (``X-Consistency-Token``
or ``?consistency_token=``); it then waits, briefly, until the read model has
applied that position, and says ``X-Read-Model-Stale: true`` if it had to
answer before. When the read database cannot be reached the answer is 503
with ``Retry-After``: the commands still work, and the read model catches up
once the database is back.
"""

import dataclasses
import functools
import logging
import math
import re
from collections.abc import Callable
from typing import Any, cast

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound, Throttled, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import BasePagination
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.viewsets import ViewSet

from eventstore import tokens
from eventstore.tokens import Token
from kernel.http import ErrorSerializer
from projections.models import ProductReadModel, SellerReadModel
from queries import caching, consistency, selectors
from queries.caching import FragmentCache, strong_etag
from queries.openapi import (
    BAD_QUERY,
    CONDITIONAL_PARAMETERS,
    CONSISTENCY_PARAM,
    NOT_MODIFIED,
    RETRY_AFTER,
    STALE_HEADER,
    TOKEN_MAX_LENGTH,
    TOKEN_PATTERN,
    TOO_MANY,
    UNAVAILABLE,
    QuerySchema,
    consistency_parameters,
    id_parameter,
)
from queries.selectors import RowVersion
from queries.serializers import (
    FILTER_NAMES,
    PAGE_NAMES,
    PageQuerySerializer,
    ProductDetailSerializer,
    ProductListItemSerializer,
    ProductListQuerySerializer,
    SellerSerializer,
    query_data,
)
from queries.throttling import QueryRateThrottle, check_query_rate, mark_counted

CONSISTENCY_META = "HTTP_X_CONSISTENCY_TOKEN"
MALFORMED_CONSISTENCY = (
    "Malformed consistency token: send it back exactly as a command answered it."
)
FOREIGN_CONSISTENCY = "Not a consistency token this server issued."
PRODUCT_NOT_FOUND = "No such product."
SELLER_NOT_FOUND = "No such seller."
TOKEN_SHAPE = re.compile(TOKEN_PATTERN)
READ_MODEL_UNAVAILABLE = "The read model is unavailable for a moment; try again shortly."
RETRY_AFTER_SECONDS = 5
# The read database is down or a connection broke: a 503, not a 500.
READ_DATABASE_UNREACHABLE = (OperationalError, InterfaceError)
# A consistency token sent as a header changes what the answer waited for.
TOKEN_VARY = ("X-Consistency-Token",)
# The detail answers, kept by row version (a version names its content).
answers = FragmentCache(size=1024)
JSON = "application/json"
ALLOWED = "GET, HEAD, OPTIONS"  # what DRF's viewset says in Allow

logger = logging.getLogger(__name__)


def requested_token(request: HttpRequest) -> tuple[Token, bool] | None:
    """The consistency token the query carries, with whether it is fresh
    enough to wait for (``consistency.read_token``), or None. A malformed
    token, or one this server did not issue, is a 400 and never waits."""
    given = [
        raw
        for raw in (request.META.get(CONSISTENCY_META), request.GET.get(CONSISTENCY_PARAM))
        if raw is not None
    ]
    if not given:
        return None
    # Both forms are checked when both are sent (the header wins); an empty
    # token is not one either.
    if not all(len(raw) <= TOKEN_MAX_LENGTH and TOKEN_SHAPE.fullmatch(raw) for raw in given):
        raise ValidationError({CONSISTENCY_PARAM: [MALFORMED_CONSISTENCY]})
    try:
        read = [tokens.read_token(raw) for raw in given]
    except tokens.InvalidToken:
        raise ValidationError({CONSISTENCY_PARAM: [FOREIGN_CONSISTENCY]}) from None
    token, fresh = read[0]
    numbers = [token.position.transaction_id, token.position.position, *(token.keys or ())]
    if max(numbers) > selectors.MAX_ID:
        raise ValidationError({CONSISTENCY_PARAM: [MALFORMED_CONSISTENCY]})
    return token, fresh


@csrf_exempt  # it changes nothing; a POST gets the same JSON 404
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """A JSON 404 for any ``/api/.../`` path that names no endpoint (a
    malformed id in a path, say), as the endpoints answer theirs."""
    return JsonResponse({"detail": "Not found."}, status=404)


@dataclasses.dataclass(frozen=True)
class RowReader[R: ProductReadModel | SellerReadModel]:
    """How a detail endpoint reads its row by key and renders it as JSON."""

    tag: tuple[str, ...]  # tells its ETags and kept answers from other kinds'
    version: Callable[[int], RowVersion | None]
    get: Callable[[int], R | None]
    render: Callable[[R], bytes]
    not_found: str


PRODUCT_ROWS = RowReader[ProductReadModel](
    tag=(),
    version=lambda key: selectors.product_version(product_id=key),
    get=lambda key: selectors.product_get(product_id=key, json_as_text=True),
    render=ProductDetailSerializer().to_json,
    not_found=PRODUCT_NOT_FOUND,
)
SELLER_ROWS = RowReader[SellerReadModel](
    tag=("seller",),
    version=lambda key: selectors.seller_version(seller_id=key),
    get=lambda key: selectors.seller_get(seller_id=key),
    render=lambda row: JSONRenderer().render(SellerSerializer(row).data),
    not_found=SELLER_NOT_FOUND,
)


def row_answer[R: ProductReadModel | SellerReadModel](
    request: HttpRequest, rows: RowReader[R], key: int
) -> HttpResponseBase | None:
    """One read-model row by key, as JSON with a strong ETag made of the row's
    version: 304 (or 412) when the request's conditions say so, else the
    answer kept for that version (``queries.caching``) or rendered once from
    the row; None when there is no such row."""
    current = rows.version(key)
    if current is None:
        return None
    etag = strong_etag(caching.CODE_FINGERPRINT, *rows.tag, *current.parts)
    condition = caching.conditional_answer(request, etag)
    if condition is not None:
        response = HttpResponse(status=condition.status_code, content_type=JSON)
        response["ETag"] = etag
        return response
    body = answers.get((rows.tag, current.parts))
    if body is None:
        row = rows.get(key)
        if row is None:
            return None
        rendered = RowVersion.of(row)
        body = rows.render(row)
        answers.put((rows.tag, rendered.parts), body)
        etag = strong_etag(caching.CODE_FINGERPRINT, *rows.tag, *rendered.parts)
    response = HttpResponse(body, content_type=JSON)
    response["ETag"] = etag
    return response


def say_what_caches_may_do(response: HttpResponseBase, *, carried_token: bool, stale: bool) -> None:
    """``queries.caching``'s rule for a query API answer."""
    if stale or response.status_code not in caching.CACHEABLE_STATUSES:
        caching.never(response)
    elif carried_token:
        caching.private(response, vary=TOKEN_VARY)
    else:
        caching.shared(response, vary=TOKEN_VARY)


def json_answer(data: dict[str, Any], status: int) -> HttpResponse:
    return HttpResponse(JSONRenderer().render(data), status=status, content_type=JSON)


def throttled_answer(retry_after: float) -> HttpResponse:
    """What DRF answers a throttled request."""
    wait = math.ceil(retry_after)
    response = json_answer({"detail": str(Throttled(wait=wait).detail)}, status=429)
    response["Retry-After"] = str(wait)
    return response


def plain_answer[R: ProductReadModel | SellerReadModel](
    request: HttpRequest, rows: RowReader[R], key: int
) -> HttpResponseBase:
    try:
        found = row_answer(request, rows, key)
    except READ_DATABASE_UNREACHABLE as error:
        logger.warning("The read database is unreachable: %r", error)
        response = json_answer({"detail": READ_MODEL_UNAVAILABLE}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return found or json_answer({"detail": rows.not_found}, status=404)


def plain_reads_first[R: ProductReadModel | SellerReadModel](
    view: Callable[..., HttpResponseBase], rows: RowReader[R], lookup: str
) -> Callable[..., HttpResponseBase]:
    """The detail route's view. A GET or HEAD is counted against the query
    limit and its consistency token checked first, without DRF's request
    machinery, as the viewset would (the same statuses, bodies and headers):
    so a flood of forged tokens costs little. One with nothing to wait for
    (no query string, no token: the hot path, and all a shared cache sends)
    is answered here too; the rest goes on to the DRF viewset."""

    @functools.wraps(view)
    def detail(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method not in ("GET", "HEAD"):
            return view(request, *args, **kwargs)
        verdict = check_query_rate(request)
        mark_counted(request)
        if not verdict.allowed:
            response: HttpResponseBase = throttled_answer(verdict.retry_after)
        elif request.META.get("QUERY_STRING") or CONSISTENCY_META in request.META:
            try:
                requested_token(request)
            except ValidationError as error:
                response = json_answer(error.detail, status=400)  # type: ignore[arg-type]
            else:
                return view(request, *args, **kwargs)
        else:
            response = plain_answer(request, rows, kwargs[lookup])
        response["Allow"] = ALLOWED
        say_what_caches_may_do(response, carried_token=False, stale=False)
        return response

    return detail


class JSONOnly(BaseContentNegotiation):
    """The query API speaks JSON only: skip negotiating (a hot-path cost)."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: Any, format_suffix: str | None = None
    ) -> tuple[Any, str]:
        return renderers[0], renderers[0].media_type


class QueryViewSet(ViewSet):
    """Public, read-only JSON endpoints on the read database, rate-limited per
    client address (``queries.throttling``); routed by ``router``."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (QueryRateThrottle,)
    parser_classes = ()
    renderer_classes = (JSONRenderer,)
    content_negotiation_class = JSONOnly
    http_method_names = ["get", "head", "options"]
    schema = QuerySchema()
    lookup_value_converter = "int"
    projector = consistency.PRODUCTS
    read_model_stale = False
    carried_token = False
    # A detail endpoint's row (its plain reads skip DRF: ``plain_reads_first``).
    rows: "RowReader[Any] | None" = None

    def wait_for_requested_token(self, request: Request) -> None:
        requested = requested_token(request._request)
        if requested is not None:
            self.carried_token = True
            token, fresh = requested
            self.read_model_stale = not consistency.wait_for(
                token.position, self.projector, fresh=fresh, keys=token.keys
            )

    @classmethod
    def as_view(cls, actions: Any = None, **initkwargs: Any) -> Any:
        view = super().as_view(actions, **initkwargs)
        if cls.rows is None or (actions or {}).get("get") != "retrieve":
            return view
        return plain_reads_first(view, cls.rows, cls.lookup_url_kwarg)  # type: ignore[attr-defined]

    def retrieve_row(self, request: Request, key: int) -> HttpResponseBase:
        """The detail answer, after the requested token's wait (``row_answer``)."""
        assert self.rows is not None
        self.wait_for_requested_token(request)
        response = row_answer(request._request, self.rows, key)
        if response is None:
            raise NotFound(self.rows.not_found)
        return response

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, READ_DATABASE_UNREACHABLE):
            logger.warning("The read database is unreachable: %r", exc)
            response = Response({"detail": READ_MODEL_UNAVAILABLE}, status=503)
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        return super().handle_exception(exc)

    def finalize_response(  # type: ignore[override]
        self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        # DRF passes a plain Django answer (the product detail's) through as it is.
        response = super().finalize_response(request, cast(Response, response), *args, **kwargs)
        if self.read_model_stale:
            response[STALE_HEADER] = "true"
        say_what_caches_may_do(
            response, carried_token=self.carried_token, stale=self.read_model_stale
        )
        return response


class ProductCursorPagination(BasePagination):
    """Keyset pages over one of the list's orderings (see ``queries.selectors``)."""

    cursor_query_param = "cursor"
    page_size_query_param = "page_size"

    def link(self, request: Request, cursor: selectors.Cursor | None) -> str | None:
        if cursor is None:
            return None
        url = remove_query_param(request.build_absolute_uri(), CONSISTENCY_PARAM)
        return replace_query_param(url, self.cursor_query_param, cursor.encode())

    def paginated(self, request: Request, page: selectors.ProductPage, results: Any) -> Response:
        return Response(
            {
                "next": self.link(request, page.next_cursor),
                "previous": self.link(request, page.previous_cursor),
                "results": results,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string", "format": "uri", "nullable": True}
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {
                "next": {**link, "description": "The next page, or null on the last one."},
                "previous": {**link, "description": "The page before, or null on the first."},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Opaque page position from a `next` or `previous` link. "
                "It belongs to one ordering: change the ordering and start over.",
                # What ``Cursor.encode`` makes: unpadded URL-safe base64.
                "schema": {"type": "string", "maxLength": 600, "pattern": "^[A-Za-z0-9_-]*$"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": "Products per page.",
                "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
            },
        ]


class ProductViewSet(QueryViewSet):
    """``/api/products/`` and ``/api/products/{product_id}/``."""

    lookup_url_kwarg = "product_id"
    pagination_class = ProductCursorPagination
    rows = PRODUCT_ROWS

    @extend_schema(
        operation_id="products_list",
        summary="List products",
        description="Active products, filtered and sorted, one page at a time.",
        parameters=[ProductListQuerySerializer, *consistency_parameters(200), RETRY_AFTER],
        responses={
            200: OpenApiResponse(
                ProductListItemSerializer(many=True), description="A page of products."
            ),
            400: BAD_QUERY,
            429: TOO_MANY,
            503: UNAVAILABLE,
        },
        tags=["products"],
    )
    def list(self, request: Request) -> Response:
        query = ProductListQuerySerializer(data=query_data(request.query_params, FILTER_NAMES))
        query.is_valid(raise_exception=True)
        paging = PageQuerySerializer(data=query_data(request.query_params, PAGE_NAMES))
        paging.is_valid(raise_exception=True)
        ordering = query.validated_data["ordering"]
        cursor = None
        if "cursor" in paging.validated_data:
            try:
                cursor = selectors.Cursor.decode(paging.validated_data["cursor"], ordering=ordering)
            except selectors.InvalidCursor as error:
                raise ValidationError({"cursor": [str(error)]}) from None
        self.wait_for_requested_token(request)
        page = selectors.product_list(
            filters=query.filters(),
            ordering=ordering,
            cursor=cursor,
            page_size=paging.validated_data["page_size"],
        )
        results = ProductListItemSerializer(page.products, many=True).data
        return ProductCursorPagination().paginated(request, page, results)

    @extend_schema(
        operation_id="products_retrieve",
        summary="Get a product",
        description="The whole product read-model row: one database query.",
        parameters=[
            id_parameter("product_id", "product"),
            *consistency_parameters(200, 304, 404),
            *CONDITIONAL_PARAMETERS,
            RETRY_AFTER,
        ],
        responses={
            200: OpenApiResponse(ProductDetailSerializer, description="The product."),
            304: NOT_MODIFIED,
            400: BAD_QUERY,
            404: OpenApiResponse(ErrorSerializer, description=PRODUCT_NOT_FOUND),
            429: TOO_MANY,
            503: UNAVAILABLE,
        },
        tags=["products"],
    )
    def retrieve(self, request: Request, product_id: int) -> HttpResponseBase:
        return self.retrieve_row(request, product_id)


class SellerViewSet(QueryViewSet):
    """``/api/sellers/{seller_id}/``."""

    lookup_url_kwarg = "seller_id"
    projector = consistency.SELLERS
    rows = SELLER_ROWS

    @extend_schema(
        operation_id="sellers_retrieve",
        summary="Get a seller",
        description="The seller's read-model row: name, reputation, products and ratings.",
        parameters=[
            id_parameter("seller_id", "seller"),
            *consistency_parameters(200, 304, 404),
            *CONDITIONAL_PARAMETERS,
            RETRY_AFTER,
        ],
        responses={
            200: OpenApiResponse(SellerSerializer, description="The seller."),
            304: NOT_MODIFIED,
            400: BAD_QUERY,
            404: OpenApiResponse(ErrorSerializer, description=SELLER_NOT_FOUND),
            429: TOO_MANY,
            503: UNAVAILABLE,
        },
        tags=["sellers"],
    )
    def retrieve(self, request: Request, seller_id: int) -> HttpResponseBase:
        return self.retrieve_row(request, seller_id)


# ``<int:...>`` path converters, as the other endpoints use, not regexes.
router = SimpleRouter(use_regex_path=False)
router.register("products", ProductViewSet, basename="api-product")
router.register("sellers", SellerViewSet, basename="api-seller")
