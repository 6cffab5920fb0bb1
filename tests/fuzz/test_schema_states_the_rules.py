"""The OpenAPI document states the rules the query endpoints enforce: every
request that schemathesis generates as valid by the document is answered as
valid (200, 304 or 404), never refused with a 400. A bound, pattern or enum
the validation has and the document lacks (or the other way round) fails
here."""

import os
from collections import Counter

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from eventstore.eventlog import tail
from eventstore.tokens import issue_token
from tests.fuzz.conftest import answered

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
QUERIES = ("/api/products/", "/api/products/{product_id}/", "/api/sellers/{seller_id}/")
# What the document can only call opaque: a consistency token is signed by the
# server, a cursor is made by it. Generated ones are replaced with real ones.
TOKEN_NAMES = ("consistency_token", "X-Consistency-Token")

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.django_db(databases=["default", "read"]),
    pytest.mark.usefixtures("keep_the_test_connection"),
]

schema = schemathesis.openapi.from_wsgi(
    "/api/schema/",
    get_wsgi_application(),
    config=SchemathesisConfig.from_dict(
        {"generation": {"mode": "positive", "allow-extra-parameters": False}}
    ),
).include(method="GET", path=list(QUERIES))

refused: Counter[str] = Counter()


def use_real_tokens(case) -> None:
    token = issue_token(tail())
    for parameters in (case.query, case.headers):
        for name in TOKEN_NAMES:
            if parameters and name in parameters:
                parameters[name] = token
    if case.query and "cursor" in case.query:
        del case.query["cursor"]


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_query_the_document_calls_valid_is_answered_as_valid(case, settings):
    settings.CONSISTENCY_WAIT_SECONDS = 0.01
    use_real_tokens(case)

    response = case.call()

    answered[f"{response.status_code // 100}xx"] += 1
    refused[case.path] += response.status_code == 400
    assert response.status_code in (200, 304, 404), (
        f"{case.method} {case.formatted_path} {case.query} {case.headers}: "
        f"{response.status_code} {response.text[:300]}"
    )
