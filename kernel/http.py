"""The HTTP kit of command endpoints: authenticated JSON views that call one
service, turn its domain errors into 4xx answers and answer with a
consistency token (``eventstore.tokens``), and what the OpenAPI document says
of them.
"""

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import (
    SessionAuthentication,
    TokenAuthentication,
    get_authorization_header,
)
from rest_framework.parsers import BaseParser, FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from eventstore.eventlog import tail
from eventstore.recording import capture_positions
from eventstore.tokens import issue_token
from kernel.errors import (
    CHANGED_MEANWHILE,
    Conflict,
    DomainError,
    InvalidInput,
    NotAllowed,
    NotFound,
)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


FIELD_ERRORS_SCHEMA = {
    "type": "object",
    "description": "Field name (or `non_field_errors`) to its error messages.",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
    "example": {"min_rating": ["Ensure this value is less than or equal to 5."]},
}


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
        raise ConflictError(CHANGED_MEANWHILE) from error


def run_command[T](command: Callable[[], T]) -> tuple[T, str]:
    """Run ``command`` and return its result with a consistency token.

    The token is the position of the last event the command recorded, with
    the keys its events named, signed (``eventstore.tokens.issue_token``); a
    command that changed nothing gets the log's current tail, so reading with
    it still shows the state the command found.
    """
    with capture_positions() as positions, domain_errors():
        result = command()
    if not positions:
        return result, issue_token(tail())
    token = positions.token()
    return result, issue_token(token.position, token.keys)


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, but JSON nested too deeply for Python's decoder is a
    400 like any other malformed body, not a RecursionError and a 500."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None


UNSUPPORTED_SCHEME = (
    "Unsupported authorization scheme: send 'Authorization: Token <key>', "
    "or sign in and send the session cookie."
)


class TokenOnlyAuthentication(TokenAuthentication):
    """API tokens; an ``Authorization`` header of any other scheme (Basic,
    Bearer...) is a 401 that says so, rather than a request treated as
    anonymous."""

    def authenticate(self, request: Any) -> Any:
        header = get_authorization_header(request).split()
        if header and header[0].lower() != self.keyword.lower().encode():
            raise exceptions.AuthenticationFailed(UNSUPPORTED_SCHEME)
        return super().authenticate(request)


class JSONBodyView(APIView):
    """An endpoint that takes JSON (or a form) and answers JSON, whose bad
    bodies are 4xx answers like any other invalid input."""

    renderer_classes = (JSONRenderer,)
    parser_classes: tuple[type[BaseParser], ...] = (
        BoundedJSONParser,
        FormParser,
        MultiPartParser,
    )

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, exceptions.ParseError):
            # A body that is not JSON (or not UTF-8) answers like any other
            # invalid input: field errors, as documented.
            exc = exceptions.ValidationError({"non_field_errors": [str(exc.detail)]})
        elif isinstance(exc, RequestDataTooBig):
            exc = BodyTooLarge()
        return super().handle_exception(exc)


class CommandView(JSONBodyView):
    """An authenticated JSON command endpoint, throttled per user.

    Token authentication comes first so an anonymous request gets 401 with a
    ``WWW-Authenticate`` header rather than a 403.
    """

    authentication_classes = (TokenOnlyAuthentication, SessionAuthentication)
    permission_classes: tuple[type[BasePermission], ...] = (IsAuthenticated,)
    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "commands"


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
    "query waits until the read model has applied it. It stands for this "
    "command's write (and everything before it on the products it changed), "
    "not for earlier writes to other products."
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


class PlainDecimalField(serializers.DecimalField):
    """A decimal written as JSON writes numbers: ASCII digits, one point, an
    exponent. Python's ``Decimal`` would also take ``1_000`` or Arabic-Indic
    digits; a client that sends those has a bug, so they are a 400."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and not PLAIN_DECIMAL.fullmatch(data.strip()):
            self.fail("invalid")
        return super().to_internal_value(data)
