"""Catalog commands over HTTP (staff with ``catalog.change_product``, as in the
admin): change a product's price or stock.

Command views call a service and nothing else. The service's domain errors
become 4xx answers; a refused command wrote nothing, no row and no event.
Each answer carries a ``consistency_token``: a query that sends it back waits
until the read model shows the change.
"""

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import BasePermission, IsAdminUser, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from catalog import errors, services
from catalog.errors import Conflict, DomainError, InvalidInput, NotAllowed, NotFound
from projections.consistency import issue_token
from projections.eventlog import START, LogPosition
from projections.models import Event
from projections.receivers import capture_positions
from projections.serializers import FIELD_ERRORS_SCHEMA, ErrorSerializer

PLAIN_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


@contextlib.contextmanager
def domain_errors() -> Iterator[None]:
    """Turn a service's domain error into the matching 4xx."""
    try:
        yield
    except InvalidInput as error:
        field = error.field or "non_field_errors"
        raise exceptions.ValidationError({field: [error.message]}) from error
    except NotFound as error:
        raise exceptions.NotFound(error.message) from error
    except NotAllowed as error:
        raise exceptions.PermissionDenied(error.message) from error
    except Conflict as error:
        raise ConflictError(error.message) from error
    except DomainError as error:
        raise exceptions.ValidationError({"non_field_errors": [error.message]}) from error
    except IntegrityError as error:
        # A constraint checked at commit (a deferred foreign key): what the
        # command referred to went away meanwhile, say the author was erased.
        raise ConflictError(errors.CHANGED_MEANWHILE) from error


def _log_tail() -> LogPosition:
    last = (
        Event.objects.using("default")
        .order_by("-transaction_id", "-position")
        .values_list("transaction_id", "position")
        .first()
    )
    return LogPosition(int(last[0]), int(last[1])) if last else START


def run_command[T](command: Callable[[], T]) -> tuple[T, str]:
    """Run ``command`` and return its result with a consistency token.

    The token is the position of the last event the command recorded, signed
    (``projections.consistency.issue_token``); a command that changed nothing
    gets the log's current tail, so reading with it still shows the state the
    command found.
    """
    with capture_positions() as positions, domain_errors():
        result = command()
    token = positions[-1] if positions else _log_tail()
    return result, issue_token(token)


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, but JSON nested too deeply for Python's decoder is a
    400 like any other malformed body, not a RecursionError and a 500."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None


class CommandView(APIView):
    """An authenticated JSON command endpoint, throttled per user.

    Token authentication comes first so an anonymous request gets 401 with a
    ``WWW-Authenticate`` header rather than a 403.
    """

    authentication_classes = (TokenAuthentication, SessionAuthentication)
    permission_classes: tuple[type[BasePermission], ...] = (IsAuthenticated,)
    renderer_classes = (JSONRenderer,)
    parser_classes = (BoundedJSONParser, FormParser, MultiPartParser)
    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "commands"

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, exceptions.ParseError):
            # A body that is not JSON (or not UTF-8) answers like any other
            # invalid input: field errors, as documented.
            exc = exceptions.ValidationError({"non_field_errors": [str(exc.detail)]})
        elif isinstance(exc, RequestDataTooBig):
            exc = BodyTooLarge()
        return super().handle_exception(exc)


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    described = {
        400: OpenApiResponse(FIELD_ERRORS_SCHEMA, description="Invalid input: field errors."),
        401: OpenApiResponse(ErrorSerializer, description="Not signed in (no session or token)."),
        403: OpenApiResponse(ErrorSerializer, description="Signed in, but not allowed."),
        404: OpenApiResponse(ErrorSerializer, description="No such object."),
        409: OpenApiResponse(ErrorSerializer, description="Conflicts with the current state."),
        413: OpenApiResponse(ErrorSerializer, description="The request body is too large."),
        415: OpenApiResponse(
            ErrorSerializer,
            description="Unsupported body type: send JSON, a form or multipart form data.",
        ),
        429: OpenApiResponse(ErrorSerializer, description="Too many requests: slow down."),
    }
    return {code: described[code] for code in codes}


CONSISTENCY_HELP = (
    "Send it back as `X-Consistency-Token` on a query to read this write: the "
    "query waits until the read model has applied it."
)


