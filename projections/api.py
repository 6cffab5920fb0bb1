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

import hashlib
import logging
import re
from collections.abc import Callable
from typing import Any, cast

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils.cache import get_conditional_response
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import BasePagination
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from projections import consistency, selectors
from projections.eventlog import LogPosition
from projections.serializers import (
    FIELD_ERRORS_SCHEMA,
    FILTER_NAMES,
    PAGE_NAMES,
    ErrorSerializer,
    PageQuerySerializer,
    ProductDetailSerializer,
    ProductListItemSerializer,
    ProductListQuerySerializer,
    SellerSerializer,
    query_data,
)
from projections.throttling import QueryRateThrottle

CONSISTENCY_HEADER = "X-Consistency-Token"
CONSISTENCY_PARAM = "consistency_token"
CONSISTENCY_META = "HTTP_X_CONSISTENCY_TOKEN"
STALE_HEADER = "X-Read-Model-Stale"
CONDITIONAL_META = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH", "HTTP_IF_MODIFIED_SINCE")
MALFORMED_CONSISTENCY = (
    "Malformed consistency token: send it back exactly as a command answered it."
)
FOREIGN_CONSISTENCY = "Not a consistency token this server issued."
PRODUCT_NOT_FOUND = "No such product."
SELLER_NOT_FOUND = "No such seller."
ETAG_VERSION = "v1"
# ``<transaction id>-<position>.<moment>.<signature>`` (``consistency.issue_token``).
TOKEN_PATTERN = r"[0-9]+-[0-9]+\.[0-9A-Za-z]+\.[0-9A-Za-z_-]+"  # noqa: S105 (a shape)
TOKEN_SHAPE = re.compile(TOKEN_PATTERN)
TOKEN_MAX_LENGTH = 120
READ_MODEL_UNAVAILABLE = "The read model is unavailable for a moment; try again shortly."
RETRY_AFTER_SECONDS = 5
# The read database is down or a connection broke: a 503, not a 500.
READ_DATABASE_UNREACHABLE = (OperationalError, InterfaceError)

logger = logging.getLogger(__name__)


def requested_token(request: Request) -> tuple[LogPosition, bool] | None:
    """The consistency token the query carries, with whether it is fresh
    enough to wait for (``consistency.read_token``), or None. A malformed
    token, or one this server did not issue, is a 400 and never waits."""
    given = [
        raw
        for raw in (request.META.get(CONSISTENCY_META), request.query_params.get(CONSISTENCY_PARAM))
        if raw is not None
    ]
    if not given:
        return None
    # Both forms are checked when both are sent (the header wins); an empty
    # token is not one either.
    if not all(len(raw) <= TOKEN_MAX_LENGTH and TOKEN_SHAPE.fullmatch(raw) for raw in given):
        raise ValidationError({CONSISTENCY_PARAM: [MALFORMED_CONSISTENCY]})
    try:
        tokens = [consistency.read_token(raw) for raw in given]
    except consistency.InvalidToken:
        raise ValidationError({CONSISTENCY_PARAM: [FOREIGN_CONSISTENCY]}) from None
    position, fresh = tokens[0]
    if max(position.transaction_id, position.position) > selectors.MAX_ID:
        raise ValidationError({CONSISTENCY_PARAM: [MALFORMED_CONSISTENCY]})
    return position, fresh


@csrf_exempt  # it changes nothing; a POST gets the same JSON 404
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """A JSON 404 for any ``/api/.../`` path that names no endpoint (a
    malformed id in a path, say), as the endpoints answer theirs."""
    return JsonResponse({"detail": "Not found."}, status=404)


def strong_etag(*parts: object) -> str:
    digest = hashlib.blake2b(
        "|".join(map(str, (ETAG_VERSION, *parts))).encode(), digest_size=12
    ).hexdigest()
    return f'"{digest}"'


class JSONOnly(BaseContentNegotiation):
    """The query API speaks JSON only: skip negotiating (a hot-path cost)."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: Any, format_suffix: str | None = None
    ) -> tuple[Any, str]:
        return renderers[0], renderers[0].media_type


class QueryView(APIView):
    """A public, read-only JSON endpoint on the read database, rate-limited
    per client address (``projections.throttling``)."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (QueryRateThrottle,)
    parser_classes = ()
    renderer_classes = (JSONRenderer,)
    content_negotiation_class = JSONOnly
    http_method_names = ["get", "head", "options"]
    projector = consistency.PRODUCTS
    read_model_stale = False

    def wait_for_requested_token(self, request: Request) -> None:
        requested = requested_token(request)
        if requested is not None:
            token, fresh = requested
            self.read_model_stale = not consistency.wait_for(token, self.projector, fresh=fresh)

    def conditional(
        self, request: Request, etag: str, answer: Callable[[], HttpResponseBase]
    ) -> HttpResponseBase:
        """``answer()`` with its ETag, or 304 (412) when the request's conditions say so."""
        meta = request._request.META
        precondition = None
        if any(name in meta for name in CONDITIONAL_META):
            precondition = get_conditional_response(request._request, etag=etag)
        response = answer() if precondition is None else Response(status=precondition.status_code)
        response["ETag"] = etag
        response["Cache-Control"] = "no-cache"
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
        return response


