"""What the OpenAPI document says of the query endpoints beyond their
serializers: the consistency token, conditional requests and the answers
every query may give."""

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from kernel.http import FIELD_ERRORS_SCHEMA, ErrorSerializer
from queries.selectors import MAX_ID
from queries.serializers import FILTER_NAMES, NO_NUL_PATTERN, PAGE_NAMES, SEARCH_MAX_LENGTH

CONSISTENCY_HEADER = "X-Consistency-Token"
CONSISTENCY_PARAM = "consistency_token"
STALE_HEADER = "X-Read-Model-Stale"
# ``<transaction id>-<position>[-<key>...].<moment>.<signature>``, with up to
# four keys (``eventstore.tokens``).
TOKEN_PATTERN = r"[0-9]+(?:-[0-9]+){1,5}\.[0-9A-Za-z]+\.[0-9A-Za-z_-]+"  # noqa: S105 (a shape)
TOKEN_MAX_LENGTH = 200
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
            "you read your own writes. A token stands for its own command's write: after writes "
            "to several products, read each with its own token. Only tokens this server issued "
            "are accepted (else 400), "
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


# A row id, as the path converter and the selectors take it: 0, a negative
# number or one past a bigint names no row (a 404).
ID_SCHEMA = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}
# Search text: any but NUL, which DRF's CharField refuses. (drf-spectacular
# would make a pattern on a blank-allowing field a oneOf that "" matches twice.)
SEARCH_SCHEMA = {"type": "string", "maxLength": SEARCH_MAX_LENGTH, "pattern": NO_NUL_PATTERN}


def id_parameter(name: str, what: str) -> OpenApiParameter:
    return OpenApiParameter(name, ID_SCHEMA, OpenApiParameter.PATH, description=f"The {what} id.")


class QuerySchema(AutoSchema):
    """The list action is documented as a paginated list (its 200 is an
    ``OpenApiResponse``, which hides the list serializer from drf-spectacular's
    guess); every other action as one object."""

    def _is_list_view(self, serializer: Any = None) -> bool:
        return getattr(self.view, "action", None) == "list"

    def _get_parameters(self) -> list[dict[str, Any]]:
        """The filters and paging parameters may be sent empty: that is the same as
        leaving them out (``?seller=&search=`` lists everything), and says so."""
        parameters = super()._get_parameters()
        for parameter in parameters:
            if parameter["in"] == "query" and parameter["name"] in (*FILTER_NAMES, *PAGE_NAMES):
                parameter["allowEmptyValue"] = True
            if parameter["in"] == "query" and parameter["name"] == "search":
                parameter["schema"] = SEARCH_SCHEMA
        return parameters