def answer_headers(*, throttled: bool = False) -> list[OpenApiParameter]:
    """The headers DRF adds to a 401 (and a 429)."""
    headers = [
        OpenApiParameter(
            "WWW-Authenticate",
            str,
            OpenApiParameter.HEADER,
            description="`Token`: send `Authorization: Token <key>` (or sign in for a session).",
            response=[401],
        )
    ]
    if throttled:
        headers.append(
            OpenApiParameter(
                "Retry-After",
                int,
                OpenApiParameter.HEADER,
                description="Seconds to wait before posting again.",
                response=[429],
            )
        )
    return headers


def product_id_parameter() -> OpenApiParameter:
    return OpenApiParameter("product_id", int, OpenApiParameter.PATH, description="The product id.")


class CanChangeProducts(BasePermission):
    message = "Changing products needs the catalog.change_product permission."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return request.user.has_perm("catalog.change_product")


class StaffCommandView(CommandView):
    """Staff with the catalog permission, as the admin asks of them."""

    permission_classes = (IsAuthenticated, IsAdminUser, CanChangeProducts)


class PlainDecimalField(serializers.DecimalField):
    """A decimal written as JSON writes numbers: ASCII digits, one point, an
    exponent. Python's ``Decimal`` would also take ``1_000`` or Arabic-Indic
    digits; a client that sends those has a bug, so they are a 400."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and not PLAIN_DECIMAL.fullmatch(data.strip()):
            self.fail("invalid")
        return super().to_internal_value(data)


class PriceChangeSerializer(serializers.Serializer):
    price = PlainDecimalField(
        max_digits=None,
        decimal_places=None,
        help_text="The new price: positive, at most 2 decimal places, below 100,000,000.",
    )


class PriceChangeResultSerializer(serializers.Serializer):
    product = serializers.IntegerField()
    price = serializers.DecimalField(max_digits=10, decimal_places=2)
    consistency_token = serializers.CharField(help_text=CONSISTENCY_HELP)


class StockChangeSerializer(serializers.Serializer):
    quantity = serializers.IntegerField(
        help_text="The new stock quantity, from 0 to 2,147,483,647."
    )


class StockChangeResultSerializer(serializers.Serializer):
    product = serializers.IntegerField()
    quantity = serializers.IntegerField()
    consistency_token = serializers.CharField(help_text=CONSISTENCY_HELP)


class ProductPriceView(StaffCommandView):
    @extend_schema(
        operation_id="products_price_change",
        summary="Change a product's price (staff with catalog.change_product)",
        parameters=[product_id_parameter(), *answer_headers(throttled=True)],
        request=PriceChangeSerializer,
        responses={
            202: OpenApiResponse(PriceChangeResultSerializer, description="Price changed."),
            **error_responses(400, 401, 403, 404, 413, 415, 429),
        },
        tags=["commands"],
    )
    def post(self, request: Request, product_id: int) -> Response:
        given = PriceChangeSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        product, token = run_command(
            lambda: services.product_change_price(
                product_id=product_id, price=given.validated_data["price"]
            )
        )
        body = {"product": product.pk, "price": product.price, "consistency_token": token}
        return Response(PriceChangeResultSerializer(body).data, status=status.HTTP_202_ACCEPTED)


class ProductStockView(StaffCommandView):
    @extend_schema(
        operation_id="products_stock_change",
        summary="Change a product's stock quantity (staff with catalog.change_product)",
        parameters=[product_id_parameter(), *answer_headers(throttled=True)],
        request=StockChangeSerializer,
        responses={
            202: OpenApiResponse(StockChangeResultSerializer, description="Stock changed."),
            **error_responses(400, 401, 403, 404, 413, 415, 429),
        },
        tags=["commands"],
    )
    def post(self, request: Request, product_id: int) -> Response:
        given = StockChangeSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        product, token = run_command(
            lambda: services.product_change_stock(
                product_id=product_id, quantity=given.validated_data["quantity"]
            )
        )
        body = {
            "product": product.pk,
            "quantity": product.stock_quantity,
            "consistency_token": token,
        }
        return Response(StockChangeResultSerializer(body).data, status=status.HTTP_202_ACCEPTED)