class ProductCursorPagination(BasePagination):
    """Keyset pages over one of the list's orderings (see ``projections.selectors``)."""

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
                "schema": {"type": "string", "maxLength": 600},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": "Products per page.",
                "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
            },
        ]


TOKEN_SCHEMA = {"type": "string", "pattern": f"^{TOKEN_PATTERN}$", "maxLength": TOKEN_MAX_LENGTH}


def consistency_parameters(*answers: int) -> list[OpenApiParameter]:
    """The consistency token (header or query) and the stale header on ``answers``."""
    return [
        OpenApiParameter(
            CONSISTENCY_HEADER,
            TOKEN_SCHEMA,
            OpenApiParameter.HEADER,
            description="A `consistency_token` from a command, sent back exactly as it came. The "
            "query waits (up to 2 s by default) until the read model has applied that write, so "
            "you read your own writes. Only tokens this server issued are accepted (else 400), "
            "and only recent ones are waited for. When too many queries of a server process "
            "wait already, the query answers at once and says it may be stale.",
        ),
        OpenApiParameter(
            CONSISTENCY_PARAM,
            TOKEN_SCHEMA,
            OpenApiParameter.QUERY,
            description=f"Same as the `{CONSISTENCY_HEADER}` header, for clients without headers.",
        ),
        OpenApiParameter(
            STALE_HEADER,
            str,
            OpenApiParameter.HEADER,
            enum=["true"],
            description="Present when the query carried a consistency token and the read model "
            "had not applied it when the wait ran out: the answer may not show that write yet.",
            response=list(answers),
        ),
    ]


CONDITIONAL_PARAMETERS = [
    OpenApiParameter(
        "If-None-Match",
        str,
        OpenApiParameter.HEADER,
        description="An `ETag` from an earlier answer: 304 with no body if it still matches.",
    ),
    OpenApiParameter(
        "ETag",
        str,
        OpenApiParameter.HEADER,
        description="Strong entity tag of this version of the row.",
        response=[200, 304],
    ),
]
BAD_QUERY = OpenApiResponse(FIELD_ERRORS_SCHEMA, description="A query parameter is invalid.")
UNAVAILABLE = OpenApiResponse(
    ErrorSerializer,
    description="The read database cannot be reached for the moment: try again after "
    "`Retry-After` seconds. Commands still work meanwhile.",
)
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    int,
    OpenApiParameter.HEADER,
    description="Seconds to wait before asking again.",
    response=[429, 503],
)
TOO_MANY = OpenApiResponse(
    ErrorSerializer,
    description="Too many queries from this client address: try again after `Retry-After` "
    "seconds (`QUERY_THROTTLE_RATE` per address).",
)
NOT_MODIFIED = OpenApiResponse(description="Not modified: the `If-None-Match` tag still matches.")


def _id_parameter(name: str, what: str) -> OpenApiParameter:
    return OpenApiParameter(name, int, OpenApiParameter.PATH, description=f"The {what} id.")


class ListSchema(AutoSchema):
    """Documents the view as a paginated list (its 200 is an ``OpenApiResponse``,
    which hides the list serializer from drf-spectacular's guess)."""

    def _is_list_view(self, serializer: Any = None) -> bool:
        return True

    def _get_parameters(self) -> list[dict[str, Any]]:
        """The filters and paging parameters may be sent empty: that is the same as
        leaving them out (``?seller=&search=`` lists everything), and says so."""
        parameters = super()._get_parameters()
        for parameter in parameters:
            if parameter["in"] == "query" and parameter["name"] in (*FILTER_NAMES, *PAGE_NAMES):
                parameter["allowEmptyValue"] = True
        return parameters


class ProductListView(QueryView):
    pagination_class = ProductCursorPagination
    schema = ListSchema()

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
    def get(self, request: Request) -> Response:
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


class ProductDetailView(QueryView):
    @extend_schema(
        operation_id="products_retrieve",
        summary="Get a product",
        description="The whole product read-model row: one database query.",
        parameters=[
            _id_parameter("product_id", "product"),
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
    def get(self, request: Request, product_id: int) -> HttpResponseBase:
        self.wait_for_requested_token(request)
        row = selectors.product_get(product_id=product_id, json_as_text=True)
        if row is None:
            raise NotFound(PRODUCT_NOT_FOUND)
        etag = strong_etag(row.product_id, row.last_position, row.updated_at.isoformat())
        return self.conditional(
            request,
            etag,
            lambda: HttpResponse(
                ProductDetailSerializer().to_json(row), content_type="application/json"
            ),
        )


class SellerDetailView(QueryView):
    projector = consistency.SELLERS

    @extend_schema(
        operation_id="sellers_retrieve",
        summary="Get a seller",
        parameters=[
            _id_parameter("seller_id", "seller"),
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
    def get(self, request: Request, seller_id: int) -> HttpResponseBase:
        self.wait_for_requested_token(request)
        row = selectors.seller_get(seller_id=seller_id)
        if row is None:
            raise NotFound(SELLER_NOT_FOUND)
        etag = strong_etag("seller", row.seller_id, row.last_position, row.updated_at.isoformat())
        return self.conditional(request, etag, lambda: Response(SellerSerializer(row).data))
