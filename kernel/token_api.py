"""``POST /api/auth/token/``: a client trades a username and password for its
API token (``Authorization: Token <key>``).

Rate-limited per client address (``TOKEN_THROTTLE_RATE``), and every try goes
through django-axes (``kernel.signin``), as the sign-in pages' do.
"""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from kernel.clients import client_address
from kernel.http import (
    BoundedJSONParser,
    ErrorSerializer,
    JSONBodyView,
    domain_errors,
    error_responses,
)
from kernel.signin import SignInLockedOut, api_token_obtain

# Django's user model allows usernames of 150 characters; a password longer
# than this is not one anybody set, and hashing it would only cost the server.
USERNAME_MAX_LENGTH = 150
PASSWORD_MAX_LENGTH = 1024
THROTTLED = "Too many token requests from this client address: try again after Retry-After seconds."


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=USERNAME_MAX_LENGTH, trim_whitespace=False)
    password = serializers.CharField(
        max_length=PASSWORD_MAX_LENGTH,
        trim_whitespace=False,
        write_only=True,
        style={"input_type": "password"},
    )


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(
        help_text="Send it as `Authorization: Token <token>` on the commands."
    )


class TokenRateThrottle(SimpleRateThrottle):
    """``TOKEN_THROTTLE_RATE`` token requests per client address, by the
    project's one rule for who a client is (``kernel.clients``). The rate is
    read from the settings on each request, not once at import."""

    scope = "tokens"

    def get_rate(self) -> str | None:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        return None if rate is None else str(rate)

    def get_cache_key(self, request: Request, view: APIView) -> str:
        return self.cache_format % {
            "scope": self.scope,
            "ident": client_address(request._request),
        }


RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    int,
    OpenApiParameter.HEADER,
    description="Seconds to wait before asking again.",
    response=[429],
)


class ApiTokenView(JSONBodyView):
    """Public: the credentials are the authentication. No session, so no CSRF
    check either: the answer is of no use to another site's page. JSON only:
    a browser sends JSON across sites only after a preflight this server
    never allows, so another site cannot make its visitors' browsers try
    passwords here (and lock a user out from their addresses) with a plain
    form."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    parser_classes = (BoundedJSONParser,)
    throttle_classes = (TokenRateThrottle,)

    @extend_schema(
        operation_id="auth_token_create",
        summary="Get an API token",
        description="Trade a username and password for the user's API token, made on first "
        "use; the same token every time until it is revoked. Send it as "
        "`Authorization: Token <token>` on the commands. Rate-limited per client address "
        "(`TOKEN_THROTTLE_RATE`), and after `LOGIN_FAILURE_LIMIT` failed tries a username is "
        "locked out from that address for `LOGIN_COOLOFF_MINUTES`, as on the sign-in pages.",
        request=TokenRequestSerializer,
        responses={
            200: OpenApiResponse(TokenSerializer, description="The user's API token."),
            **error_responses(400, 413, 415),
            429: OpenApiResponse(
                ErrorSerializer,
                description="Too many requests from this address, or too many failed sign-ins "
                "for this username from it (locked out): try again after `Retry-After` seconds.",
            ),
        },
        parameters=[RETRY_AFTER],
        tags=["auth"],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        given = TokenRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        with domain_errors():
            try:
                key = api_token_obtain(request=request._request, **given.validated_data)
            except SignInLockedOut as locked_out:
                raise exceptions.Throttled(locked_out.retry_after, locked_out.message) from None
        return Response(TokenSerializer({"token": key}).data)
