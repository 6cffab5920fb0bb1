"""Schemathesis against /api/schema/, in process through the WSGI app, over
every endpoint, as nobody, a signed-in user (token) and staff (token)."""

import os

import pytest
import schemathesis
from django.core import signals
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests import factories

# Per operation and run; FUZZ_EXAMPLES=500 digs deeper.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db(databases=["default", "read"])]

# The document as the site serves it (fetching it touches no database). No
# made-up query parameters: like most APIs, this one ignores unknown ones.
schema = schemathesis.openapi.from_wsgi(
    "/api/schema/",
    get_wsgi_application(),
    config=SchemathesisConfig.from_dict({"generation": {"allow-extra-parameters": False}}),
)


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Requests go through the WSGI app in this process. Like Django's test
    client, keep the test's connection open across them: the test runs inside
    a transaction."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def _short_consistency_waits(settings):
    """A made-up consistency token is one no projector will reach: answer stale
    at once instead of after the usual wait."""
    settings.CONSISTENCY_WAIT_SECONDS = 0.01


@pytest.fixture
def shop():
    product = factories.product(price="19.99", stock=10)
    factories.product(price="5.00", stock=0)
    return product


@pytest.fixture
def identities(shop, django_user_model):
    """Request headers for nobody, a signed-in user and a staff member."""
    cache.clear()
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    for name in ("user", "staff"):
        user = django_user_model.objects.create_user(
            username=f"fuzz-{name}", is_staff=name == "staff"
        )
        headers[name] = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    return headers


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_endpoint_answers_within_its_schema_and_never_5xx(case, identities):
    for headers in identities.values():
        # Every other check runs: no 5xx, documented status codes, content
        # types, headers and bodies, invalid input refused. Not "a schema-valid
        # request is accepted": the schema cannot say that a cursor is opaque
        # or that a product takes one review per author, so 400 and 409 are
        # right answers to some schema-valid requests.
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
